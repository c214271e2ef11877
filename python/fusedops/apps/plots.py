"""Figures for `fusedops profile --plot` and `fusedops demo`. matplotlib is imported lazily
with the Agg backend (no display needed); every function writes one PNG and returns its path.
"""
from __future__ import annotations

import math

import numpy as np

# one colour and marker per profiling target, the same in every panel
STYLE = {
    "numpy": ("#7f7f7f", "o"), "numba": ("#1f77b4", "s"), "c": ("#2ca02c", "^"),
    "cuda": ("#d62728", "D"), "cuda+transfer": ("#ff7f0e", "v"),
    "torch": ("#9467bd", "x"), "torch-cuda": ("#8c564b", "P"),
}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path):
    fig.savefig(path, dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return str(path)


def _minor_label(v, _):
    """Label minor log ticks 2, 3 and 5 times a power of ten; others stay unlabelled."""
    mant = v / 10 ** math.floor(math.log10(v)) if v > 0 else 0
    return f"{v:g}" if round(mant, 6) in (2.0, 3.0, 5.0) else ""


def throughput_plot(result: dict, path) -> str:
    """GB/s against elements, log-log, one panel per op and one line per backend, with the
    copy probe (dashed), the last-level cache boundary (dotted) and the GPU crossover."""
    from .profile_ops import OPS
    from .profile_report import crossover, format_size

    plt = _plt()
    from matplotlib import ticker

    ops = [op for op in result["settings"]["ops"] if any(r["op"] == op for r in result["results"])]
    ncols = min(3, max(1, len(ops)))
    nrows = max(1, math.ceil(len(ops) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 3.8 * nrows), squeeze=False,
                             layout="constrained")
    dtype = np.dtype(result["settings"]["dtype"])
    llc = result["machine"].get("last_level_cache_bytes")
    for ax, op in zip(axes.flat, ops):
        rows = [r for r in result["results"] if r["op"] == op]
        for target in dict.fromkeys(r["backend"] for r in rows):
            pts = sorted((r["n"], r["gbps"]) for r in rows if r["backend"] == target)
            color, marker = STYLE.get(target, ("black", "."))
            ax.plot(*zip(*pts), marker=marker, color=color, label=target, lw=1.5, ms=5)
        for side, style in (("cpu", "--"), ("gpu", "-.")):
            gbps = result["probe_gbps"].get(side)
            if gbps:
                ax.axhline(gbps, color="black", ls=style, lw=0.8, alpha=0.6)
                ax.annotate(f"{side} probe (copy traffic) {gbps:.0f} GB/s", (0.02, gbps), va="bottom",
                            xycoords=("axes fraction", "data"), fontsize=7, alpha=0.8)
        n_llc = llc / OPS[op].bytes_per_element(dtype) if llc else None
        if n_llc and min(r["n"] for r in rows) < n_llc < 2 * max(r["n"] for r in rows):
            # where the op's arrays together outgrow the last-level cache
            ax.axvline(n_llc, color="gray", ls=":", lw=1)
            ax.annotate(f"arrays > LLC ({llc >> 20} MiB)", (n_llc, 0.45), rotation=90,
                        xycoords=("data", "axes fraction"), fontsize=7, color="gray",
                        ha="right", va="bottom")
        for target, size in (result.get("crossover", {}).get(op) or crossover(result, op)).items():
            if size:
                n = next(r["n"] for r in rows if r["size"] == size and r["backend"] == target)
                ax.axvline(n, color=STYLE[target][0], lw=2, alpha=0.35)
                ax.annotate(f"{target} wins\nfrom {format_size(size)}", (n, 0.97), va="top",
                            xycoords=("data", "axes fraction"), fontsize=7, color=STYLE[target][0])
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(ticker.FuncFormatter(_minor_label))
        ax.set_title(f"{op} ({dtype.name}, {OPS[op].bytes_per_element(dtype):g} B/elem)", fontsize=10)
        ax.set_xlabel("elements")
        ax.set_ylabel("GB/s (median)")
        ax.grid(True, which="both", alpha=0.25)
        ax.legend(fontsize=7, loc="best")
    for ax in list(axes.flat)[len(ops):]:
        ax.axis("off")
    m = result["machine"]
    gpu = m.get("gpu") or "no GPU, so no CPU/GPU crossover"
    fig.suptitle(f"Throughput against size: {m.get('cpu')} ({m.get('threads')} threads); {gpu}",
                 fontsize=11)
    return _save(fig, path)


def learning_curves(history: dict, path, *, test_accuracy=None) -> str:
    """Train against validation loss and accuracy per epoch, with the early-stopping point:
    the best epoch (whose weights were restored) and the epoch where training stopped."""
    plt = _plt()
    has_acc = bool(history.get("accuracy"))
    fig, axes = plt.subplots(1, 2 if has_acc else 1, figsize=(11 if has_acc else 6, 4), squeeze=False)
    ep = history["epoch"]
    panels = [("loss", "cross-entropy loss", "loss", "val_loss")]
    if has_acc:
        panels.append(("accuracy", "accuracy", "accuracy", "val_accuracy"))
    for ax, (_, ylabel, tr, va) in zip(axes.flat, panels):
        ax.plot(ep, history[tr], label="train (training mode: dropout on)", color="#1f77b4")
        if history.get(va):
            ax.plot(ep, history[va], label="validation (eval mode)", color="#d62728")
        best, stop = history.get("best_epoch"), history.get("stopped_epoch")
        if best:
            ax.axvline(best, color="green", ls="--", lw=1.2,
                       label=f"best epoch {best} (weights restored)")
            if history.get(va):
                ax.plot([best], [history[va][ep.index(best)]], "o", color="green")
        if stop:
            ax.axvline(stop, color="gray", ls=":", lw=1.2, label=f"early stop at epoch {stop}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper right" if tr == "loss" else "lower right")
    if has_acc:
        axes.flat[0].set_yscale("log")
        if test_accuracy is not None:
            axes.flat[1].axhline(test_accuracy, color="black", lw=0.8, alpha=0.6)
            axes.flat[1].annotate(f"test accuracy {test_accuracy:.3f}", (0.02, test_accuracy),
                                  xycoords=("axes fraction", "data"), va="top", fontsize=8)
    fig.suptitle("Digits MLP (dropout + batch norm + Adam): learning curves", fontsize=11)
    fig.tight_layout()
    return _save(fig, path)


def digit_rows(rows: dict, path, *, title: str) -> str:
    """Rows of 8x8 digits, one row per entry of `rows` ({label: (n, 64) array})."""
    plt = _plt()
    n = max(len(v) for v in rows.values())
    fig, axes = plt.subplots(len(rows), n, figsize=(0.9 * n + 1.2, 1.0 * len(rows) + 0.6),
                             squeeze=False)
    for r, (label, imgs) in enumerate(rows.items()):
        for c in range(n):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(imgs):
                ax.imshow(np.clip(np.asarray(imgs[c]).reshape(8, 8), 0, 1), cmap="gray_r",
                          vmin=0, vmax=1, interpolation="nearest")
            if c == 0:
                ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def latent_scatter(Z, y, path, *, title: str) -> str:
    """2-D latent codes coloured by class, each class's label at its centroid."""
    plt = _plt()
    Z, y = np.asarray(Z), np.asarray(y)
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    cmap = plt.get_cmap("tab10")
    for k in np.unique(y):
        pts = Z[y == k]
        ax.scatter(pts[:, 0], pts[:, 1], s=8, alpha=0.6, color=cmap(int(k) % 10), label=str(k))
        cx, cy = np.median(pts, axis=0)
        ax.annotate(str(k), (cx, cy), fontsize=13, weight="bold", ha="center", va="center",
                    color=cmap(int(k) % 10), bbox=dict(boxstyle="circle,pad=0.15", fc="white",
                                                      ec=cmap(int(k) % 10), alpha=0.85))
    ax.set_xlabel("z1")
    ax.set_ylabel("z2")
    ax.legend(title="digit", fontsize=7, markerscale=2, loc="center left", bbox_to_anchor=(1, 0.5))
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def weight_histograms(weights: dict, path, *, threshold: float, bins: int = 70, note: str = "") -> str:
    """First-layer weights per regularizer: their distribution (left) and the distribution of
    log10|w| (right), where weights driven to zero show up as a separate mode far left."""
    plt = _plt()
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
    colors = {"L1": "#d62728", "L2": "#1f77b4"}
    allw = np.concatenate([np.ravel(w) for w in weights.values()])
    lim = float(np.abs(allw).max()) or 1.0
    edges = np.linspace(-lim, lim, bins + 1)
    mags = np.log10(np.maximum(np.abs(allw), 1e-12))
    log_edges = np.linspace(max(mags.min(), -12), mags.max(), bins + 1)
    for name, w in weights.items():
        w = np.ravel(w)
        near = float(np.mean(np.abs(w) < threshold))
        style = dict(histtype="stepfilled", alpha=0.45, color=colors.get(name))
        ax.hist(w, bins=edges, label=f"{name}: {100 * near:.1f}% of |w| < {threshold:g}", **style)
        ax2.hist(np.log10(np.maximum(np.abs(w), 1e-12)), bins=log_edges, label=name, **style)
    ax.set_yscale("log")
    ax.set_xlabel("first-layer weight")
    ax.set_ylabel("count (log)")
    ax.legend(fontsize=9)
    ax.grid(alpha=0.3)
    ax2.axvline(np.log10(threshold), color="black", ls="--", lw=1)
    ax2.annotate(f"|w| = {threshold:g}", (np.log10(threshold), 0.95), ha="right", va="top",
                 xycoords=("data", "axes fraction"), fontsize=8)
    ax2.set_xlabel("log10 |w|")
    ax2.set_ylabel("count")
    ax2.legend(fontsize=9)
    ax2.grid(alpha=0.3)
    fig.suptitle("Digits MLP first-layer weights: L1 (lasso) drives many to zero, L2 (ridge) "
                 "only shrinks them" + (f"\n{note}" if note else ""), fontsize=11)
    fig.tight_layout()
    return _save(fig, path)


def trajectories(runs: dict, path, *, loss, title: str) -> str:
    """Optimizer paths over the contours of a 2-D loss, and the loss per step (log)."""
    plt = _plt()
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.6), gridspec_kw={"width_ratios": [1.6, 1]})
    pts = np.concatenate([np.asarray(r["path"]) for r in runs.values()])
    x0, x1 = min(pts[:, 0].min(), -1) - 0.5, max(pts[:, 0].max(), 1) + 0.5
    y0, y1 = min(pts[:, 1].min(), -1) - 0.5, max(pts[:, 1].max(), 1) + 0.5
    g1, g2 = np.meshgrid(np.linspace(x0, x1, 300), np.linspace(y0, y1, 200))
    ax.contour(g1, g2, loss(g1, g2), levels=np.geomspace(0.01, loss(x0, y0), 14), colors="gray",
               linewidths=0.6, alpha=0.7)
    cmap = plt.get_cmap("tab10")
    for i, (name, r) in enumerate(runs.items()):
        p = np.asarray(r["path"])
        ax.plot(p[:, 0], p[:, 1], "-o", ms=2.5, lw=1.2, color=cmap(i), label=name)
        ax2.semilogy(np.maximum(r["loss"], 1e-13), color=cmap(i), label=name)
    ax.plot([0], [0], "k*", ms=12)
    ax.set_xlabel("w1")
    ax.set_ylabel("w2")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    ax2.set_xlabel("step")
    ax2.set_ylabel("loss (floored at 1e-13)")
    ax2.grid(alpha=0.3)
    ax2.set_title("loss per step", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)
