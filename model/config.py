"""Configuration of the SlotCon network and of its training run, with named presets.

Frozen dataclasses: a checkpoint stores `asdict(cfg)` and a loader rebuilds the model from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

from model.flags import flag

ARCHS = ("resnet18", "resnet34", "resnet50")


@dataclass(frozen=True)
class ModelConfig:
    arch: str = flag("resnet50", "backbone: resnet18 | resnet34 | resnet50 (torchvision layout)")
    width: float = flag(1.0, "backbone channel multiplier; < 1 for small CPU models")
    output_stride: int = flag(32, "32 (paper), 16 (dilated layer4) or 8 (dilated layer3 + layer4)")
    dim_hidden: int = flag(4096, "hidden width of projector and predictor (paper: 4096)")
    dim_out: int = flag(256, "D: slot / prototype embedding size")
    num_prototypes: int = flag(
        256, "K: paper uses 256 on COCO; best near the real number of classes"
    )
    teacher_temp: float = flag(0.07, "tau_t: sharp teacher assignment (also the grouping softmax)")
    student_temp: float = flag(0.1, "tau_s: student temperature of the group loss")
    slot_temp: float = flag(0.2, "temperature of the slot InfoNCE loss")
    group_loss_weight: float = flag(0.5, "w in L = w * group + (1 - w) * slot")
    local_contrast_weight: float = flag(
        0.0,
        "weight of the local views' region InfoNCE (each local view against the teacher's "
        "features over its box, the other local boxes of the batch as negatives; paper: 0)",
    )
    center_momentum: float = flag(0.9, "EMA of the teacher's mean assignment (centering)")
    teacher_balance: str = flag(
        "center",
        "how the teacher's targets avoid collapse: center (paper: subtract the EMA centre) | "
        "sinkhorn (SwAV's equipartition over the batch's pixels)",
    )

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got {self.arch!r}")
        if self.output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32, got {self.output_stride}")
        if self.teacher_balance not in ("center", "sinkhorn"):
            raise ValueError(
                f"teacher_balance must be center or sinkhorn, got {self.teacher_balance!r}"
            )
        if self.width <= 0 or self.num_prototypes < 2 or self.dim_out < 1:
            raise ValueError("width must be > 0, num_prototypes >= 2 and dim_out >= 1")


@dataclass(frozen=True)
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: str = flag("", "folder of images (searched recursively), or a COCO root with --split")
    split: str = flag(
        "", "COCO layout: read <data>/<split>/ (e.g. train2017); empty = plain folder"
    )
    out: str = flag("runs/slotcon", "output directory: checkpoints, log.jsonl")
    image_size: int = flag(224, "side of each augmented view (paper: 224)")
    min_scale: float = flag(0.08, "random-resized-crop scale range lower bound (paper: 0.08)")
    max_scale: float = flag(1.0, "random-resized-crop scale range upper bound (paper: 1.0)")
    hue: float = flag(
        0.1, "largest hue shift of the colour jitter, in turns (paper: 0.1; 0.5 = all)"
    )
    grayscale: float = flag(0.2, "probability of a grayscale view (paper: 0.2)")
    channel_shuffle: float = flag(0.0, "probability of a random RGB permutation (paper: 0)")
    blur_sigma: float = flag(2.0, "largest Gaussian blur sigma in view px (paper: 2.0 at 224 px)")
    local_views: int = flag(
        0, "small student-only views per image, grouped against the teacher's maps (paper: 0)"
    )
    local_size: int = flag(48, "side of each local view")
    local_min_scale: float = flag(0.02, "local crop area fraction range, lower bound")
    local_max_scale: float = flag(0.08, "local crop area fraction range, upper bound")
    local_hue: float = flag(0.1, "largest hue shift of the local views' colour jitter, in turns")
    local_channel_shuffle: float = flag(0.0, "probability of an RGB permutation of a local view")
    local_hue_cells: int = flag(
        0,
        "g > 0: also shift each local view's hue by a random field of g x g cells (each cell a "
        "shift over the whole circle, bilinear between), so that no colour in it is a reference",
    )
    pipeline: str = flag(
        "pil",
        "pil: decode and augment per sample in DataLoader workers (any collection, bicubic); "
        "tensor: decode once into memory, augment per batch with tensor ops (small collections)",
    )
    batch_size: int = flag(512, "global batch over all processes (paper: 512 on 8 GPUs)")
    epochs: int = flag(800, "passes over the data; paper: 800 on COCO")
    optimizer: str = flag("lars", "lars (paper) | sgd | adamw (small models on CPU)")
    lr: float = flag(2.0, "peak learning rate; paper: 1.0 * batch / 256 with LARS")
    min_lr: float = flag(1e-6, "end of the cosine schedule")
    weight_decay: float = flag(1e-5, "paper: 1e-5 (LARS); no decay on 1-D parameters")
    warmup_epochs: float = flag(5.0, "linear warm-up from lr / 100")
    teacher_momentum: float = flag(0.99, "m0 of the cosine EMA schedule, rises to 1")
    precision: str = flag("fp16", "autocast on CUDA: fp16 (paper) | bf16 | fp32; CPU always fp32")
    workers: int = flag(8, "DataLoader worker processes per training process")
    seed: int = flag(0, "seeds model initialisation, data order and augmentation")
    save_every: int = flag(10, "epochs between checkpoints (always one at the end)")
    snapshot_every: int = flag(
        0, "epochs between teacher snapshots in <out>/snapshots/ (for the timeline); 0 = none"
    )
    device: str = flag("", "cpu | cuda | cuda:N; empty = cuda when available, else cpu")

    def __post_init__(self) -> None:
        if self.optimizer not in ("lars", "sgd", "adamw"):
            raise ValueError(f"optimizer must be lars, sgd or adamw, got {self.optimizer!r}")
        if self.pipeline not in ("pil", "tensor"):
            raise ValueError(f"pipeline must be pil or tensor, got {self.pipeline!r}")
        if not 0 < self.min_scale <= self.max_scale <= 1:
            raise ValueError("crop scales need 0 < min_scale <= max_scale <= 1")
        if self.local_views < 0 or not 0 < self.local_min_scale <= self.local_max_scale <= 1:
            raise ValueError("local views need a count >= 0 and 0 < min scale <= max scale <= 1")
        if self.local_hue_cells < 0:
            raise ValueError("local_hue_cells must be >= 0")
        if self.local_views and (self.pipeline != "tensor" or self.local_size < 16):
            raise ValueError("local views need --pipeline tensor and local_size >= 16")
        if self.model.local_contrast_weight and not self.local_views:
            raise ValueError("local_contrast_weight needs local views (--local-views N)")
        if self.precision not in ("fp16", "bf16", "fp32"):
            raise ValueError(f"precision must be fp16, bf16 or fp32, got {self.precision!r}")
        if self.save_every < 1 or self.snapshot_every < 0:
            raise ValueError("save_every must be >= 1 and snapshot_every >= 0")
        if self.batch_size < 2 or self.epochs < 1 or self.image_size < 16:
            raise ValueError("batch_size must be >= 2, epochs >= 1 and image_size >= 16")


PAPER_COCO_R50 = TrainConfig(
    model=ModelConfig(),
    image_size=224,
    batch_size=512,
    epochs=800,
    optimizer="lars",
    lr=2.0,
    weight_decay=1e-5,
    warmup_epochs=5,
    teacher_momentum=0.99,
    precision="fp16",
    workers=8,
    save_every=10,
)

# Small enough to train on 2 CPU cores on the built-in scenes (docs/DEMO_MODEL.md: recipe,
# ablation, wall time). Stride 8 keeps the maps fine (12 x 12 at 96 px, 24 x 24 on a 192 px
# scene). Departures from the paper, each measured on this preset (docs/DEMO_MODEL.md):
# - D <= K, so that the prototypes span the feature space (with D 64 > K 32 the features turned
#   orthogonal to every prototype and the assignment stayed uniform);
# - a sharper teacher (0.04, as DINO's early temperature): grouping wins over the slot loss's
#   image-level shortcut within a few thousand steps;
# - Sinkhorn balancing of the teacher's targets instead of centering: with centering 7-14 of the
#   prototypes took every pixel; with Sinkhorn 58-61 of 64 are in use;
# - 96 px views cut at near-native scale (crop scale 0.1-0.3 of a 192 px scene, so a view is
#   shrunk at most 1.1x and the 2-15 px patterns survive), with the blur scaled to the view;
# - the tensor pipeline (decoded once, augmented per batch), for throughput on two cores;
# - K 128, half the paper's 256 (it was 64 until 2026-12-04): on the natural scenes 50.6 majority
#   mIoU against 47.4 with K 64 on the tuning scenes (runs N2 and N1 of docs/DEMO_MODEL.md).
DEMO = TrainConfig(
    model=ModelConfig(
        arch="resnet18",
        width=0.25,
        output_stride=8,
        dim_hidden=256,
        dim_out=32,
        num_prototypes=128,
        teacher_temp=0.04,
        teacher_balance="sinkhorn",
    ),
    image_size=96,
    min_scale=0.1,
    max_scale=0.3,
    blur_sigma=0.9,
    pipeline="tensor",
    batch_size=64,
    epochs=60,
    optimizer="adamw",
    lr=3e-3,
    min_lr=1e-5,
    weight_decay=1e-4,
    warmup_epochs=2,
    teacher_momentum=0.98,
    precision="fp32",
    workers=1,
    save_every=2,
    snapshot_every=20,
)

# For tests: seconds on a CPU.
TINY = TrainConfig(
    model=ModelConfig(
        arch="resnet18",
        width=0.125,
        output_stride=16,
        dim_hidden=32,
        dim_out=16,
        num_prototypes=8,
    ),
    image_size=32,
    min_scale=0.2,
    batch_size=8,
    epochs=2,
    optimizer="adamw",
    lr=1e-3,
    min_lr=1e-5,
    weight_decay=1e-4,
    warmup_epochs=0.5,
    teacher_momentum=0.9,
    precision="fp32",
    workers=0,
    save_every=1,
)

PRESETS: dict[str, TrainConfig] = {"paper-coco-r50": PAPER_COCO_R50, "demo": DEMO, "tiny": TINY}


def model_config_from_dict(values: dict) -> ModelConfig:
    """Rebuild a ModelConfig from `asdict` output, ignoring keys of newer versions."""
    known = {f.name for f in fields(ModelConfig)}
    return ModelConfig(**{k: v for k, v in values.items() if k in known})


def override(cfg: TrainConfig, **changes) -> TrainConfig:
    """Return `cfg` with the given fields replaced; model fields are accepted at top level too."""
    model_names = {f.name for f in fields(ModelConfig)}
    model_changes = {k: v for k, v in changes.items() if k in model_names}
    train_changes = {k: v for k, v in changes.items() if k not in model_names}
    return replace(cfg, model=replace(cfg.model, **model_changes), **train_changes)
