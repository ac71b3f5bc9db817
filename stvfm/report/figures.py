"""PNG figures of the report (matplotlib, Agg backend). Each function writes one file and returns its path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from stvfm.plots import pyplot, save_figure


def bars_vs_paper(rows: list[dict[str, Any]], out: Path, title: str, paper_label: str | None) -> Path:
    """Grouped bars: our MAE/RMSE beside the paper's for every row that has them; ours alone when ``paper_label`` is
    None (data not comparable with the paper's)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, metric in zip(axes, ("mae", "rmse"), strict=True):
        labels = [r["label"] for r in rows]
        x = np.arange(len(rows))
        ours = [r[metric] for r in rows]
        if paper_label is None:
            ax.bar(x, ours, 0.6, label="ours")
        else:
            theirs = [(r["paper"] or {}).get(metric, np.nan) if r.get("paper") else np.nan for r in rows]
            ax.bar(x - 0.2, ours, 0.4, label="ours")
            ax.bar(x + 0.2, theirs, 0.4, label=paper_label)
        ax.set_xticks(x, labels, rotation=20, ha="right", fontsize=8)
        ax.set_title(metric.upper())
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, out, dpi=110)


def per_step(curves: dict[str, list[dict]], out: Path, title: str) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    for name, ps in curves.items():
        if ps:
            ax.plot([r["step"] for r in ps], [r["mae"] for r in ps], marker="o", label=name)
    ax.set_xlabel("forecast step")
    ax.set_ylabel("test MAE")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, out, dpi=110)


def learning_curves(histories: dict[str, list[dict]], out: Path, title: str) -> Path:
    """Validation MAE per epoch for every run with a history (+ train/val loss of the first one)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    first = next((h for h in histories.values() if h), None)
    if first:
        ep = [h["epoch"] for h in first]  # 1-based epoch numbers (stvfm.training.loop)
        axes[0].plot(ep, [h.get("train_loss") for h in first], marker="o", label="train loss")
        axes[0].plot(ep, [h.get("val_loss") for h in first], marker="o", label="val loss")
        axes[0].set_title(f"{next(k for k, h in histories.items() if h)}: loss (scaled MSE)", fontsize=9)
        axes[0].set_xlabel("epoch")
        axes[0].legend(fontsize=7)
    for name, h in histories.items():
        if h:
            axes[1].plot([r["epoch"] for r in h], [r.get("val_mae") for r in h], marker="o", label=name)
    axes[1].set_title("validation MAE (original scale)", fontsize=9)
    axes[1].set_xlabel("epoch")
    axes[1].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, out, dpi=110)


def forecast_maps(
    truth: np.ndarray,
    preds: dict[str, np.ndarray],
    out: Path,
    title: str,
    steps=(0, 5),
    channel: int = 0,
    channel_name: str = "",
) -> Path:
    """Rows: forecast steps; columns: truth, each method, then each method's absolute error. Arrays (T, C, H, W) on
    the original scale. Every value map shares one colour scale (one colour bar), every error map a second one."""
    plt = pyplot()
    steps = [s for s in steps if s < truth.shape[0]] or [0]
    names = list(preds)
    cols = ["truth", *names, *(f"|{n} − truth|" for n in names)]
    vmax = float(max(truth[list(steps), channel].max(), *(p[list(steps), channel].max() for p in preds.values()), 1e-9))
    vmin = float(min(0.0, truth[list(steps), channel].min(), *(p[list(steps), channel].min() for p in preds.values())))
    errs = {n: np.abs(preds[n][:, channel] - truth[:, channel]) for n in names}
    emax = float(max([e[list(steps)].max() for e in errs.values()] + [1e-9]))
    fig, axes = plt.subplots(len(steps), len(cols), figsize=(2.1 * len(cols) + 1.2, 2.3 * len(steps)), squeeze=False)
    im_v = im_e = None
    for i, s in enumerate(steps):
        for j, name in enumerate(cols):
            ax = axes[i, j]
            if name == "truth":
                im_v = ax.imshow(truth[s, channel], vmin=vmin, vmax=vmax, cmap="viridis")
                label = f"truth, step {s + 1}"
            elif j <= len(names):
                a = preds[name][s, channel]
                im_v = ax.imshow(a, vmin=vmin, vmax=vmax, cmap="viridis")
                label = f"{name}, step {s + 1}\nMAE {np.abs(a - truth[s, channel]).mean():.2f}"
            else:
                n = names[j - 1 - len(names)]
                im_e = ax.imshow(errs[n][s], vmin=0, vmax=emax, cmap="magma")
                label = f"|{n} − truth|, step {s + 1}"
            ax.set_title(label, fontsize=7)
            ax.axis("off")
    fig.suptitle(f"{title} ({channel_name})" if channel_name else title, fontsize=9)
    fig.tight_layout(rect=(0, 0, 0.9, 1))
    if im_v is not None:
        fig.colorbar(im_v, cax=fig.add_axes((0.91, 0.55, 0.015, 0.35))).set_label("value", fontsize=7)
    if im_e is not None:
        fig.colorbar(im_e, cax=fig.add_axes((0.91, 0.1, 0.015, 0.35))).set_label("abs. error", fontsize=7)
    return save_figure(fig, out, dpi=110)
