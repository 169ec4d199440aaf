"""CocoConfig: what `python -m indexing coco` does (indexing.coco.setup runs it).

Light to import (no torch), so that the command line builds its flags and --help at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from indexing.build.config import DEFAULT_WORKERS
from model.flags import flag
from model.runtimes import check_runtime


@dataclass(frozen=True)
class CocoConfig:
    """Download, verify and unpack COCO val2017, build its index; one flag per field."""

    root: Path = flag(
        Path("data/coco"),
        "folder for the downloads and the unpacked COCO val2017 (images, instances JSON, "
        "stuffthingmaps); 3.0 GB free needed there (1.76 GB of downloads + room to unpack)",
    )
    checkpoint: str | None = flag(
        None,
        "the model: a local file (the authors' published full checkpoint, e.g. the COCO 800-epoch "
        "ResNet-50, or this project's) or an http(s) URL, downloaded with resume; without it "
        "the data are prepared and the command says where to get the model",
    )
    out: Path | None = flag(None, "index directory to write (default: <root>/../index-coco)")
    mirror: str | None = flag(
        None,
        "base URL serving the same files by name instead of the official hosts (a mirror); "
        "sizes and checksums are still those of indexing/coco/sources.py",
    )
    keep_archives: bool = flag(
        False,
        "keep the downloaded zips after unpacking (default: each removed once unpacked, 1.76 GB)",
    )
    retries: int = flag(3, "attempts to resume a dropped connection before giving up")
    device: str = flag("", "cpu | cuda | cuda:N for the build; empty = the GPU when present")
    batch_size: int = flag(16, "images per forward pass (16 on CPU, 64 on a GPU for ResNet-50)")
    workers: int = flag(DEFAULT_WORKERS, "image-decoding processes of the build")
    size: int | None = flag(None, "shorter image side fed to the encoder; default the model's")
    runtime: str = flag(
        "eager",
        "how the network runs on the CPU (indexing build --runtime): eager, or the faster "
        "channels-last, compile, openvino, which move a few pixels in a million",
    )
    probe_batches: int = flag(
        2, "batches timed before the build to estimate its duration (0 = no estimate)"
    )

    def __post_init__(self) -> None:
        if self.retries < 0 or self.batch_size < 1 or self.workers < 0 or self.probe_batches < 0:
            raise ValueError("retries, workers and probe batches must be >= 0, batch size >= 1")
        check_runtime(self.runtime)

    @property
    def index_dir(self) -> Path:
        return self.out if self.out is not None else self.root.parent / "index-coco"
