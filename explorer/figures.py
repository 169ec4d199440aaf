"""Plotly figures: the concept map (2-D PCA of the prototype vectors) and per-class IoU bars."""

from __future__ import annotations

import colorsys
import html
from typing import NamedTuple

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from explorer.render import prototype_title, rgb_to_hex

UNKNOWN_CLASS = "no annotations"
UNUSED = "never assigned"
_CLASS_COLOURS = [
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#bcbd22",
    "#393b79",
    "#ad494a",
    "#637939",
    "#8c6d31",
    "#7b4173",
    "#3182bd",
    "#e6550d",
    "#31a354",
    "#756bb1",
    "#636363",
    "#9c9ede",
]


def pca_2d(vectors: np.ndarray) -> np.ndarray:
    """(K, D) -> (K, 2) coordinates on the two leading principal components (zeros where the
    data has fewer dimensions). The sign of each axis is fixed (largest |loading| positive) so
    that the map does not flip between runs."""
    x = np.asarray(vectors, dtype=np.float64)
    x = x - x.mean(axis=0, keepdims=True)
    out = np.zeros((x.shape[0], 2))
    if x.shape[0] < 2:
        return out
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    for i in range(min(2, vt.shape[0])):
        axis = vt[i] * np.sign(vt[i][np.argmax(np.abs(vt[i]))])
        out[:, i] = x @ axis
    return out


def class_colours(classes: list[str]) -> dict[str, str]:
    """A stable colour per class name (sorted order), grey for unknown/unused."""
    colours = {UNKNOWN_CLASS: "#7f7f7f", UNUSED: "#d0d0d0"}
    for i, name in enumerate(sorted(c for c in classes if c not in colours)):
        if i < len(_CLASS_COLOURS):
            colours[name] = _CLASS_COLOURS[i]
        else:
            hue = (i * 0.618033988749895) % 1.0
            colours[name] = rgb_to_hex([round(255 * c) for c in colorsys.hsv_to_rgb(hue, 0.7, 0.8)])
    return colours


def marker_sizes(images: np.ndarray, smallest: float = 7, largest: float = 38) -> np.ndarray:
    """Marker diameter grows with sqrt(frequency) so that area is proportional to it."""
    images = np.asarray(images, dtype=np.float64)
    peak = images.max() if images.size and images.max() > 0 else 1.0
    return smallest + (largest - smallest) * np.sqrt(images / peak)


def concept_map(vectors: np.ndarray, table: pd.DataFrame, selected: int | None = None) -> go.Figure:
    """Scatter of the K prototypes: position = PCA of `vectors` (K, D), size = images the
    prototype occurs in, colour = dominant class, hover = name and counts. One trace per
    class (its legend entry); each point's customdata is its prototype id (for clicks)."""
    points = map_points(vectors, table)
    fig = class_traces(points)
    if selected is not None and selected in points.table.index:
        fig.add_trace(selection_ring(points, selected))
    return fig


class MapPoints(NamedTuple):
    table: pd.DataFrame  # the prototypes table indexed and sorted by prototype
    xy: np.ndarray  # (K, 2) PCA coordinates
    sizes: np.ndarray  # (K,) marker diameters


def map_points(vectors: np.ndarray, table: pd.DataFrame) -> MapPoints:
    table = table.set_index("prototype", drop=False).sort_index()
    return MapPoints(table, pca_2d(vectors), marker_sizes(table["images"].to_numpy()))


