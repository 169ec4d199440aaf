"""ConceptIndex: read-only queries over an index directory (load once, query many times).

Opening maps the tables and the faiss index into memory (indexing.store.directory) and reads
only the small files (manifest, prototypes, the image id order): it takes the same time at ten
million slots as at ten thousand, and a query touches only the pages it needs. A query never
reads the image collection. Any number of threads may query one ConceptIndex at once (faiss
releases the GIL; the arrays are read-only); only label writes take a lock.

Conventions: area = fraction of the image's pixels in [0, 1]; bbox = [x, y, w, h] in pixels
of the original image (x right, y down); score = mean cosine of the prototype over the slot's
pixels; similarity = cosine between L2-normalised slot embeddings.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
from PIL import Image

from indexing.query.search import SlotSearcher, filtered_search
from indexing.query.upload import (
    IndexMismatchError,
    QueryResult,
    check_checkpoint,
    check_encoder,
    upload_grouping,
    upload_rows,
    upload_segments,
)
from indexing.store.assignments import read_assignment
from indexing.store.directory import (
    CONFUSION,
    EVALUATION,
    FAISS,
    IMAGES,
    PROTOTYPE_VECTORS,
    PROTOTYPES,
    RANKED,
    SLOTS,
    IndexFormatError,
    column,
    labels_path,
    open_table,
    read_manifest,
)
from indexing.store.faiss_index import load_faiss
from indexing.store.labels import LabelStore
from indexing.store.schema import BBOX_COLUMNS, IMAGE_COLUMNS, PROTOTYPE_COLUMNS, SEGMENT_COLUMNS
from model.encoder import SlotConEncoder

__all__ = ["ConceptIndex", "ImageRecord", "IndexMismatchError", "QueryResult"]


class ImageRecord(NamedTuple):
    image_id: int
    path: Path  # absolute path of the image file
    width: int  # W, pixels
    height: int  # H, pixels
    slots: pd.DataFrame  # [slot_id, image_id, prototype, area, score, bbox], prototype order
    assignment: np.ndarray  # (H, W) int16 prototype of each pixel, image resolution


class ConceptIndex:
    """Queries over one index directory; create with ConceptIndex.open(dir)."""

    def __init__(
        self,
        root: Path,
        manifest: dict,
        gpu: bool | None = None,
        image_root: str | Path | None = None,
    ):
        """Use ConceptIndex.open, which checks the directory and the checkpoint first."""
        self.root = Path(root)
        self.manifest = manifest  # as on disk (its image_root too, when relocated)
        self.num_prototypes = int(manifest["model"]["num_prototypes"])  # K
        self.dim = int(manifest["model"]["dim"])  # D
        self.class_names: list[str] = list(manifest.get("class_names", []))
        self.checkpoint_sha256: str = manifest["checkpoint"]["sha256"]
        rebuild = "rebuild it with `python -m indexing build`"
        try:
            self._load_tables()
            store = load_faiss(self.root / FAISS)
            faiss_info = manifest["faiss"]
            self._searcher = SlotSearcher(
                store, gpu, faiss_info.get("nprobe"), faiss_info.get("k_factor")
            )
        except (OSError, KeyError, ValueError, RuntimeError) as error:
            raise IndexFormatError(
                f"{self.root}: incomplete or damaged index ({error}); {rebuild}"
            ) from error
        if self._searcher.ntotal != self.num_slots or self._searcher.dim != self.dim:
            raise IndexFormatError(f"{self.root}: faiss index and slots table disagree; {rebuild}")
        self.image_root = self._find_images(image_root)
        self._labels = LabelStore(
            labels_path(self.root), self.checkpoint_sha256, self.num_prototypes
        )
        try:  # read once now: a damaged names file is an error at open, not in a callback later
            self._labels.labels()
        except (ValueError, TypeError, AttributeError) as error:
            raise IndexFormatError(
                f"{labels_path(self.root)}: damaged prototype names file ({error}); repair it or "
                "move it away (the index opens without names then)"
            ) from error

    @classmethod
    def open(
        cls,
        root: str | Path,
        checkpoint: str | Path | None = None,
        gpu: bool | None = None,
        image_root: str | Path | None = None,
    ) -> ConceptIndex:
        """Open an index directory. With `checkpoint`, refuse (IndexMismatchError) an index built
        with another one. gpu: None = faiss on a GPU when it has one, False = CPU. image_root:
        where the collection's images are now, when they moved since the build (default: the
        manifest's). FileNotFoundError / IndexFormatError for a directory that is not (this
        version's) index, a damaged one, or one whose image folder is gone."""
        root = Path(root).absolute()
        manifest = read_manifest(root)
        if checkpoint is not None:
            check_checkpoint(manifest, checkpoint, root)
        return cls(root, manifest, gpu, image_root)

    def _find_images(self, image_root: str | Path | None) -> Path:
        """The image folder: the manifest's, or `image_root` when given (checked to hold at
        least one of the first indexed images, so that a mistaken folder is a clear error)."""
        if image_root is None:
            folder = Path(self.manifest["image_root"])
            if not folder.is_dir():
                raise IndexFormatError(
                    f"the image folder of the index {self.root}, {folder}, no longer exists: "
                    "if the images moved, give their new folder with --image-root "
                    "(ConceptIndex.open(..., image_root=...))"
                )
            return folder
        folder = Path(image_root).absolute()
        if not folder.is_dir():
            raise FileNotFoundError(f"image folder not found: {folder}")
        sample = [self._path(row) for row in range(min(5, len(self._image_id)))]
        if sample and not any((folder / p).is_file() for p in sample):
            raise FileNotFoundError(
                f"{folder} does not hold the index's images (none of {', '.join(sample[:3])} ...)"
            )
        return folder

    # ---- loading --------------------------------------------------------------------------------

    def _load_tables(self) -> None:
        """Map the tables and check their shapes against the manifest and each other; only
        the image ids are read whole (for the id -> row lookup)."""
        K, D = self.num_prototypes, self.dim
        self._prototypes = pd.read_parquet(self.root / PROTOTYPES)
        self._vectors = _frozen(np.load(self.root / PROTOTYPE_VECTORS).astype(np.float32))
        if self._vectors.shape != (K, D):
            raise ValueError(
                f"{PROTOTYPE_VECTORS} holds {self._vectors.shape} vectors but the manifest "
                f"says K = {K}, D = {D}"
            )
        if len(self._prototypes) != K:
            raise ValueError(f"{PROTOTYPES} has {len(self._prototypes)} rows, the manifest K = {K}")
        images, slots = open_table(self.root / IMAGES), open_table(self.root / SLOTS)
        self._images = images
        self._image_id = column(images, "image_id")  # path order
        self._image_size = (column(images, "width"), column(images, "height"))
        self._image_slots = (column(images, "slot_start"), column(images, "slot_count"))
        self._image_map = tuple(column(images, f"map_{c}") for c in ("shard", "offset", "length"))
        self._slot_image = column(slots, "image_id")
        self._slot_proto = column(slots, "prototype")
        self._slot_area = column(slots, "area")
        self._slot_score = column(slots, "score")
        self._slot_bbox = tuple(column(slots, c) for c in BBOX_COLUMNS)  # XYWH
        # per prototype: slot ids ranked by score (desc), prototype k at [start[k], start[k+1])
        self._ranked = np.load(self.root / RANKED, mmap_mode="r")
        counts = self._prototypes["slots"].to_numpy(np.int64)
        self._proto_start = _frozen(np.concatenate([[0], np.cumsum(counts)]))
        S = slots.num_rows
        if len(self._ranked) != S or self._proto_start[-1] != S:
            raise ValueError(
                f"{SLOTS} ({S} rows), {RANKED} ({len(self._ranked)}) and {PROTOTYPES} "
                f"({self._proto_start[-1]} slots) disagree"
            )
        # image id -> row: ids sorted once (8 bytes an image), then a binary search
        self._id_order = _frozen(np.argsort(self._image_id, kind="stable"))
        self._sorted_ids = _frozen(self._image_id[self._id_order])
        if np.any(np.diff(self._sorted_ids) == 0):
            raise ValueError(f"{IMAGES} lists an image id twice")
        evaluation = self.root / EVALUATION
        self._evaluation = json.loads(evaluation.read_text()) if evaluation.is_file() else None

    # ---- tables ---------------------------------------------------------------------------------

    @property
    def num_slots(self) -> int:
        return len(self._slot_proto)

    def prototypes(self) -> pd.DataFrame:
        """One row per prototype 0..K-1: prototype, images, slots, mean_area, mean_score, label,
        dominant_class, purity (NaN / "" without annotations; label "" when unnamed)."""
        names = self._labels.labels()
        table = self._prototypes[[c for c in PROTOTYPE_COLUMNS if c != "label"]].copy()
        table["label"] = [names.get(int(k), "") for k in table["prototype"]]
        return table[list(PROTOTYPE_COLUMNS)]

    def prototype_vectors(self) -> np.ndarray:
        """(K, D) float32 L2-normalised prototype vectors (a copy)."""
        return self._vectors.copy()

    def images_table(self) -> pd.DataFrame:
        """image_id, path (relative to image_root), width, height of every indexed image (read
        whole: about a second per million images)."""
        return self._images.select(list(IMAGE_COLUMNS[:4])).to_pandas()

    def image_ids(self) -> list[int]:
        """Ids of the indexed images, in path order."""
        return self._image_id.tolist()

    @property
    def num_images(self) -> int:
        return len(self._image_id)

    def image_id_at(self, row: int) -> int:
        """The id of the image at `row` (0 .. num_images - 1) in path order."""
        return int(self._image_id[int(row)])

    def image_id_range(self) -> tuple[int, int]:
        """(smallest, largest) image id, without listing the ids (10M images: microseconds)."""
        return int(self._sorted_ids[0]), int(self._sorted_ids[-1])

    def _path(self, row: int) -> str:
        return self._images.column("path")[int(row)].as_py()

    def confusion(self) -> np.ndarray | None:
        """(K, L) int64 pixel counts of (prototype, class) from the build, None without."""
        path = self.root / CONFUSION
        return np.load(path) if path.is_file() else None

    def evaluation(self) -> dict | None:
        """The build's scores {"majority": ..., "hungarian": ...} (fractions in [0, 1]), or None
        when the index was built without annotations."""
        return json.loads(json.dumps(self._evaluation)) if self._evaluation is not None else None

    # ---- queries --------------------------------------------------------------------------------

    def _rows(self, rows: np.ndarray) -> pd.DataFrame:
        """The slots at `rows` (= slot ids) as a segment table; gathers only those rows."""
        rows = np.asarray(rows, dtype=np.int64)
        boxes = np.stack([c[rows] for c in self._slot_bbox], axis=1).astype(np.int64)  # (n, 4)
        return pd.DataFrame(
            {
                "slot_id": rows,
                "image_id": self._slot_image[rows].astype(np.int64),
                "prototype": self._slot_proto[rows].astype(np.int64),
                "area": self._slot_area[rows],
                "score": self._slot_score[rows],
                "bbox": boxes.tolist(),
            },
            columns=list(SEGMENT_COLUMNS),
        )

    def _check_prototype(self, prototype: int) -> int:
        if not 0 <= int(prototype) < self.num_prototypes:
            raise KeyError(
                f"unknown prototype {prototype}: the index has prototypes 0.."
                f"{self.num_prototypes - 1}"
            )
        return int(prototype)

    def _check_slot(self, slot_id: int) -> int:
        if not 0 <= int(slot_id) < self.num_slots:
            raise KeyError(
                f"unknown slot id {slot_id}: the index has slots 0..{self.num_slots - 1}"
            )
        return int(slot_id)

    def top_segments(self, prototype: int, k: int = 10) -> pd.DataFrame:
        """The prototype's k best slots by score (desc; ties by slot_id):
        DataFrame[slot_id, image_id, prototype, area, score, bbox]."""
        p = self._check_prototype(prototype)
        start, end = self._proto_start[p], self._proto_start[p + 1]
        return self._rows(self._ranked[start : min(end, start + max(0, int(k)))])

    def slot(self, slot_id: int) -> dict:
        """{slot_id, image_id, prototype, area, score, bbox} of one slot (plain Python values)."""
        i = self._check_slot(slot_id)
        return {
            "slot_id": i,
            "image_id": int(self._slot_image[i]),
            "prototype": int(self._slot_proto[i]),
            "area": float(self._slot_area[i]),
            "score": float(self._slot_score[i]),
            "bbox": [int(c[i]) for c in self._slot_bbox],
        }

    def similar(
        self,
        slot_id: int | None = None,
        vector: np.ndarray | None = None,
        k: int = 10,
        exclude_same_image: bool = True,
        prototype: int | None = None,
    ) -> pd.DataFrame:
        """The k slots nearest to a slot (or to a (D,) vector) by cosine, best first:
        DataFrame[slot_id, image_id, prototype, area, score, bbox, similarity].

        exclude_same_image drops the query slot's own image (with slot_id only; with it off,
        a slot is its own nearest neighbour). prototype: only slots of that prototype. Both
        filters run inside faiss (an image's slots are one id range, a prototype's slots a set
        of ids: indexing.query.search.id_selector). On an approximate (IVF) index, a prototype
        of at most EXACT_FILTER_POOL slots (indexing.query.search), or a search whose lists
        hold fewer than k admitted slots, is answered by an exact search of the admitted slots;
        otherwise the filtered neighbours are as approximate as the search. Similarities are
        exact with either index.
        """
        if (slot_id is None) == (vector is None):
            raise ValueError("give exactly one of slot_id and vector")
        query, exclude = self._query(slot_id, vector, exclude_same_image)
        only = None
        admitted = self.num_slots - (exclude[1] - exclude[0] if exclude else 0)
        if prototype is not None:
            p = self._check_prototype(prototype)
            only = np.sort(self._ranked[self._proto_start[p] : self._proto_start[p + 1]])
            if exclude is not None:
                only = only[(only < exclude[0]) | (only >= exclude[1])]
            exclude, admitted = None, len(only)
        k = min(int(k), admitted)
        if k <= 0:
            return self._with_similarity(np.zeros(0, np.int64), np.zeros(0, np.float32))
        return self._with_similarity(*filtered_search(self._searcher, query, k, exclude, only))

    def _query(
        self, slot_id: int | None, vector: np.ndarray | None, exclude_same_image: bool
    ) -> tuple[np.ndarray, tuple[int, int] | None]:
        """similar()'s (D,) unit query vector and the slot ids [start, end) of the query
        slot's image when they are excluded (None otherwise)."""
        exclude = None
        if slot_id is not None:
            slot_id = self._check_slot(slot_id)
            query = self._searcher.reconstruct(slot_id)
            if exclude_same_image:
                row = self._image_row_of(int(self._slot_image[slot_id]))
                start, count = (int(c[row]) for c in self._image_slots)
                exclude = (start, start + count)
        else:
            query = np.asarray(vector, dtype=np.float32).reshape(-1)
            if query.shape != (self.dim,) or not np.all(np.isfinite(query)):
                raise ValueError(f"vector must be ({self.dim},) finite, got {query.shape}")
        norm = float(np.linalg.norm(query))
        if norm == 0:
            raise ValueError("cannot search with an all-zero vector")
        return query / norm, exclude

    def _with_similarity(self, ids: np.ndarray, sims: np.ndarray) -> pd.DataFrame:
        table = self._rows(ids)
        table["similarity"] = sims.astype(np.float32)
        return table

    def image(self, image_id: int) -> ImageRecord:
        """An indexed image: absolute path, size, slots and its (H, W) assignment map."""
        row = self._image_row_of(image_id)
        start, count = (int(c[row]) for c in self._image_slots)
        return ImageRecord(
            image_id=int(image_id),
            path=self.image_root / self._path(row),
            width=int(self._image_size[0][row]),
            height=int(self._image_size[1][row]),
            slots=self._rows(np.arange(start, start + count)),
            assignment=self._assignment_at(row),
        )

    def _image_row_of(self, image_id: int) -> int:
        try:
            image_id = int(image_id)
        except (TypeError, ValueError, OverflowError):
            raise KeyError(f"unknown image id {image_id!r}: not in the index {self.root}") from None
        i = int(np.searchsorted(self._sorted_ids, image_id))
        if i == len(self._sorted_ids) or self._sorted_ids[i] != image_id:
            raise KeyError(f"unknown image id {image_id}: not in the index {self.root}")
        return int(self._id_order[i])

    def image_path(self, image_id: int) -> Path:
        """The absolute path of an indexed image (what image() gives, without its tables)."""
        return self.image_root / self._path(self._image_row_of(image_id))

    def assignment(self, image_id: int) -> np.ndarray:
        """(H, W) int16 prototype map of an indexed image at its resolution."""
        return self._assignment_at(self._image_row_of(image_id))

    def _assignment_at(self, row: int) -> np.ndarray:
        shard, offset, length = (int(c[row]) for c in self._image_map)
        return read_assignment(self.root, shard, offset, length)

    def query_image(self, image: Image.Image, encoder: SlotConEncoder, k: int = 5) -> QueryResult:
        """Group an uploaded image with `encoder` (the index's model) as the build extracted the
        collection's images (same input size and view, indexing.query.upload), and find, for
        each of its segments, the k most similar slots of the collection (k = 0: the grouping
        only, no search; neighbours is then empty). Changes nothing on disk."""
        self.check_encoder(encoder)
        rows, info = upload_rows(self.manifest, image.convert("RGB"), encoder)
        neighbours = {
            int(p): self.similar(vector=vector, k=k, exclude_same_image=False)
            for p, vector in zip(rows.prototype, rows.embedding)
            if k > 0
        }
        grouping = upload_grouping(rows, info, encoder.stride, self.num_prototypes)
        return QueryResult(grouping, upload_segments(rows), neighbours)

    def check_encoder(self, encoder: SlotConEncoder) -> None:
        """IndexMismatchError unless the encoder has this index's prototypes (same model)."""
        check_encoder(encoder, self._vectors, self.root, self.checkpoint_sha256)

    # ---- names ----------------------------------------------------------------------------------

    def labels(self) -> dict[int, str]:
        """{prototype: name} chosen by the user (kept beside the index, per checkpoint)."""
        return self._labels.labels()

    def set_label(self, prototype: int, name: str) -> None:
        """Name a prototype ("" removes the name); saved atomically in <index>.labels.json."""
        self._labels.set_label(self._check_prototype(prototype), name)


def _frozen(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array
