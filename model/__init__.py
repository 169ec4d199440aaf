"""SlotCon: self-supervised semantic grouping (Wen et al., NeurIPS 2022), trainable and loadable.

The public names are imported lazily, so that `python -m model.scenes` (and its worker processes)
run without loading torch.
"""

from importlib import import_module

_EXPORTS = {
    "CheckpointError": "model.checkpoint",
    "PRESETS": "model.config",
    "ModelConfig": "model.config",
    "TrainConfig": "model.config",
    "GroupingOutput": "model.grouping",
    "ImageTransform": "model.transforms",
    "ImageGrouping": "model.encoder",
    "Preprocessed": "model.transforms",
    "SlotConEncoder": "model.encoder",
    "assign_pixels": "model.transforms",
    "load_encoder": "model.checkpoint",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'model' has no attribute {name!r}")
