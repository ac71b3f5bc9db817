"""Dataset registry (Table 1 of the paper), downloads, synthetic generator and readers."""

from stvfm.datasets.registry import DATASETS, DatasetSpec, Source, get_spec, list_specs  # noqa: F401  (re-exported)
