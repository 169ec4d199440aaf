"""Correspondence of two indexes of the same images: which prototypes of model A cover the
pixels that model B gives to each of its prototypes.

    a, b = ConceptIndex.open("index-200ep"), ConceptIndex.open("index-800ep")
    result = correspondence(a, b)          # streams over the assignment maps
    result.iou()                           # (K_A, K_B)
    result.matching()                      # Hungarian one-to-one pairs
    result.agreement()                     # normalised MI, Cramer's V

Images are paired by their path relative to each index's image root (image ids may differ:
one index may number by annotations, the other by path order).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from scipy.stats import contingency, entropy
from tqdm import tqdm

from indexing.store.directory import write_bytes_atomic, write_json_atomic

FORMAT = "slotcon-explorer-correspondence"  # summary.json's "format": marks our --out dirs


class ImageSetMismatch(ValueError):
    """The two indexes do not hold the same images (or the same images at the same size)."""


def pair_images(images_a: pd.DataFrame, images_b: pd.DataFrame) -> pd.DataFrame:
    """Two images_table()s -> DataFrame[path, image_id_a, image_id_b] in A's order.

    Raises ImageSetMismatch naming how many images only one index has, or how many differ in
    size."""
    a = images_a[["path", "image_id", "width", "height"]]
    b = images_b[["path", "image_id", "width", "height"]]
    merged = a.merge(b, on="path", how="outer", suffixes=("_a", "_b"), indicator=True)
    only_a = int((merged["_merge"] == "left_only").sum())
    only_b = int((merged["_merge"] == "right_only").sum())
    if only_a or only_b:
        examples = merged.loc[merged["_merge"] != "both", "path"].head(3).tolist()
        raise ImageSetMismatch(
            f"the indexes hold different image sets: {only_a + only_b} images differ "
            f"({only_a} only in A, {only_b} only in B, {len(merged) - only_a - only_b} in "
            f"both; e.g. {', '.join(examples)}); build both indexes over the same images"
        )
    sized = (merged["width_a"] != merged["width_b"]) | (merged["height_a"] != merged["height_b"])
    if sized.any():
        raise ImageSetMismatch(
            f"{int(sized.sum())} images differ in size between the indexes (e.g. "
            f"{merged.loc[sized, 'path'].iloc[0]}): they were not indexed from the same files"
        )
    order = a[["path"]].merge(merged, on="path", how="left")
    return order[["path", "image_id_a", "image_id_b"]].reset_index(drop=True)


def accumulate(counts: np.ndarray, map_a: np.ndarray, map_b: np.ndarray) -> None:
    """Add one image's pixels to counts (K_A, K_B) int64, in place: counts[a, b] += number of
    pixels with prototype a in map_a (H, W) and b in map_b (H, W)."""
    if map_a.shape != map_b.shape:
        raise ImageSetMismatch(f"assignment maps of {map_a.shape} and {map_b.shape} differ")
    k_a, k_b = counts.shape
    flat = map_a.astype(np.int64).ravel() * k_b + map_b.astype(np.int64).ravel()
    counts += np.bincount(flat, minlength=k_a * k_b).reshape(k_a, k_b)


@dataclass(frozen=True)
class Correspondence:
    """counts[a, b]: pixels of the collection that model A gives to prototype a and model B to
    prototype b. Every derived table is computed from counts alone."""

    counts: np.ndarray  # (K_A, K_B) int64
    images: int  # images summed over

    @property
    def shape(self) -> tuple[int, int]:
        return self.counts.shape

    def iou(self) -> np.ndarray:
        """(K_A, K_B) float64 intersection over union of the two prototypes' pixel sets; NaN
        where both are absent."""
        rows = self.counts.sum(axis=1, keepdims=True)
        cols = self.counts.sum(axis=0, keepdims=True)
        union = (rows + cols - self.counts).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, self.counts / union, np.nan)

    def matching(self) -> pd.DataFrame:
        """One-to-one pairs maximising the summed IoU (Hungarian; min(K_A, K_B) at most):
        DataFrame[a, b, pixels, iou], pairs that share no pixel left out, by IoU desc."""
        iou = np.nan_to_num(self.iou(), nan=0.0)
        rows, cols = linear_sum_assignment(iou, maximize=True)
        table = pd.DataFrame(
            {"a": rows, "b": cols, "pixels": self.counts[rows, cols], "iou": iou[rows, cols]}
        )
        table = table[table["pixels"] > 0].sort_values(["iou", "a"], ascending=[False, True])
        return table.reset_index(drop=True)

    def partners(self, side: str) -> pd.DataFrame:
        """Per prototype of model `side` ("a" or "b"): DataFrame[prototype, pixels, partner,
        partner_iou, matched, matched_iou]: its best partner by IoU in the other model (-1 and
        NaN when it has no pixel) and its Hungarian partner (-1 when unmatched)."""
        iou = self.iou() if side == "a" else self.iou().T
        counts = self.counts if side == "a" else self.counts.T
        pixels = counts.sum(axis=1)
        filled = np.nan_to_num(iou, nan=-1.0)
        best = filled.argmax(axis=1)
        present = pixels > 0
        pairs = self.matching()
        own, other = ("a", "b") if side == "a" else ("b", "a")
        matched = np.full(len(pixels), -1)
        matched[pairs[own].to_numpy()] = pairs[other].to_numpy()
        matched_iou = np.where(matched >= 0, iou[np.arange(len(pixels)), matched], np.nan)
        return pd.DataFrame(
            {
                "prototype": np.arange(len(pixels)),
                "pixels": pixels,
                "partner": np.where(present, best, -1),
                "partner_iou": np.where(present, filled[np.arange(len(pixels)), best], np.nan),
                "matched": matched,
                "matched_iou": matched_iou,
            }
        )

    def agreement(self) -> dict:
        """Agreement of the two groupings as a whole, from the contingency table: normalised
        mutual information (arithmetic mean of the entropies, scikit-learn's default; equal to
        adjusted MI up to a chance term that vanishes at millions of pixels) via
        scipy.stats.entropy, and Cramer's V (scipy.stats.contingency.association). Both in
        [0, 1]; 1 = the same partition up to renaming."""
        used = self.counts[self.counts.sum(axis=1) > 0][:, self.counts.sum(axis=0) > 0]
        h_a, h_b = entropy(used.sum(axis=1)), entropy(used.sum(axis=0))
        mutual = h_a + h_b - entropy(used.ravel())
        mean = (h_a + h_b) / 2
        nmi = 1.0 if mean == 0 else float(np.clip(mutual / mean, 0.0, 1.0))
        small = min(used.shape) < 2  # one prototype on a side: no association to measure
        cramer = 1.0 if small else float(contingency.association(used, method="cramer"))
        return {"nmi": nmi, "cramers_v": cramer, "pixels": int(self.counts.sum())}


def correspondence(index_a, index_b, progress: bool = True) -> Correspondence:
    """Stream over both indexes' assignment maps image by image (memory: one image pair and
    the (K_A, K_B) table). Raises ImageSetMismatch for indexes of different images."""
    pairs = pair_images(index_a.images_table(), index_b.images_table())
    counts = np.zeros((index_a.num_prototypes, index_b.num_prototypes), dtype=np.int64)
    rows = zip(pairs["image_id_a"], pairs["image_id_b"])
    for id_a, id_b in tqdm(rows, total=len(pairs), disable=not progress, desc="comparing"):
        accumulate(counts, index_a.assignment(int(id_a)), index_b.assignment(int(id_b)))
    return Correspondence(counts=counts, images=len(pairs))


def summary(result: Correspondence, index_a=None, index_b=None) -> dict:
    """The JSON the command writes: the indexes, agreement, matching and the per-prototype
    partners of both models."""

    def describe(index) -> dict | None:
        if index is None:
            return None
        return {
            "path": str(index.root),
            "checkpoint_sha256": index.checkpoint_sha256,
            "num_prototypes": int(index.num_prototypes),
        }

    pixels_a = result.counts.sum(axis=1)
    pixels_b = result.counts.sum(axis=0)
    return {
        "format": FORMAT,
        "index_a": describe(index_a),
        "index_b": describe(index_b),
        "shape": list(result.shape),
        "images": result.images,
        "agreement": result.agreement(),
        "present": {"a": int((pixels_a > 0).sum()), "b": int((pixels_b > 0).sum())},
        "matching": _records(result.matching()),
        "partners_a": _records(result.partners("a")),
        "partners_b": _records(result.partners("b")),
    }


def _records(table: pd.DataFrame) -> list[dict]:
    """Rows as JSON-safe dicts (NaN -> None)."""
    rows = table.astype(object).where(table.notna(), None).to_dict("records")
    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()} for r in rows]


def long_table(result: Correspondence) -> pd.DataFrame:
    """Every cell with pixels: DataFrame[a, b, pixels, iou, matched (bool)]."""
    a, b = np.nonzero(result.counts)
    iou = result.iou()
    pairs = result.matching()
    matched = set(zip(pairs["a"].tolist(), pairs["b"].tolist()))
    return pd.DataFrame(
        {
            "a": a,
            "b": b,
            "pixels": result.counts[a, b],
            "iou": iou[a, b],
            "matched": [(int(i), int(j)) in matched for i, j in zip(a, b)],
        }
    )


def is_compare_dir(path: Path) -> bool:
    """True for an earlier output of write_outputs (its summary.json names FORMAT)."""
    import json

    try:
        return json.loads((Path(path) / "summary.json").read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def write_outputs(out: Path, result: Correspondence, index_a=None, index_b=None) -> list[Path]:
    """correspondence.parquet (long_table), partners.parquet (both models' partners, column
    model = "a" | "b") and summary.json into `out`, each written atomically."""
    out.mkdir(parents=True, exist_ok=True)
    partners = pd.concat(
        [result.partners(s).assign(model=s) for s in ("a", "b")], ignore_index=True
    )
    written = []
    for name, table in (
        ("correspondence.parquet", long_table(result)),
        ("partners.parquet", partners),
    ):
        buffer = io.BytesIO()
        table.to_parquet(buffer, index=False)
        write_bytes_atomic(out / name, buffer.getvalue())
        written.append(out / name)
    write_json_atomic(out / "summary.json", summary(result, index_a, index_b))
    return [*written, out / "summary.json"]


def format_summary(info: dict, top: int = 10) -> str:
    """A few lines for the terminal: shape, agreement, the best matched pairs."""
    agree = info["agreement"]
    lines = [
        f"{info['images']} images, {agree['pixels']:,} pixels; K_A = {info['shape'][0]} "
        f"({info['present']['a']} present), K_B = {info['shape'][1]} "
        f"({info['present']['b']} present)",
        f"agreement: NMI {agree['nmi']:.3f}, Cramer's V {agree['cramers_v']:.3f}",
        f"{len(info['matching'])} matched pairs (Hungarian on IoU); best {top}:",
    ]
    lines += [
        f"  A {m['a']:>4} <-> B {m['b']:>4}  IoU {m['iou']:.3f}  ({m['pixels']:,} px)"
        for m in info["matching"][:top]
    ]
    return "\n".join(lines)
