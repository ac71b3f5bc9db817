"""Training (Section 4.1's setup): the plain PyTorch loop, the Ray Train wrapper, checkpoints, the train and evaluate
stages.

- :mod:`loop`: ``LoopTrainer`` — epochs, validation, early stopping, best-validation weights (CPU, no Ray).
- :mod:`components`: model + datasets + scaler of a dataset's split outputs; :mod:`seed`; :mod:`checkpoint` (best.pt,
  last.pt: ``torch.load(weights_only=True)``).
- :mod:`run`: the plain in-process training run; :mod:`ray_train`: the same loop data-parallel under Ray Train V2.
- :mod:`stage`: the ``train`` stage (exports ``models/<ds>/``, the model version, the MLflow run and registry entry).
- :mod:`evaluate`: the ``evaluate`` stage (test MAE/RMSE of the best checkpoint, per step and channel, plots).
"""
