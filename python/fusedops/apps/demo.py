"""`fusedops demo`, the main job: the machine (`fusedops info`), then the digits MLP, a
denoising autoencoder, L1 against L2, the optimizers on the course's quadratic, 8-bit optimizer
state and bfloat16 parameters (demo_lowbit.py), and a short profile, each printing its results as it goes; figures and `summary.json` (every figure's
numbers) go to a report folder. The GPU is used when one is present, the CPU otherwise.
"""
from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import numpy as np

from .. import backends
from . import demo_lowbit
from . import demo_sections as s
from .demo_sections import QUADRATIC, optimizer_trajectories

__all__ = ["run_demo", "pick_backend", "optimizer_trajectories", "FIGURES", "QUADRATIC"]

FIGURES = {
    "learning_curves": "learning_curves.png",
    "denoising": "denoising.png",
    "latent_space": "latent_space.png",
    "optimizer_trajectories": "optimizer_trajectories.png",
    "weights_l1_l2": "weights_l1_l2.png",
    "throughput": "throughput.png",
    "low_precision": demo_lowbit.FIGURE,
}


class _Report:
    """The report folder, summary.json and the running log."""

    def __init__(self, out_dir):
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.summary = {"figures": {}, "seconds": {}}
        self.t0 = time.perf_counter()

    def section(self, title):
        print(f"\n== {title} ({time.perf_counter() - self.t0:.0f} s)", flush=True)

    def figure(self, key, numbers, draw):
        path = self.dir / FIGURES[key]
        t = time.perf_counter()
        draw(path)
        self.summary["figures"][key] = {"file": FIGURES[key], **numbers}
        self.summary["seconds"][key] = round(time.perf_counter() - t, 2)
        print(f"   wrote {path}", flush=True)

    def save(self):
        self.summary["seconds"]["total"] = round(time.perf_counter() - self.t0, 1)
        with open(self.dir / "summary.json", "w") as f:
            json.dump(self.summary, f, indent=1, default=_jsonable)
        return self.dir / "summary.json"


def _jsonable(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"{type(o).__name__} is not JSON serializable")


def pick_backend(backend=None) -> str:
    """The backend the models train on: `backend`, else the GPU when one is present (the nn
    API also needs CuPy there), else numba. The profile covers every backend regardless."""
    if backend is not None:
        return backend
    if backends.backend_unavailable_reason("cuda") is None and not backends.cuda_simulator():
        try:
            from ..nn.parameter import array_module

            array_module("cuda")
            return "cuda"
        except backends.BackendUnavailableError as exc:  # no CuPy: train on the CPU
            print(f"note: training on the CPU ({exc})")
    return "numba"


def run_demo(out_dir="fusedops-report", *, quick: bool = False, backend=None, seed: int = 0,
             progress: bool = True) -> dict:
    """Run every section; returns the summary (also written to out_dir/summary.json)."""
    rep = _Report(out_dir)
    nn_backend = pick_backend(backend)
    rep.summary.update(quick=quick, seed=seed, nn_backend=nn_backend)
    steps = [("machine", s.machine), ("digits MLP", s.digits_mlp), ("denoising autoencoder",
             s.denoising), ("L1 against L2", s.l1_l2), ("optimizers on " + QUADRATIC,
             s.trajectories), ("8-bit state and bfloat16 parameters", demo_lowbit.section),
             ("profile", s.profile_section)]
    training = (s.digits_mlp, s.denoising, s.l1_l2, demo_lowbit.section)
    for title, fn in steps:
        rep.section(title)
        t = time.perf_counter()
        threads = s.few_threads(nn_backend) if fn in training else contextlib.nullcontext()
        with threads:
            fn(rep, nn_backend=nn_backend, quick=quick, seed=seed, progress=progress)
        rep.summary["seconds"][title] = round(time.perf_counter() - t, 1)
    path = rep.save()
    print(f"\nreport: {rep.dir}/ ({len(rep.summary['figures'])} figures, {path.name}) in "
          f"{rep.summary['seconds']['total']:.0f} s", flush=True)
    return rep.summary
