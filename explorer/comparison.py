"""A second index of the same images, for the Compare tab: the correspondence, matched colours,
the heatmap, one image's two groupings side by side and their matched segment table.

No Gradio here (the tab in explorer/compare_tab.py calls these functions).
"""

from __future__ import annotations

import html
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from explorer import thumbnails
from explorer.context import AppContext, index_key
from explorer.render import display_scale, enlarge, grouping_overlay, palette
from explorer.view import overlay_file
from indexing.compare.correspondence import Correspondence, accumulate, correspondence, pair_images


@dataclass(frozen=True)
class Comparison:
    """Model B beside the app's model A (both read-only while the app runs)."""

    other: AppContext  # B's index with B's colours: matched prototypes wear A's colour
    result: Correspondence  # (K_A, K_B) pixel counts over the whole collection
    matching: pd.DataFrame  # a, b, pixels, iou (Hungarian pairs, IoU desc)
    order_a: np.ndarray  # A's prototypes in heatmap order: matched first, then by pixels
    order_b: np.ndarray  # B's prototypes in heatmap order (column j matches row j)
    to_b: dict[int, int]  # A's image id -> B's image id of the same file


def open_comparison(ctx: AppContext, compare_dir: str | Path) -> Comparison:
    """Open index B (gpu off: the app already holds A's faiss) and compute the correspondence
    (one pass over both indexes' maps). Raises ImageSetMismatch / IndexFormatError /
    FileNotFoundError with clear messages."""
    from indexing import ConceptIndex

    index_b = ConceptIndex.open(compare_dir, gpu=False)
    pairs = pair_images(ctx.index.images_table(), index_b.images_table())
    result = correspondence(ctx.index, index_b)
    matching = result.matching()
    k_a, k_b = result.shape
    colours = palette(k_a + k_b)[k_a:].copy()  # unmatched B prototypes: colours A never uses
    colours[matching["b"].to_numpy()] = ctx.colours[matching["a"].to_numpy()]
    other = replace(
        ctx,
        index=index_b,
        encoder=None,
        colours=colours,
        index_key=index_key(index_b.manifest),
    )
    return Comparison(
        other=other,
        result=result,
        matching=matching,
        order_a=_order(matching["a"].to_numpy(), result.counts.sum(axis=1)),
        order_b=_order(matching["b"].to_numpy(), result.counts.sum(axis=0)),
        to_b=dict(zip(pairs["image_id_a"].tolist(), pairs["image_id_b"].tolist())),
    )


