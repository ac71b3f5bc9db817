"""PNG figures of the report (matplotlib, Agg backend). Each function writes one file and returns its path."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from stvfm.plots import pyplot, save_figure




def bars_vs_paper(rows: list[dict[str, Any]], out: Path, title: str, paper_label: str) -> Path:
    """Grouped bars: our MAE/RMSE beside the paper's for every row that has them."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, metric in zip(axes, ("mae", "rmse")):
        labels = [r["label"] for r in rows]
        x = np.arange(len(rows))
        ours = [r[metric] for r in rows]
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


def forecast_maps(truth: np.ndarray, preds: dict[str, np.ndarray], out: Path, title: str, steps=(0, 5),
                  channel: int = 0, channel_name: str = "") -> Path:
    """Rows: forecast steps; columns: truth then each method. Arrays (T, C, H, W) on the original scale."""
    plt = pyplot()
    cols = ["truth", *preds]
    fig, axes = plt.subplots(len(steps), len(cols), figsize=(2.2 * len(cols), 2.4 * len(steps)), squeeze=False)
    for i, s in enumerate(steps):
        vmax = float(max(truth[s, channel].max(), *(p[s, channel].max() for p in preds.values()), 1e-9))
        for j, name in enumerate(cols):
            a = truth[s, channel] if name == "truth" else preds[name][s, channel]
            im = axes[i, j].imshow(a, vmin=0, vmax=vmax, cmap="viridis")
            err = "" if name == "truth" else f"\nMAE {np.abs(a - truth[s, channel]).mean():.2f}"
            axes[i, j].set_title(f"{name}, step {s + 1}{err}", fontsize=7)
            axes[i, j].axis("off")
        fig.colorbar(im, ax=axes[i, -1], fraction=0.046)
    fig.suptitle(f"{title} ({channel_name})" if channel_name else title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, out, dpi=110)
