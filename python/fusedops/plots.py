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
    from ._profile_ops import OPS
    from .profile import crossover, format_size

    plt = _plt()
    from matplotlib import ticker

    ops = [op for op in result["settings"]["ops"] if any(r["op"] == op for r in result["results"])]
    ncols = min(3, max(1, len(ops)))
    nrows = max(1, math.ceil(len(ops) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 3.8 * nrows), squeeze=False)
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
                ax.annotate(f"{side} copy probe {gbps:.0f} GB/s", (0.02, gbps), va="bottom",
                            xycoords=("axes fraction", "data"), fontsize=7, alpha=0.8)
        if llc:  # where the op's arrays together outgrow the last-level cache
            n_llc = llc / OPS[op].bytes_per_element(dtype)
            ax.axvline(n_llc, color="gray", ls=":", lw=1)
            ax.annotate(f"arrays > LLC ({llc >> 20} MiB)", (n_llc, 0.03), rotation=90,
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
        ax.legend(fontsize=7, loc="lower right")
    for ax in list(axes.flat)[len(ops):]:
        ax.axis("off")
    m = result["machine"]
    gpu = m.get("gpu") or "no GPU, so no CPU/GPU crossover"
    fig.suptitle(f"Throughput against size: {m.get('cpu')} ({m.get('threads')} threads); {gpu}",
                 fontsize=11)
    fig.tight_layout()
    return _save(fig, path)
