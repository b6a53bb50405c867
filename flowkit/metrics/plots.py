"""PNG figures of samples: a scatter for 2-D data, a grid for images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from einops import rearrange  # noqa: E402
from torch import Tensor  # noqa: E402


def save_samples(path: Path, samples: Tensor, reference: Tensor | None = None, title: str = "") -> None:
    samples = samples.detach().cpu().float()
    if samples.dim() == 2 and samples.shape[1] == 2:
        fig, ax = plt.subplots(figsize=(5, 5))
        if reference is not None:
            ref = reference.cpu()
            ax.scatter(ref[:, 0], ref[:, 1], s=2, alpha=0.3, c="tab:gray", label="target")
        ax.scatter(samples[:, 0], samples[:, 1], s=2, alpha=0.6, c="tab:blue", label="samples")
        ax.set_aspect("equal")
        ax.legend(loc="upper right", markerscale=4)
    elif samples.dim() == 4 and samples.shape[1] in (1, 3):  # grey or RGB images
        side = int(min(samples.shape[0], 64) ** 0.5)
        grid = rearrange(samples[: side * side], "(r c) ch h w -> (r h) (c w) ch", r=side)
        fig, ax = plt.subplots(figsize=(5, 5))
        ax.imshow(((grid + 1) / 2).clamp(0, 1).squeeze(-1).numpy(), cmap="gray", vmin=0, vmax=1)
        ax.axis("off")
    else:
        return  # no natural picture for other shapes (e.g. 3-D points, (2, 3, 4) arrays)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_quality_vs_nfe(path: Path, rows: list[dict[str, Any]]) -> None:
    """Sample quality against NFE: one line per model and sampler family (``euler:1``, ``euler:4`` ... on one
    line), each point labelled with its spec."""
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    key = "value" if all(r["value"] is not None for r in rows) else "error"  # without a metric: the distance to dopri5
    models = list(dict.fromkeys(r["model"] for r in rows))
    for model in models:
        for family in dict.fromkeys(r["solver"].split(":")[0] for r in rows if r["model"] == model):
            mine = sorted((r for r in rows if r["model"] == model and r["solver"].split(":")[0] == family),
                          key=lambda r: r["nfe"])
            label = family if len(models) == 1 else f"{family}, {mine[0]['name']} ({model})"
            ax.plot([r["nfe"] for r in mine], [r[key] for r in mine], marker="o", label=label)
            for r in mine:
                ax.annotate(r["solver"], (r["nfe"], r[key]), fontsize=6)
    ax.set_xscale("log")
    ax.set_xlabel("NFE")
    ax.set_ylabel(("RMS distance to dopri5" if key == "error" else rows[0]["metric"]) if rows else "")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
