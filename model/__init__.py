"""SlotCon: self-supervised semantic grouping (Wen et al., NeurIPS 2022), trainable and loadable."""

from model.checkpoint import CheckpointError
from model.config import PRESETS, ModelConfig, TrainConfig
from model.encoder import ImageGrouping, Preprocessed, SlotConEncoder, assign_pixels, load_encoder
from model.grouping import GroupingOutput

__all__ = [
    "PRESETS",
    "CheckpointError",
    "GroupingOutput",
    "ImageGrouping",
    "ModelConfig",
    "Preprocessed",
    "SlotConEncoder",
    "TrainConfig",
    "assign_pixels",
    "load_encoder",
]
