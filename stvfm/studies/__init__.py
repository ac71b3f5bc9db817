"""Studies that train models and compare them — above training and baselines, below the CLI and stages.

- :mod:`quality`: the real-data quality harness: train one model in this process, score it on validation (model
  selection) and, once, on test; the persistence / HA references on the same windows.
- :mod:`ablation`: the real-data ablation (``make ablation-real``): the variants and switches, one row each.
- :mod:`seeds`: the seed study (``make seeds-real``): ST-VFM and the STID baseline over several seeds, mean ± std.
- :mod:`sweep`: the variant / backbone sweeps of the DAG (Table 3 and appendix Table 3).

Their results are files under ``metrics/<ds>/`` that :mod:`stvfm.report` reads.
"""
