"""ST-VFM."""

__version__ = "0.1.0"
