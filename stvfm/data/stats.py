"""Per-channel statistics of a gridded series (written beside the grid as ``<ds>.stats.parquet``).

Columns: ``channel``, ``min``, ``max``, ``mean``, ``std`` (over time and cells), ``missing_steps`` (time steps whose
frame is all zero for that channel: no record fell in it), ``records`` (trip endpoints counted into the channel; for
pre-gridded input the number of cell values, ``T*H*W``) and ``dropped`` (trip endpoints outside the bbox/span; 0 for
pre-gridded input).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import xarray as xr


def grid_stats(
    ds: xr.Dataset, records: Mapping[str, int] | None = None, dropped: Mapping[str, int] | None = None
) -> pd.DataFrame:
    v = np.asarray(ds["flow"].values, dtype=np.float64)
    T, H, W, _ = v.shape
    rows = []
    for c, name in enumerate(ds["channel"].values):
        x = v[..., c]
        name = str(name)
        rows.append(
            {
                "channel": name,
                "min": float(x.min()),
                "max": float(x.max()),
                "mean": float(x.mean()),
                "std": float(x.std()),
                "missing_steps": int((x.reshape(T, -1) == 0).all(axis=1).sum()),
                "records": int(records[name]) if records and name in records else int(T * H * W),
                "dropped": int(dropped[name]) if dropped and name in dropped else 0,
            }
        )
    return pd.DataFrame(rows)
