"""BuildConfig: what `python -m indexing build` does (indexing.build.pipeline runs it).

Light to import (no torch), so that the command line builds its flags and --help from these
fields at once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from indexing.store.faiss_index import INDEX_TYPES
from model.flags import flag
from model.runtimes import check_runtime

# decoding processes per build process: 4-8 per GPU; at most the CPU's cores
DEFAULT_WORKERS = min(4, os.cpu_count() or 1)


def _required(help: str):
    """A field without a default (a required flag), help as model.config's fields."""
    return field(metadata={"help": help})


@dataclass(frozen=True)
class BuildConfig:
    """What `python -m indexing build` does; its flags and --help come from these fields
    (model.flags.add_config_flags: --batch-size for batch_size, ...)."""

    checkpoint: Path = _required(
        "encoder checkpoint: this project's (encoder.pt, last.pt) or a published SlotCon one"
    )
    images: Path = _required("image folder, searched recursively; paths are stored relative to it")
    out: Path = _required(
        "index directory to write: new, empty or an earlier index (replaced once the new one is "
        "complete); any other existing path is refused"
    )
    annotations: tuple[Path, ...] = flag(
        (),
        "COCO instances JSON [and COCO-Stuff stuff JSON]: image ids from the JSON, plus "
        "per-prototype dominant class / purity and mIoU in evaluation.json",
    )
    size: int | None = flag(
        None,
        "shorter image side fed to the encoder; default the model's (448 for ResNet-50, as the "
        "whole COCO images; 192 for small models)",
    )
    batch_size: int = flag(
        16, "images per forward pass (16 on CPU, 64 on a GPU for ResNet-50 at 448)"
    )
    device: str = flag("", "cpu | cuda | cuda:N; empty = this process's GPU when present, else cpu")
    workers: int = flag(
        DEFAULT_WORKERS,
        "image-decoding processes per build process; 4-8 per GPU, 0 = in the main process",
    )
    resume: bool = flag(False, "continue an interrupted build from its last finished chunk")
    index_type: str = flag(
        "auto",
        "auto (recommended): flat up to 250,000 slots, ivf above; flat: exact search, about "
        "17 ms a query at a million slots on one CPU core; ivf: approximate candidates re-ranked "
        "exactly, about 1 ms at a million (recall@10 >= 0.95, docs/BENCHMARKS.md)",
    )
    chunk_size: int = flag(
        256, "images per saved chunk; an interrupted build loses at most one chunk per process"
    )
    precision: str = flag(
        "fp32",
        "fp32 (recommended: scores and the build's evaluation as the paper's); bf16 autocast is "
        "faster on GPUs and moves some pixels to another prototype",
    )
    runtime: str = flag(
        "eager",
        "how the network runs on the CPU: eager (recommended: the maps as PyTorch computes "
        "them); channels-last, compile or openvino are faster and move a few pixels in a "
        "million to another prototype (docs/BENCHMARKS.md); openvino needs pip install openvino",
    )
    authors_crop: bool = flag(
        False,
        "like-for-like with the authors' visualisation: resize 256 + centre crop 224 instead of "
        "whole images, and their ranking score (mean dots over the argmax map cells); maps "
        "outside the crop repeat its border, slots and the evaluation count the crop only",
    )

    def __post_init__(self) -> None:
        if self.index_type not in INDEX_TYPES:
            raise ValueError(f"index type must be one of {INDEX_TYPES}, got {self.index_type!r}")
        if self.batch_size < 1 or self.chunk_size < 1 or self.workers < 0:
            raise ValueError("batch size and chunk size must be >= 1, workers >= 0")
        if self.size is not None and self.size < 16:
            raise ValueError(f"size must be at least 16 px, got {self.size}")
        from model.encoder import PRECISIONS  # here: the command line's help needs no torch

        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        check_runtime(self.runtime)
