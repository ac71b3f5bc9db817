"""PNG figures with matplotlib's Agg backend: learning curves and forecast-vs-truth maps. Written atomically."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from stvfm.io import atomic_path


def pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, out: str | Path, dpi: int) -> Path:
    """Write ``fig`` as PNG atomically (no half-written file on a crash) and release it."""
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    pyplot().close(fig)
    return out


def learning_curves(history: Sequence[Mapping[str, float]], out: str | Path, title: str = "") -> Path:
    plt = pyplot()
    ep = [r["epoch"] for r in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
    a.plot(ep, [r["train_loss"] for r in history], "o-", label="train loss")
    a.plot(ep, [r["val_loss"] for r in history], "s-", label="val loss")
    a.set_xlabel("epoch"), a.set_ylabel("loss (scaled)"), a.legend()
    b.plot(ep, [r["val_mae"] for r in history], "o-", label="val MAE")
    b.plot(ep, [r["val_rmse"] for r in history], "s-", label="val RMSE")
    b.set_xlabel("epoch"), b.set_ylabel("original scale"), b.legend()
    fig.suptitle(title or "learning curves")
    fig.tight_layout()
    return save_figure(fig, out, dpi=90)


def per_step_curve(per_step: Sequence[Mapping[str, float]], out: str | Path, title: str = "") -> Path:
    """Test MAE and RMSE per forecast step (a PNG, so `dvc plots show` renders it offline)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    steps = [r["step"] for r in per_step]
    ax.plot(steps, [r["mae"] for r in per_step], "o-", label="MAE")
    ax.plot(steps, [r["rmse"] for r in per_step], "s-", label="RMSE")
    ax.set_xlabel("forecast step"), ax.set_ylabel("original scale"), ax.legend()
    ax.set_title(title or "test error per forecast step", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, out, dpi=100)


def forecast_map(
    truth: np.ndarray,
    pred: np.ndarray,
    out: str | Path,
    *,
    title: str = "",
    steps: Sequence[int] = (0, -1),
    channel: int = 0,
    channel_name: str = "",
) -> Path:
    """truth/pred (T, C, H, W) on the original scale: rows = forecast steps, columns = truth, forecast, |error|."""
    plt = pyplot()
    steps = [s % truth.shape[0] for s in steps]
    fig, axes = plt.subplots(len(steps), 3, figsize=(8, 2.6 * len(steps)), squeeze=False)
    vmin, vmax = (
        float(min(truth[:, channel].min(), pred[:, channel].min())),
        float(max(truth[:, channel].max(), pred[:, channel].max())),
    )
    for r, s in enumerate(steps):
        t, p = truth[s, channel], pred[s, channel]
        for c, (img, name, kw) in enumerate(
            [
                (t, "truth", dict(vmin=vmin, vmax=vmax)),
                (p, "forecast", dict(vmin=vmin, vmax=vmax)),
                (np.abs(t - p), "|error|", dict(cmap="magma")),
            ]
        ):
            im = axes[r, c].imshow(img, **kw)
            axes[r, c].set_title(f"{name}, step +{s + 1}", fontsize=9)
            axes[r, c].set_xticks([]), axes[r, c].set_yticks([])
            fig.colorbar(im, ax=axes[r, c], fraction=0.046)
    fig.suptitle(f"{title} {channel_name}".strip())
    fig.tight_layout()
    return save_figure(fig, out, dpi=80)
