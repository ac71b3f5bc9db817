"""Errors that name what is wrong and where. Every user-facing failure raises one of these."""

from __future__ import annotations


class StvfmError(Exception):
    """Base class: the CLI prints the message alone (no traceback) and exits non-zero."""


class ConfigError(StvfmError):
    """A parameter or configuration value is invalid; the message says which key and what to change."""


class DataError(StvfmError):
    """Input data is bad (checksum, corrupt file, NaN, negative counts, wrong rank, too short ...)."""

    def __init__(self, message: str, *, dataset: str | None = None, path: str | None = None):
        where = ", ".join(p for p in (f"dataset '{dataset}'" if dataset else "", f"file '{path}'" if path else "") if p)
        super().__init__(f"{where}: {message}" if where else message)
        self.dataset = dataset
        self.path = path


class DownloadError(DataError):
    """A file could not be fetched (offline, HTTP error, checksum mismatch)."""


class WeightsError(StvfmError):
    """Pretrained weights are missing or do not match their checksum."""


class CheckpointError(StvfmError):
    """A training checkpoint is missing, truncated or corrupt."""
