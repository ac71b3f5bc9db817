"""The plain PyTorch training loop (no Ray): AdamW or Adam (``train.optimizer``), LR schedule with linear warmup then
cosine per step, MultiStepLR per epoch or constant (``train.scheduler``), gradient clipping, early stopping on
validation MAE (original scale), per-epoch callback, full-state save/resume; ``train.compile`` runs the train step
through ``torch.compile`` (:mod:`stvfm.training.compile`). The loss (``train.loss``: MSE or MAE in
Eq. 11) comes in as ``loss_fn`` (:func:`make_loss_fn`), the same for every model.

Epoch convention (one everywhere): epochs are numbered 1..N outside this loop — the log line ``epoch k/N``, the
history records' ``epoch``, ``best_epoch`` (LoopState, checkpoints, train.json, test.json), MLflow steps and the
report's curves. Only the loop's own index (``EpochResult.epoch``, sampler seeds) is 0-based.

Data-parallel wrappers (stvfm/training/ray_train.py) hand in a DDP model and distributed loaders plus an
``all_reduce`` for the metric sums; the loop itself knows nothing of Ray or MLflow.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from stvfm.config import TrainConfig
from stvfm.errors import CheckpointError
from stvfm.metrics import ErrorAccumulator
from stvfm.training.seed import rng_state, seed_everything, set_rng_state

LossFn = Callable[[Any, torch.Tensor, torch.Tensor], tuple[torch.Tensor, dict]]
Inverse = Callable[[torch.Tensor], torch.Tensor]  # scaled (B, T, C, H, W) -> original scale


@dataclass
class EpochResult:
    epoch: int  # 0-based loop index; the epoch *number* (history, logs, MLflow) is ``epoch + 1``
    train_loss: float
    val_loss: float
    val_mae: float
    val_rmse: float
    lr: float
    seconds: float
    samples: int  # training samples seen this epoch (this worker)
    is_best: bool
    stop: bool  # early stopping triggers after this epoch
    started_at: float = 0.0  # unix time the epoch started (differences include the per-epoch callback)

    @property
    def number(self) -> int:
        """The 1-based epoch number used everywhere outside the loop."""
        return self.epoch + 1

    def metrics(self) -> dict[str, float]:
        return {
            "epoch": self.number,
            "train_loss": self.train_loss,
            "val_loss": self.val_loss,
            "val_mae": self.val_mae,
            "val_rmse": self.val_rmse,
            "lr": self.lr,
            "epoch_seconds": self.seconds,
            "started_at": self.started_at,
        }


@dataclass
class LoopState:
    next_epoch: int = 0
    best_val: float = math.inf
    best_epoch: int = 0  # 1-based epoch number of the best validation MAE (0 = none yet)
    best_metrics: dict[str, float] = field(default_factory=dict)
    bad_epochs: int = 0
    stopped_early: bool = False
    history: list[dict[str, float]] = field(default_factory=list)


def warmup_cosine(
    total_steps: int,
    warmup_steps: int,
    kind: str = "cosine",
    *,
    steps_per_epoch: int = 1,
    milestones: list[int] | tuple[int, ...] = (),
    gamma: float = 0.5,
) -> Callable[[int], float]:
    """LR multiplier per optimizer step: linear warmup over ``warmup_steps``, then

    - ``cosine``: cosine decay to 0 at ``total_steps``;
    - ``multistep``: ``gamma ** (number of milestones <= epoch)`` with ``epoch = step // steps_per_epoch`` — exactly
      ``torch.optim.lr_scheduler.MultiStepLR`` stepped once per epoch (the warmup ramp multiplies it);
    - ``none`` / ``constant``: 1.
    """
    if kind not in ("cosine", "multistep", "none", "constant"):
        from stvfm.errors import ConfigError

        raise ConfigError(f"train.scheduler: '{kind}' is not one of cosine, multistep, none")
    ms = sorted(int(m) for m in milestones)
    spe = max(1, int(steps_per_epoch))

    def f(step: int) -> float:
        warm = bool(warmup_steps) and step < warmup_steps
        ramp = (step + 1) / warmup_steps if warm else 1.0
        if kind == "multistep":
            return ramp * gamma ** bisect.bisect_right(ms, step // spe)
        if warm or kind in ("none", "constant"):
            return ramp
        span = max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup_steps) / span)))

    return f


def make_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    """``train.optimizer``: ``adamw`` (decoupled weight decay) or ``adam`` (weight decay as an L2 term). The fused
    implementation (one kernel for every parameter) where torch has it for the parameters' device (CPU, CUDA): the
    same update as the default for-each one (tests/training/test_speed_equivalence.py), 5.7 -> 1.0 ms a step for the
    `real` profile's 149 parameter tensors on one CPU thread."""
    params = list(params)
    kw: dict[str, Any] = {"lr": cfg.lr, "weight_decay": cfg.weight_decay}
    if params and all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params):
        kw["fused"] = True
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, **kw)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, **kw)
    from stvfm.errors import ConfigError

    raise ConfigError(f"train.optimizer: '{cfg.optimizer}' is not one of adamw, adam")


def unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)


def _set_epoch(loader, epoch: int) -> None:
    s = getattr(loader, "sampler", None)
    if hasattr(s, "set_epoch"):
        s.set_epoch(epoch)


def _to(batch: dict, device) -> tuple[torch.Tensor, ...]:
    """(x, x_flow, y, y_flow, time_ids) on ``device``; ``time_ids`` is None for datasets without a clock."""
    tid = batch.get("time_ids")
    return (
        *(batch[k].to(device, non_blocking=True) for k in ("x", "x_flow", "y", "y_flow")),
        None if tid is None else tid.to(device, non_blocking=True),
    )


class LoopTrainer:
    """Owns optimizer, scheduler and early-stopping state for one model. ``fit(on_epoch)`` runs the remaining epochs."""

    def __init__(
        self,
        model: nn.Module,
        train_loader,
        val_loader,
        cfg: TrainConfig,
        *,
        loss_fn: LossFn,
        inverse: Inverse,
        device: str | torch.device = "cpu",
        bf16: bool = False,
        all_reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
        meta: dict | None = None,
    ):
        self.model, self.train_loader, self.val_loader, self.cfg = model, train_loader, val_loader, cfg
        self.loss_fn, self.inverse, self.device, self.bf16 = loss_fn, inverse, torch.device(device), bf16
        self.all_reduce = all_reduce
        self.meta = dict(meta or {})
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            from stvfm.errors import ConfigError

            raise ConfigError("the model has no trainable parameters (check model.variant / adapter settings)")
        self.optimizer = make_optimizer(params, cfg)
        self.steps_per_epoch = max(
            1,
            len(train_loader)
            if cfg.max_batches_per_epoch is None
            else min(len(train_loader), cfg.max_batches_per_epoch),
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            warmup_cosine(
                cfg.epochs * self.steps_per_epoch,
                cfg.warmup_epochs * self.steps_per_epoch,
                cfg.scheduler,
                steps_per_epoch=self.steps_per_epoch,
                milestones=cfg.milestones,
                gamma=cfg.gamma,
            ),
        )
        self.state = LoopState()
        self.best_model_state: dict[str, torch.Tensor] | None = None
        # train.compile: the compiled model for full batches; a short batch takes the eager one (no recompile)
        self.compiled: nn.Module | None = None
        self._full_batch: int | None = getattr(train_loader, "batch_size", None)
        if getattr(cfg, "compile", False):
            from stvfm.training.compile import compile_model

            self.compiled = compile_model(model)

    # ---- one epoch -------------------------------------------------------------------------------------------
    def _reduce(self, values: list[float]) -> list[float]:
        if self.all_reduce is None:
            return values
        return self.all_reduce(torch.tensor(values, dtype=torch.float64)).tolist()

    def train_step(
        self, x: torch.Tensor, xf: torch.Tensor, y: torch.Tensor, yf: torch.Tensor, tid: torch.Tensor | None
    ) -> torch.Tensor:
        """One optimizer step on one batch (forward under the model's autocast, Eq. 11, backward, clipping, optimizer
        and scheduler step); returns the detached loss. ``benchmarks/bench_train.py`` times exactly this."""
        model = self.model
        if self.compiled is not None:
            self._full_batch = self._full_batch or x.shape[0]
            model = self.compiled if x.shape[0] == self._full_batch else self.model
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            out = model(x, xf, time_ids=tid)
        loss, _ = self.loss_fn(out, y, yf)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip and self.cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        return loss.detach()

    def train_epoch(self, epoch: int) -> tuple[float, int]:
        self.model.train()
        _set_epoch(self.train_loader, epoch)
        total, n, samples = 0.0, 0, 0
        for i, batch in enumerate(self.train_loader):
            if i >= self.steps_per_epoch:
                break
            x, xf, y, yf, tid = _to(batch, self.device)
            loss = self.train_step(x, xf, y, yf, tid)
            total += float(loss) * x.shape[0]
            n += x.shape[0]
            samples += x.shape[0]
        tot, cnt = self._reduce([total, float(n)])
        return (tot / cnt if cnt else math.nan), samples

    @torch.no_grad()
    def validate(self, loader=None) -> tuple[float, ErrorAccumulator]:
        loader = loader if loader is not None else self.val_loader
        self.model.eval()
        acc, total, n = None, 0.0, 0
        for batch in loader:
            x, xf, y, yf, tid = _to(batch, self.device)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                out = self.model(x, xf, time_ids=tid)
            loss, _ = self.loss_fn(out, y, yf)
            total += float(loss) * x.shape[0]
            n += x.shape[0]
            acc = acc or ErrorAccumulator(y.shape[1])
            acc.update(self.inverse(y.float()), self.inverse(out.st.float()))
        if acc is None:  # this rank got no windows (tiny split, many workers): contribute zeros to the sums
            steps = getattr(getattr(loader, "dataset", None), "horizon", None) or self.meta.get("horizon")
            if steps is None:
                raise ValueError("the validation split has no windows")
            acc = ErrorAccumulator(int(steps))
        if self.all_reduce is not None:
            acc.load_tensor(self.all_reduce(acc.as_tensor()))
        tot, cnt = self._reduce([total, float(n)])
        if not cnt:
            raise ValueError("the validation split has no windows")
        return tot / cnt, acc

    # ---- the loop --------------------------------------------------------------------------------------------
    def fit(self, on_epoch: Callable[[EpochResult, LoopTrainer], None] | None = None) -> LoopState:
        st = self.state
        for epoch in range(st.next_epoch, self.cfg.epochs):
            if st.stopped_early:
                break
            t, started = time.perf_counter(), time.time()
            train_loss, samples = self.train_epoch(epoch)
            val_loss, acc = self.validate()
            val_mae, val_rmse = acc.mae, acc.rmse
            is_best = val_mae < st.best_val
            if is_best:
                st.best_val, st.best_epoch, st.bad_epochs = val_mae, epoch + 1, 0
                st.best_metrics = {"val_loss": val_loss, "val_mae": val_mae, "val_rmse": val_rmse}
                # frozen weights never change: keep only what training changes (trainable params, buffers)
                frozen = {n for n, p in unwrap(self.model).named_parameters() if not p.requires_grad}
                self.best_model_state = {
                    k: v.detach().cpu().clone() for k, v in unwrap(self.model).state_dict().items() if k not in frozen
                }
            else:
                st.bad_epochs += 1
            stop = self.cfg.patience > 0 and st.bad_epochs >= self.cfg.patience
            res = EpochResult(
                epoch,
                train_loss,
                val_loss,
                val_mae,
                val_rmse,
                self.optimizer.param_groups[0]["lr"],
                time.perf_counter() - t,
                samples,
                is_best,
                stop,
                started,
            )
            st.history.append(res.metrics())
            st.next_epoch = epoch + 1
            st.stopped_early = stop
            if on_epoch is not None:
                on_epoch(res, self)
        return st

    # ---- state -----------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume (and to export best.pt): a weights_only-loadable dict."""
        d = dict(self.meta)
        d.update(
            model_state={k: v.detach().cpu() for k, v in unwrap(self.model).state_dict().items()},
            best_model_state=self.best_model_state,
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            rng=rng_state(),
            loop=asdict(self.state),
            epoch=self.state.next_epoch - 1,
            val=self.state.best_metrics,
            train_cfg=asdict(self.cfg),
        )
        return d

    def load_state_dict(self, d: dict[str, Any], source: str = "checkpoint") -> None:
        try:
            unwrap(self.model).load_state_dict(d["model_state"])
            self.optimizer.load_state_dict(d["optimizer"])
            self.scheduler.load_state_dict(d["scheduler"])
            self.state = LoopState(**d["loop"])
            self.best_model_state = d.get("best_model_state")
            set_rng_state(d["rng"])
        except (KeyError, RuntimeError, ValueError, TypeError) as e:
            raise CheckpointError(
                f"cannot resume from '{source}': {type(e).__name__}: {str(e)[:300]} "
                f"(was it written by a different model config?)"
            ) from e