def class_traces(points: MapPoints) -> go.Figure:
    """The map without a selection: one trace per dominant class, and the layout."""
    table, xy, sizes = points
    cls = table["dominant_class"].fillna("").astype(str).to_numpy().copy()
    cls[cls == ""] = UNKNOWN_CLASS
    cls[table["images"].to_numpy() == 0] = UNUSED
    colours = class_colours(list(set(cls)))
    fig = go.Figure()
    for name in sorted(set(cls), key=lambda c: (c in (UNKNOWN_CLASS, UNUSED), c)):
        rows = np.flatnonzero(cls == name)
        hover = [_hover_text(table.iloc[r]) for r in rows]
        fig.add_trace(
            go.Scatter(
                x=xy[rows, 0],
                y=xy[rows, 1],
                mode="markers+text" if len(table) <= 64 else "markers",
                text=[_marker_label(table.iloc[r]) for r in rows],
                textposition="middle center",
                textfont={"size": 9, "color": "#222"},
                name=name,
                customdata=table["prototype"].to_numpy()[rows],
                hovertext=hover,
                hoverinfo="text",
                marker={
                    "size": sizes[rows],
                    "color": colours[name],
                    "opacity": 0.8,
                    "line": {"width": 1, "color": "#333"},
                },
            )
        )
    fig.update_layout(
        margin={"l": 10, "r": 10, "t": 28, "b": 10},  # room for plotly's toolbar
        height=430,
        xaxis={"title": "PC 1", "zeroline": False, "showticklabels": False},
        yaxis={"title": "PC 2", "zeroline": False, "showticklabels": False},
        legend={"title": {"text": "dominant class"}, "itemsizing": "constant"},
        plot_bgcolor="#fafafa",
        hovermode="closest",
        clickmode="event",
    )
    return fig


def selection_ring(points: MapPoints, selected: int) -> go.Scatter:
    """An orange ring around the selected prototype's point."""
    row = points.table.index.get_loc(selected)
    return _selection_ring(points.xy[row], points.sizes[row], selected)


def _selection_ring(xy: np.ndarray, size: float, selected: int) -> go.Scatter:
    """An orange ring around the selected prototype's point at `xy` (2,)."""
    return go.Scatter(
        x=[xy[0]],
        y=[xy[1]],
        mode="markers",
        name="selected",
        showlegend=False,
        hoverinfo="skip",
        customdata=[selected],
        marker={
            "size": size + 10,
            "color": "rgba(0,0,0,0)",
            "line": {"width": 3, "color": "#ffb000"},
        },
    )


def _marker_label(row: pd.Series) -> str:
    """'p3' on the markers of prototypes that occur (the tiny unused ones stay unlabelled)."""
    return f"p{int(row['prototype'])}" if int(row["images"]) > 0 else ""


def _hover_text(row: pd.Series) -> str:
    title = html.escape(prototype_title(int(row["prototype"]), str(row.get("label") or "")))
    lines = [f"<b>{title}</b>", f"{int(row['images'])} images, {int(row['slots'])} slots"]
    if "mean_area" in row and np.isfinite(row["mean_area"]):
        lines.append(f"mean area {100 * float(row['mean_area']):.1f}%")
    dominant = str(row.get("dominant_class") or "")
    purity = row.get("purity")
    if dominant:
        purity_text = f" (purity {float(purity):.2f})" if pd.notna(purity) else ""
        lines.append(f"class {html.escape(dominant)}{purity_text}")
    return "<br>".join(lines)


def iou_bars(evaluation: dict) -> go.Figure:
    """Grouped bars of per-class IoU for each mapping in `evaluation` ({"majority": {...},
    "hungarian": {...}}, each with per_class_iou {class: iou | None}); classes sorted by the
    Hungarian IoU (or the first mapping's), None drawn as 0 with a note in the hover."""
    mappings = [m for m in ("hungarian", "majority") if m in evaluation] or list(evaluation)
    first = evaluation[mappings[0]]["per_class_iou"]
    classes = sorted(first, key=lambda c: -(first[c] if first[c] is not None else -1))
    fig = go.Figure()
    for mapping, colour in zip(mappings, ("#4363d8", "#f58231", "#3cb44b")):
        ious = evaluation[mapping]["per_class_iou"]
        values = [ious.get(c) for c in classes]
        fig.add_trace(
            go.Bar(
                x=classes,
                y=[v if v is not None else 0.0 for v in values],
                name=mapping,
                marker_color=colour,
                hovertext=[
                    f"{c}: {'absent' if v is None else f'{100 * v:.1f}% IoU'}"
                    for c, v in zip(classes, values)
                ],
                hoverinfo="text",
            )
        )
    fig.update_layout(
        barmode="group",
        height=420,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        title={"text": "IoU per class", "font": {"size": 13}},
        yaxis={"title": "IoU", "range": [0, 1], "tickformat": ".0%"},
        legend={"title": {"text": "mapping"}},
    )
    return fig
