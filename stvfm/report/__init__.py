"""The reproduction report: our baselines, variants and backbones beside the paper's rows (stvfm/paper/*.csv).

- :mod:`collect`: gather a dataset's metric files (test.json, baselines.json, sweep results) into one structure.
- :mod:`figures`: PNG figures (bar charts against the paper, learning curves, forecast maps).
- :mod:`markdown`: ``reports/<ds>.md`` and ``reports/summary.md``.
- :mod:`compare`: ``stvfm compare`` (one row per experiment x dataset).
- :mod:`run`: the report stages (reads results; the studies that produce them are in :mod:`stvfm.studies`).
"""