def make_loss_fn(lambda_flow: float, kind: str = "mse", scaler=None) -> LossFn:
    """Eq. 11 with the pointwise error ``kind`` (``train.loss``: mse | mae). With ``scaler`` (``train.loss_scale:
    original``) the error is taken after inverse-scaling — forecasts and targets back on the original scale, flows
    through ``inverse_diff`` — as BasicTS does, so every cell weighs by its raw counts."""
    from stvfm.models.loss import stvfm_loss
    from stvfm.models.output import ModelOutput

    def f(out, y, y_flow):
        if scaler is not None:
            flow = None if out.flow is None else scaler.inverse_diff(out.flow.float())
            out = ModelOutput(scaler.inverse(out.st.float()), flow)
            y = scaler.inverse(y.float())
            y_flow = None if y_flow is None else scaler.inverse_diff(y_flow.float())
        return stvfm_loss(out, y, y_flow, lambda_flow, kind)

    return f


def loss_fn_for(params, scaler) -> LossFn:
    """The loss of a run: ``model.lambda_flow``, ``train.loss``, ``train.loss_scale`` (scaler used when original)."""
    return make_loss_fn(
        params.model.lambda_flow, params.train.loss, scaler if params.train.loss_scale == "original" else None
    )


__all__ = [
    "EpochResult",
    "LoopState",
    "LoopTrainer",
    "loss_fn_for",
    "make_loss_fn",
    "make_optimizer",
    "seed_everything",
    "unwrap",
    "warmup_cosine",
]
