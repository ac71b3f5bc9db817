"""The canonical trip-record schema: what the synthetic city writes (``stvfm.datasets.synthetic``), what every trip
reader produces (``stvfm.data.trips``) and what the gridding reads (``stvfm.data.gridding``). Times are naive local
``timestamp[ns]``, coordinates WGS84 degrees."""

from __future__ import annotations

import pyarrow as pa

TRIP_COLUMNS = ("start_time", "end_time", "start_lat", "start_lon", "end_lat", "end_lon")
TRIP_SCHEMA = pa.schema(
    [(c, pa.timestamp("ns")) for c in TRIP_COLUMNS[:2]] + [(c, pa.float64()) for c in TRIP_COLUMNS[2:]]
)
