"""Data half of the DAG: readers -> gridding -> canonical grid (Zarr) -> ST flow -> split/scaler/windows.

Modules: ``readers`` (raw formats -> canonical xarray Dataset), ``gridding`` (trip records -> in/out counts, streamed),
``validate``, ``stats``, ``flow`` (Eq. 4), ``split`` (70/15/15 + windows), ``scaler``, ``windows`` (WindowDataset),
``stages`` (run_grid / run_flow / run_split, called by ``pipelines/`` and ``stvfm data``).
"""
