"""The low-precision section of `fusedops demo`: the same digits MLP trained with float32 Adam,
8-bit Adam state, bfloat16 parameters with float32 master weights, and pure bfloat16 parameters
rounded to nearest or stochastically; beside it an ill-conditioned quadratic, where pure
bfloat16 without stochastic rounding stops early. Self-contained (training, printing, figure).

The nn models compute in float32; "bfloat16 parameters" here means the optimizer holds the
weights as bfloat16 (and the gradients arrive as bfloat16), and the model computes with those
values: what a bfloat16 model stores, with float32 arithmetic, as on a CPU without bf16 units.
"""
from __future__ import annotations

import numpy as np

FIGURE = "low_precision.png"
# label: (Adam options, parameters held in bfloat16)
RUNS = {
    "float32": ({}, False),
    "8-bit state": ({"state_dtype": "int8"}, False),
    "bf16 params + fp32 master, 8-bit state": ({"state_dtype": "int8", "master_weights": True}, True),
    "pure bf16, round to nearest": ({"state_dtype": "bfloat16"}, True),
    "pure bf16, stochastic rounding": ({"state_dtype": "bfloat16", "stochastic_rounding": True}, True),
}
STYLE = {"float32": ("k", "-"), "8-bit state": ("#1f77b4", "--"),
         "bf16 params + fp32 master, 8-bit state": ("#2ca02c", "-."),
         "pure bf16, round to nearest": ("#d62728", ":"),
         "pure bf16, stochastic rounding": ("#ff7f0e", "-")}


class _Bf16Weights:
    """An optimizer for a float32 model whose weights live in bfloat16: the gradients are rounded
    to bfloat16, the low-bit Adam updates the bfloat16 copy (and its float32 master, if any),
    and the model's weights are set to the bfloat16 values after every step."""

    def __init__(self, model, lr, options):
        import ml_dtypes

        from .. import optim

        self._bf16, self._flat = ml_dtypes.bfloat16, model.flat
        self.weights = model.flat.data.astype(ml_dtypes.bfloat16)
        model.flat.data[...] = self.weights.astype(np.float32)
        self._opt = optim.Adam([self.weights], lr=lr, backend="numba", **options)
        self.param_groups = self._opt.param_groups

    def step(self):
        self._opt.step([self._flat.grad.astype(self._bf16)])
        self._flat.data[...] = self.weights.astype(np.float32)


def _state_bytes(opt) -> float:
    """Bytes the optimizer holds per parameter (state, and master weights), from its arrays."""
    lp = getattr(opt, "_lowbit", None)
    if lp is None:
        return 8.0  # float32 Adam: two float32 buffers
    n = sum(lp.size(k) for k in range(len(lp.shapes)))
    arrays = [s for st in lp.state for s in st.values()] + [m for m in lp.master if m is not None]
    return sum(getattr(a, "nbytes", 0) for a in arrays) / n


def _mlp_run(options, bf16, data, epochs, seed):
    from .. import optim
    from ..nn import MLP

    Xtr, Xte, ytr, yte = data
    model = MLP([64, 256, 128, 10], seed=seed, backend="numba")
    opt = (_Bf16Weights(model, 2e-3, options) if bf16 else
           optim.Adam(model.param_groups(), lr=2e-3, backend="numba", **options))
    hist = model.fit(Xtr, ytr, epochs=epochs, batch_size=64, optimizer=opt,
                     validation_data=(Xte, yte))
    inner = opt._opt if bf16 else opt
    return {"val_loss": hist.val_loss, "val_accuracy": hist.val_accuracy,
            "test_accuracy": model.score(Xte, yte), "optimizer_bytes_per_param": _state_bytes(inner)}


def _quadratic_run(options, bf16, steps, seed):
    """sum c_i w_i^2 / 2, curvatures over four decades, 16384 parameters: loss per step."""
    import ml_dtypes

    from .. import optim

    rng = np.random.default_rng(seed)
    c = (10 ** rng.uniform(-3, 1, 1 << 14)).astype(np.float32)
    dt = ml_dtypes.bfloat16 if bf16 else np.float32
    w = rng.standard_normal(c.size).astype(dt)
    opt = optim.Adam([w], lr=1e-2, backend="numba", **options)
    loss = []
    for _ in range(steps):
        w32 = w.astype(np.float64)
        loss.append(float(0.5 * np.mean(c * w32 * w32)))
        opt.step([(c * w.astype(np.float32)).astype(dt)])
    return loss


def section(rep, *, nn_backend, quick, seed, progress):
    """Train every RUNS entry on digits and on the quadratic; print, draw and record them."""
    from ..data import load_digits

    data = load_digits(test_size=0.2, seed=seed)
    epochs, steps = (3, 100) if quick else (25, 1000)
    runs = {}
    for label, (options, bf16) in RUNS.items():
        runs[label] = _mlp_run(options, bf16, data, epochs, seed)
        runs[label]["quadratic_loss"] = _quadratic_run(options, bf16, steps, seed)
        r = runs[label]
        print(f"   {label:<40} test accuracy {r['test_accuracy']:.4f}, optimizer "
              f"{r['optimizer_bytes_per_param']:.2f} B/param; quadratic loss "
              f"{r['quadratic_loss'][0]:.3g} -> {r['quadratic_loss'][-1]:.3g}", flush=True)
    numbers = {"model": [64, 256, 128, 10], "epochs": epochs, "quadratic_steps": steps,
               "backend": "numba", "runs": runs}
    rep.figure("low_precision", numbers, lambda p: plot(runs, p))


def plot(runs: dict, path) -> str:
    """Digits validation loss per epoch (left) and the quadratic's loss per step (right)."""
    from .plots import _plt, _save

    plt = _plt()
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.3))
    for label, r in runs.items():
        color, ls = STYLE[label]
        epochs = np.arange(1, len(r["val_loss"]) + 1)
        a.plot(epochs, r["val_loss"], color=color, ls=ls,
               label=f"{label} ({100 * r['test_accuracy']:.1f}%, "
                     f"{r['optimizer_bytes_per_param']:.1f} B/param in the optimizer)")
        b.semilogy(r["quadratic_loss"], color=color, ls=ls, label=label)
    a.set(xlabel="epoch", ylabel="validation loss", title="Digits MLP with Adam (test accuracy)")
    b.set(xlabel="step", ylabel="loss", title="Ill-conditioned quadratic (16384 parameters)")
    a.legend(fontsize=7)
    b.legend(fontsize=7)
    for ax in (a, b):
        ax.grid(alpha=0.3)
    return _save(fig, path)
