"""Where each DVC stage writes, per dataset. One place, so stages, the library and tests agree.

data/raw/<ds>/                 download   (files as published, or trips.parquet for synthetic)
data/raw/<ds>/manifest.json               what was fetched/generated: reader kind, files, sha256
data/grid/<ds>.zarr            grid       xarray Dataset, var ``flow`` (time, y, x, channel) float32
data/grid/<ds>.stats.parquet              per-channel min/max/mean, missing steps, record counts
data/flow/<ds>.zarr            flow       var ``dflow`` (time, y, x, channel): dflow[t] = X[t] - X[t-1], dflow[0] = 0
data/split/<ds>/               split      windows.parquet, scaler.json, meta.json
models/<ds>/                   train      best.pt (best validation), last.pt, train.json, history.json,
                                          version/ (config.json + weights.safetensors: the deployable model)
metrics/<ds>/                  evaluate   test.json, per_step.json/csv, plots
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from stvfm.config import check_dataset_name


@dataclass(frozen=True)
class DatasetPaths:
    root: Path  # project root (where params.yaml lives)
    name: str
    data_root: str = "data"

    @property
    def raw_dir(self) -> Path:
        return self.root / self.data_root / "raw" / self.name

    @property
    def manifest(self) -> Path:
        return self.raw_dir / "manifest.json"

    @property
    def grid_zarr(self) -> Path:
        return self.root / self.data_root / "grid" / f"{self.name}.zarr"

    @property
    def grid_stats(self) -> Path:
        return self.root / self.data_root / "grid" / f"{self.name}.stats.parquet"

    @property
    def flow_zarr(self) -> Path:
        return self.root / self.data_root / "flow" / f"{self.name}.zarr"

    @property
    def split_dir(self) -> Path:
        return self.root / self.data_root / "split" / self.name

    @property
    def windows(self) -> Path:
        return self.split_dir / "windows.parquet"

    @property
    def scaler(self) -> Path:
        return self.split_dir / "scaler.json"

    @property
    def split_meta(self) -> Path:
        return self.split_dir / "meta.json"

    @property
    def model_dir(self) -> Path:
        return self.root / "models" / self.name

    @property
    def model_version_dir(self) -> Path:
        """The deployable model version the train stage exports: config.json + weights.safetensors."""
        return self.model_dir / "version"

    @property
    def metrics_dir(self) -> Path:
        return self.root / "metrics" / self.name

    @property
    def report_dir(self) -> Path:
        return self.root / "reports"

    def sweep_result(self, kind: str, value: str) -> Path:
        """``metrics/<ds>/sweeps/<kind>-<value>.json`` (stage sweep_variant / sweep_backbone)."""
        return self.metrics_dir / "sweeps" / f"{kind}-{value}.json"


def dataset_paths(name: str, root: str | Path = ".", data_root: str = "data") -> DatasetPaths:
    """The stage outputs of dataset ``name``; a name that could leave its folder (``.``, ``..``, ``a/b``, an absolute
    path) is refused here too (:func:`stvfm.config.check_dataset_name`, the one rule), whatever the caller."""
    check_dataset_name(name, "dataset argument")
    return DatasetPaths(Path(root).resolve(), name, data_root)