def _order(matched: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    rest = [int(p) for p in np.argsort(-pixels, kind="stable") if p not in set(matched)]
    return np.array([*matched.tolist(), *rest], dtype=np.int64)


def summary(comparison: Comparison) -> str:
    """Markdown line: both models' K, images, agreement and how many pairs matched."""
    result, other = comparison.result, comparison.other
    agree = result.agreement()
    root = html.escape(str(Path(str(other.index.root)).name))
    return (
        f"**A**: this app's index (K = {result.shape[0]}) · **B**: {root} (K = "
        f"{result.shape[1]}) · {result.images:,} images, {agree['pixels']:,} pixels · "
        f"agreement NMI **{agree['nmi']:.3f}**, Cramér's V {agree['cramers_v']:.3f} · "
        f"{len(comparison.matching)} matched pairs"
    )


def heatmap(comparison: Comparison) -> go.Figure:
    """IoU of every (a, b) pair, rows and columns in matching order (matched pairs on the
    diagonal, best first); hover gives pixels; customdata = [a, b] for the click bridge."""
    iou = np.nan_to_num(comparison.result.iou(), nan=0.0)
    rows, cols = comparison.order_a, comparison.order_b
    z = iou[np.ix_(rows, cols)]
    pixels = comparison.result.counts[np.ix_(rows, cols)]
    custom = np.stack(np.meshgrid(rows, cols, indexing="ij"), axis=-1)  # (K_A, K_B, 2)
    figure = go.Figure(
        go.Heatmap(
            z=z,
            x=[f"B{b}" for b in cols],
            y=[f"A{a}" for a in rows],
            customdata=custom,
            text=pixels,
            colorscale="Viridis",
            zmin=0,
            zmax=1,
            colorbar={"title": "IoU"},
            hovertemplate="A%{customdata[0]} · B%{customdata[1]}<br>IoU %{z:.3f}<br>"
            "%{text:,} pixels<extra></extra>",
        )
    )
    figure.update_layout(
        height=520,
        margin={"l": 50, "r": 10, "t": 30, "b": 40},
        yaxis={"autorange": "reversed", "title": "model A"},
        xaxis={"title": "model B"},
        title={"text": "pixel IoU of prototype pairs (matched pairs on the diagonal)", "x": 0},
    )
    return figure


def partner(comparison: Comparison, a: int) -> int | None:
    """A's prototype a -> its Hungarian partner in B, else its best partner by IoU, else None."""
    row = comparison.matching[comparison.matching["a"] == int(a)]
    if len(row):
        return int(row["b"].iloc[0])
    best = comparison.result.partners("a")["partner"].iloc[int(a)]
    return None if best < 0 else int(best)


def pair_text(comparison: Comparison, a: int, b: int) -> str:
    counts = comparison.result.counts
    iou = comparison.result.iou()[int(a), int(b)]
    matched = ((comparison.matching["a"] == a) & (comparison.matching["b"] == b)).any()
    iou_text = "undefined (both absent)" if np.isnan(iou) else f"{iou:.3f}"
    return (
        f"**A{a}** ({counts[a].sum():,} px) and **B{b}** ({counts[:, b].sum():,} px): "
        f"{counts[a, b]:,} shared pixels, IoU {iou_text}"
        + (" · matched pair" if matched else " · not a matched pair")
    )


def image_pair(ctx: AppContext, comparison: Comparison, image_id: int):
    """A collection image (A's id) -> (overlay A (H*f, W*f, 3), overlay B, table of matched
    segments) with matched prototypes in the same colour. KeyError for unknown ids."""
    rgb, map_a = thumbnails.image_pixels(ctx, int(image_id))
    map_b = comparison.other.index.assignment(comparison.to_b[int(image_id)])
    factor = display_scale(*map_a.shape)
    big = enlarge(rgb, factor)
    overlays = [
        grouping_overlay(big, enlarge(m, factor), c.colours, 0.5)
        for m, c in ((map_a, ctx), (map_b, comparison.other))
    ]
    return overlays[0], overlays[1], segment_pairs(comparison, map_a, map_b)


def segment_pairs(comparison: Comparison, map_a: np.ndarray, map_b: np.ndarray) -> pd.DataFrame:
    """One image's segments: DataFrame[a, b, area_a %, area_b %, iou_here, iou_collection]; a
    row per matched pair with a segment in this image, then unmatched segments (other side -1)."""
    here = np.zeros(comparison.result.shape, dtype=np.int64)
    accumulate(here, map_a, map_b)
    iou_here = Correspondence(here, 1).iou()
    iou_all = comparison.result.iou()
    area_a, area_b = here.sum(axis=1) / here.sum(), here.sum(axis=0) / here.sum()
    rows, seen_a, seen_b = [], set(), set()
    for a, b in zip(comparison.matching["a"], comparison.matching["b"]):
        if area_a[a] > 0 or area_b[b] > 0:
            rows.append((a, b, area_a[a], area_b[b], iou_here[a, b], iou_all[a, b]))
            seen_a.add(a), seen_b.add(b)
    rows += [
        (a, -1, area_a[a], 0.0, np.nan, np.nan) for a in np.flatnonzero(area_a) if a not in seen_a
    ]
    rows += [
        (-1, b, 0.0, area_b[b], np.nan, np.nan) for b in np.flatnonzero(area_b) if b not in seen_b
    ]
    table = pd.DataFrame(
        rows, columns=["a", "b", "area_a %", "area_b %", "iou_here", "iou_collection"]
    )
    table[["a", "b"]] = table[["a", "b"]].astype(int)
    for column in ("area_a %", "area_b %"):
        table[column] = (100 * table[column].astype(float)).round(1)
    return table.round({"iou_here": 3, "iou_collection": 3})


def correspondence_table(comparison: Comparison) -> pd.DataFrame:
    """Every (a, b) with shared pixels: DataFrame[a, b, pixels, iou, matched], matched pairs
    first (by IoU), then by pixels."""
    from indexing.compare.correspondence import long_table

    table = long_table(comparison.result)
    table["iou"] = table["iou"].round(4)
    return table.sort_values(
        ["matched", "iou", "pixels"], ascending=[False, False, False]
    ).reset_index(drop=True)


def overlay_files(ctx: AppContext, comparison: Comparison, image_id: int):
    """image_pair with the overlays written to the served cache: (path A, path B, table)."""
    over_a, over_b, table = image_pair(ctx, comparison, image_id)
    return overlay_file(ctx, over_a), overlay_file(ctx, over_b), table
