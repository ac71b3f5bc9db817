"""ARIMA per cell and channel (statsmodels), with a fixed order and bounded cost.

Settings (``baselines.arima`` in params.yaml):

- ``order`` [p, d, q], default ``[2, 0, 1]``, the same for every series (the paper does not state one); d is 0 or 1.
- Each series (one cell, one channel) is centred on its **train** mean and fitted with
  ``statsmodels.tsa.arima.model.ARIMA(order, trend="n").fit(method=...)`` on the train split only — at most its last
  ``max_fit_steps`` steps. ``method`` is ``hannan_rissanen`` by default (statsmodels' regression-based ARMA estimator,
  ~10-20 ms per series on this CPU) or ``statespace`` (exact MLE, ~0.5-1 s per series on a loaded 2-core box) or
  ``innovations_mle``. Cost: O(cells × channels × max_fit_steps).
- Forecasts use the **fitted parameters fixed** (no refit): the one-step innovations ε_t of the ARMA recursion are
  computed once over the whole series (conditional on zero pre-sample values, vectorised over all series), and for a
  window the 6-step forecast is the ARMA recursion from its last input step with future innovations set to 0 (for
  d = 1, on the differences, then cumulated onto the last input value). Each forecast therefore conditions on the past
  only (the window's inputs and what came before them), never on the target steps.
- A series that is constant over the train split (e.g. an always-empty cell), or whose fit fails, is forecast by its
  train mean; a fit whose MA part is not invertible is replaced by an AR(p) fit of the same series. Counts are reported
  (``constant_series``, ``failed_fits``, ``ar_fallbacks``).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import numpy as np

from stvfm.errors import ConfigError

log = logging.getLogger(__name__)
FIT_METHODS = ("hannan_rissanen", "statespace", "innovations_mle")


@dataclass
class ArimaSettings:
    order: tuple[int, int, int] = (2, 0, 1)
    max_fit_steps: int = 2016
    method: str = "hannan_rissanen"

    @classmethod
    def from_params(cls, cfg: dict | None) -> ArimaSettings:
        cfg = dict(cfg or {})
        unknown = set(cfg) - {"order", "max_fit_steps", "method"}
        if unknown:
            raise ConfigError(
                f"baselines.arima: unknown key(s) {', '.join(sorted(unknown))}; allowed: order, max_fit_steps, method"
            )
        order = tuple(int(v) for v in cfg.get("order", (2, 0, 1)))
        if len(order) != 3 or min(order) < 0 or order[0] + order[2] == 0 or order[1] > 1:
            raise ConfigError(
                f"baselines.arima.order: expected [p, d, q] with p+q >= 1 and d in (0, 1), got {list(order)}"
            )
        method = str(cfg.get("method", "hannan_rissanen"))
        if method not in FIT_METHODS:
            raise ConfigError(f"baselines.arima.method: '{method}' is not one of {', '.join(FIT_METHODS)}")
        steps = int(cfg.get("max_fit_steps", 2016))
        if steps < 10 * (order[0] + order[2] + 1):
            raise ConfigError(f"baselines.arima.max_fit_steps: {steps} is too few for order {list(order)}")
        return cls(order, steps, method)


def _fit_one(y: np.ndarray, order: tuple[int, int, int], method: str) -> tuple[np.ndarray, np.ndarray]:
    from statsmodels.tsa.arima.model import ARIMA

    strict = method == "statespace"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = ARIMA(y, order=order, trend="n", enforce_stationarity=strict, enforce_invertibility=strict).fit(
            method=method
        )
    return np.asarray(res.arparams, np.float64), np.asarray(res.maparams, np.float64)


def _invertible(ma: np.ndarray) -> bool:
    if ma.size == 0:
        return True
    roots = np.roots(np.r_[ma[::-1], 1.0])  # 1 + θ1 z + ... + θq z^q
    return bool(np.all(np.abs(roots) > 1.0 + 1e-6))


@dataclass
class ArimaForecaster:
    """Fitted per-series ARMA coefficients of a series (T, *cells), flattened to S series."""

    settings: ArimaSettings
    means: np.ndarray  # (S,) train means
    ar: np.ndarray  # (S, p)
    ma: np.ndarray  # (S, q)
    use_mean: np.ndarray  # (S,) bool: forecast the train mean (constant series / failed fit)
    shape: tuple
    constant_series: int = 0
    failed_fits: int = 0
    ar_fallbacks: int = 0

    @property
    def n_series(self) -> int:
        return len(self.means)

    @classmethod
    def fit(cls, series: np.ndarray, train: tuple[int, int], settings: ArimaSettings | None = None) -> ArimaForecaster:
        settings = settings or ArimaSettings()
        p, d, q = settings.order
        a, b = train
        flat = series.reshape(series.shape[0], -1).astype(np.float64)
        tr = flat[max(a, b - settings.max_fit_steps) : b]
        means = flat[a:b].mean(axis=0)
        S = flat.shape[1]
        ar, ma, use_mean = np.zeros((S, p)), np.zeros((S, q)), np.zeros(S, bool)
        n_const = n_fail = n_ar = 0
        for s in range(S):
            y = tr[:, s] - means[s]
            if np.ptp(y) == 0:
                use_mean[s] = True
                n_const += 1
                continue
            try:
                phi, theta = _fit_one(y, settings.order, settings.method)
                if not _invertible(theta) and p > 0:
                    phi, _ = _fit_one(y, (p, d, 0), settings.method)
                    theta = np.zeros(q)
                    n_ar += 1
                if not (np.all(np.isfinite(phi)) and np.all(np.isfinite(theta))):
                    raise ValueError("non-finite parameters")
                ar[s], ma[s] = phi, theta
            except (np.linalg.LinAlgError, ValueError, IndexError) as e:
                log.debug("ARIMA fit failed for series %d: %s", s, e)
                use_mean[s] = True
                n_fail += 1
        return cls(settings, means, ar, ma, use_mean, tuple(series.shape[1:]), n_const, n_fail, n_ar)

    def _innovations(self, z: np.ndarray) -> np.ndarray:
        """One-step innovations ε_t = z_t - Σφ_i z_{t-i} - Σθ_j ε_{t-j} (zero pre-sample), z (T, S)."""
        p, q = self.ar.shape[1], self.ma.shape[1]
        eps = np.zeros_like(z)
        for t in range(z.shape[0]):
            e = z[t].copy()
            for i in range(1, min(p, t) + 1):
                e -= self.ar[:, i - 1] * z[t - i]
            for j in range(1, min(q, t) + 1):
                e -= self.ma[:, j - 1] * eps[t - j]
            eps[t] = e
        return eps

    def forecast(self, series: np.ndarray, t0: np.ndarray, history: int = 6, horizon: int = 6) -> np.ndarray:
        """(N, horizon, *cells) forecasts for windows starting at ``t0``: from the state at step ``t0+history-1``."""
        t0 = np.asarray(t0, np.int64)
        p, d, q = self.settings.order
        y = series.reshape(series.shape[0], -1).astype(np.float64) - self.means
        z = np.diff(y, axis=0, prepend=y[:1]) if d == 1 else y  # z[0] = 0 for d = 1
        eps = self._innovations(z)
        last = t0 + history - 1
        N = len(t0)
        # rolling buffers of the most recent values (index 0 = newest)
        zbuf = np.stack([z[np.maximum(last - i, 0)] * (last - i >= 0)[:, None] for i in range(max(p, 1))], axis=0)
        ebuf = np.stack([eps[np.maximum(last - j, 0)] * (last - j >= 0)[:, None] for j in range(max(q, 1))], axis=0)
        out = np.empty((N, horizon, y.shape[1]))
        level = y[last]
        for h in range(horizon):
            zh = np.zeros((N, y.shape[1]))
            for i in range(p):
                zh += self.ar[:, i] * zbuf[i]
            for j in range(q):
                zh += self.ma[:, j] * ebuf[j]
            zbuf = np.concatenate([zh[None], zbuf[:-1]], axis=0)
            ebuf = np.concatenate([np.zeros_like(zh)[None], ebuf[:-1]], axis=0)
            level = level + zh if d == 1 else zh
            out[:, h] = level + self.means
        out[:, :, self.use_mean] = self.means[self.use_mean]
        return out.reshape(N, horizon, *self.shape)
