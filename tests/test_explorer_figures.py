"""Plotly figures: the concept map and the per-class IoU bars."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from explorer.concept_maps import ConceptMaps
from explorer.figures import UNKNOWN_CLASS, UNUSED, concept_map, iou_bars, marker_sizes, pca_2d


def _table(k: int = 6, classes: bool = True) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "prototype": np.arange(k),
            "images": [10, 5, 0, 1, 7, 3][:k],
            "slots": [12, 5, 0, 1, 9, 3][:k],
            "mean_area": [0.2, 0.1, np.nan, 0.05, 0.3, 0.02][:k],
            "mean_score": [0.5] * k,
            "label": ["sky", "", "", "<i>x</i>", "", ""][:k],
            "dominant_class": (["sky", "dog", "", "dog", "grass", "sky"] if classes else [""] * 6)[
                :k
            ],
            "purity": [0.9, 0.5, np.nan, 1.0, 0.7, 0.6][:k] if classes else [np.nan] * k,
        }
    )


def test_pca_finds_the_leading_directions():
    rng = np.random.default_rng(0)
    x = np.zeros((50, 8))
    x[:, 2] = rng.normal(0, 10, 50)
    x[:, 5] = rng.normal(0, 3, 50)
    xy = pca_2d(x + rng.normal(0, 0.01, x.shape))
    assert xy.shape == (50, 2)
    assert abs(np.corrcoef(xy[:, 0], x[:, 2])[0, 1]) > 0.99
    assert abs(np.corrcoef(xy[:, 1], x[:, 5])[0, 1]) > 0.99
    assert np.array_equal(pca_2d(np.ones((1, 4))), np.zeros((1, 2)))


def test_marker_area_grows_with_frequency():
    sizes = marker_sizes(np.array([0, 25, 100]))
    assert sizes[0] < sizes[1] < sizes[2]
    assert marker_sizes(np.zeros(3)).tolist() == [7, 7, 7]


def test_concept_map_has_one_point_per_prototype_with_ids_and_names():
    vectors = np.random.default_rng(1).normal(size=(6, 4))
    fig = concept_map(vectors, _table(), selected=4)
    points = [t for t in fig.data if t.name != "selected"]
    ids = sorted(int(c) for t in points for c in t.customdata)
    assert ids == list(range(6))
    names = {t.name for t in points}
    assert {"sky", "dog", "grass", UNUSED} == names  # prototype 2 has no images
    hover = " ".join(h for t in points for h in t.hovertext)
    assert "p0 · sky" in hover and "&lt;i&gt;x&lt;/i&gt;" in hover and "purity 0.90" in hover
    selected = [t for t in fig.data if t.name == "selected"]
    assert len(selected) == 1 and list(selected[0].customdata) == [4]


def test_concept_map_without_annotations():
    fig = concept_map(np.eye(6), _table(classes=False))
    assert {t.name for t in fig.data} == {UNKNOWN_CLASS, UNUSED}


def test_the_kept_concept_map_is_the_figure_for_every_selection_and_follows_names():
    vectors = np.random.default_rng(2).normal(size=(6, 4))
    table, maps = _table(), ConceptMaps()
    for selected in (4, 0, None, 4):
        expected = json.loads(concept_map(vectors, table, selected=selected).to_json())
        assert json.loads(maps.json(vectors, table, selected)) == expected
    renamed = table.assign(label=["sky", "dog", "", "", "", ""])
    shown = json.loads(maps.json(vectors, renamed, 1))
    assert shown == json.loads(concept_map(vectors, renamed, selected=1).to_json())
    assert "p1 · dog" in json.dumps(shown, ensure_ascii=False)


def test_iou_bars_per_mapping_sorted_by_hungarian_iou():
    evaluation = {
        "majority": {"per_class_iou": {"a": 0.1, "b": 0.5, "c": None}},
        "hungarian": {"per_class_iou": {"a": 0.7, "b": 0.2, "c": None}},
    }
    fig = iou_bars(evaluation)
    assert [t.name for t in fig.data] == ["hungarian", "majority"]
    assert list(fig.data[0].x) == ["a", "b", "c"]
    assert list(fig.data[1].y) == [0.1, 0.5, 0.0]
    assert "absent" in fig.data[0].hovertext[2]
