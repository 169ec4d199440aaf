"""The concept map as the page receives it, without rebuilding the plotly figure per click.

Building the figure and its JSON took ~45 ms at K = 32 on 2 cores, on every prototype shown.
The map changes only with the concept names (hover texts); the selection is one extra trace.
So the map without a selection is built once per set of names and kept as parsed JSON, and a
selection adds its ring: the same JSON as figures.concept_map(..., selected) gives.
"""

from __future__ import annotations

import json
import threading

import numpy as np
import pandas as pd
import plotly.io as pio

from explorer.figures import class_traces, map_points, selection_ring


class ConceptMaps:
    """Per app (one in each AppContext): the concept map's JSON for any selected prototype."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple | None = None
        self._base: tuple | None = None  # (MapPoints, parsed figure without a selection)

    def json(self, vectors: np.ndarray, table: pd.DataFrame, selected: int | None) -> str:
        """Plotly JSON of figures.concept_map(vectors, table, selected); `table` is the index's
        prototypes table (its labels column is what changes while the app runs)."""
        key = tuple(table.sort_values("prototype")["label"].fillna("").astype(str))
        with self._lock:
            if key != self._key:
                points = map_points(vectors, table)
                self._base = (points, json.loads(class_traces(points).to_json()))
                self._key = key
            points, base = self._base
        data = base["data"]
        if selected is not None and selected in points.table.index:
            trace = selection_ring(points, int(selected)).to_plotly_json()
            ring = json.loads(pio.json.to_json_plotly(trace))
            data = [*data, ring]
        return json.dumps({"data": data, "layout": base["layout"]})
