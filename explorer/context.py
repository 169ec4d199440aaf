"""The shared, read-only resources of one running app, loaded once and passed to every tab.

Data only: the index, the encoder, the cache folder, the serving limits, the palette. What is
built on top of a context (explorer.comparison's second model, explorer.timeline's training run)
depends on this module and not the other way: app.py constructs those and hands them to
explorer.ui.build_app beside the context.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from explorer.concept_maps import ConceptMaps
from explorer.render import palette
from explorer.uploads import UploadLimits

if TYPE_CHECKING:
    from indexing import ConceptIndex
    from model import SlotConEncoder


@dataclass(frozen=True)
class ServeConfig:
    """How the app serves its users."""

    limits: UploadLimits = field(default_factory=UploadLimits)  # upload bytes / pixels
    default_k: int = 12  # segments shown per gallery at start
    max_k: int = 48  # most segments a gallery or an API call returns
    model_concurrency: int = 2  # uploads grouped at once (the encoder is shared; 2 CPU cores)
    search_concurrency: int = 4  # similarity / top-segment queries at once (faiss frees the GIL)
    thumbnail_side: int = 224  # longer side of gallery thumbnails, pixels
    max_overlay_files: int = 500  # grouping overlays kept in the cache (oldest deleted first)


@dataclass(frozen=True)
class AppContext:
    """Everything a callback may read; nothing in it changes while the app runs (the concept
    names live in the index's label file, which ConceptIndex.set_label writes atomically)."""

    index: ConceptIndex  # the collection's slots, tables and faiss search
    encoder: SlotConEncoder | None  # for uploads; None when the app runs without a checkpoint
    cache_dir: Path  # thumbnails and exports: served to the browser, nothing secret in it
    config: ServeConfig
    colours: np.ndarray  # (K, 3) uint8 palette, one colour per prototype
    index_key: str  # short hash of the index manifest: keeps thumbnails of two indexes apart
    # the concept map's figure, built once per set of names (a cache, not a setting)
    maps: ConceptMaps = field(default_factory=ConceptMaps, compare=False, repr=False)

    @property
    def num_prototypes(self) -> int:
        return int(self.index.num_prototypes)

    @property
    def thumbs_dir(self) -> Path:
        return self.cache_dir / "thumbs" / self.index_key

    @property
    def overlays_dir(self) -> Path:
        return self.cache_dir / "overlays"

    @property
    def exports_dir(self) -> Path:
        return self.cache_dir / "exports"

    @property
    def uploads_enabled(self) -> bool:
        return self.encoder is not None


def index_key(manifest: dict) -> str:
    """12 hex digits identifying an index build (its manifest, canonically serialised)."""
    blob = json.dumps(manifest, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def open_context(
    index_dir: str | Path,
    checkpoint: str | Path | None = None,
    cache_dir: str | Path = "cache",
    config: ServeConfig | None = None,
    device: str | None = None,
    image_root: str | Path | None = None,
) -> AppContext:
    """Open the index (checking that it was built with `checkpoint`, when given; its images at
    `image_root` when they moved) and load the encoder once. Raises indexing.IndexMismatchError
    / IndexFormatError / model.CheckpointError / FileNotFoundError with clear messages."""
    from indexing import ConceptIndex
    from model import load_encoder

    index = ConceptIndex.open(index_dir, checkpoint=checkpoint, image_root=image_root)
    encoder = load_encoder(checkpoint, device=device) if checkpoint is not None else None
    cache = Path(cache_dir).resolve()
    cache.mkdir(parents=True, exist_ok=True)
    return AppContext(
        index=index,
        encoder=encoder,
        cache_dir=cache,
        config=config or ServeConfig(),
        colours=palette(int(index.num_prototypes)),
        index_key=index_key(index.manifest),
    )
