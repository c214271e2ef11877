"""Batch norm: forward (train), forward (eval), backward and forward+backward per backend,
float32, beside a straightforward NumPy implementation and PyTorch (F.batch_norm with
autograd) in the same groups. Run with `pytest benchmarks/test_batchnorm.py --benchmark-only`.

FUSEDOPS_BENCH_SIZES gives element counts; each becomes a (count // 256, 256) batch.
"""
import os

import numpy as np
import pytest
from conftest import backend_params, cuda_sync, peer_params, run_benchmark, torch

from fusedops import ops, reference

_ENV = os.environ.get("FUSEDOPS_BENCH_SIZES")
SHAPES = ([(max(2, int(float(s)) // 256), 256) for s in _ENV.split(",")] if _ENV
          else [(256, 256), (4096, 256), (65536, 256), (16384, 1024), (65536, 1024)])
# bytes per element, fp32, each array moved once per pass (DESIGN.md): x read twice + y
BYTES = {"forward": 12, "eval": 8, "backward": 20, "forward+backward": 32}


def _numpy_plain(x, gamma, beta, rm, rv, dy, op):
    """The straightforward NumPy version a user would write (float32 throughout)."""
    if op == "eval":
        return gamma * (x - rm) / np.sqrt(rv + 1e-5) + beta
    mean = x.mean(axis=0)
    xc = x - mean
    var = (xc * xc).mean(axis=0)
    invstd = 1 / np.sqrt(var + 1e-5)
    xhat = xc * invstd
    y = gamma * xhat + beta
    rm *= 0.9
    rm += 0.1 * mean
    rv *= 0.9
    rv += 0.1 * var * (len(x) / (len(x) - 1))
    if op == "forward":
        return y
    dbeta = dy.sum(axis=0)
    dgamma = (dy * xhat).sum(axis=0)
    return gamma * invstd / len(x) * (len(x) * dy - dbeta - xhat * dgamma), dgamma, dbeta


def _torch_fn(x, gamma, beta, rm, rv, dy, op, dev):
    t = {k: torch.from_numpy(v).to(dev) for k, v in dict(x=x, g=gamma, b=beta, rm=rm, rv=rv,
                                                        dy=dy).items()}
    F = torch.nn.functional
    if op in ("forward", "eval"):
        def fn():
            with torch.no_grad():
                return F.batch_norm(t["x"], t["rm"], t["rv"], t["g"], t["b"],
                                    training=op == "forward")
        return fn
    xg, gg, bg = (t[k].clone().requires_grad_() for k in ("x", "g", "b"))
    if op == "backward":
        y = F.batch_norm(xg, t["rm"], t["rv"], gg, bg, training=True)
        return lambda: torch.autograd.grad(y, (xg, gg, bg), t["dy"], retain_graph=True)

    def fn():
        y = F.batch_norm(xg, t["rm"], t["rv"], gg, bg, training=True)
        return torch.autograd.grad(y, (xg, gg, bg), t["dy"])
    return fn


def _ours_fn(x, gamma, beta, rm, rv, dy, op, backend):
    """Our op; backend "numba+out" / "c+out" reuse preallocated y and dx (as a layer would),
    which leaves out the page faults of a fresh 4*N*F-byte array per call."""
    backend, _, reuse = backend.partition("+")
    y_out = np.empty_like(x) if reuse else None
    dx_out = np.empty_like(x) if reuse else None
    if backend == "cuda":
        from numba import cuda

        x, gamma, beta, rm, rv, dy = (cuda.to_device(a) for a in (x, gamma, beta, rm, rv, dy))
    if op in ("forward", "eval"):
        return lambda: ops.batchnorm_forward(x, gamma, beta, rm, rv, training=op == "forward",
                                             out=y_out, backend=backend)
    if op == "backward":
        _, mean, invstd = ops.batchnorm_forward(x, gamma, beta, rm, rv, training=True,
                                                backend=backend)
        return lambda: ops.batchnorm_backward(dy, x, gamma, mean, invstd, out=dx_out,
                                              backend=backend)

    def fn():
        y, mean, invstd = ops.batchnorm_forward(x, gamma, beta, rm, rv, training=True,
                                                out=y_out, backend=backend)
        return ops.batchnorm_backward(dy, x, gamma, mean, invstd, out=dx_out, backend=backend)
    return fn


def _check(fn_out, x, gamma, beta, rm0, rv0, dy, op):
    """Compare once with the float64 reference (running stats start from rm0, rv0)."""
    first = fn_out[0] if isinstance(fn_out, tuple) else fn_out
    got = first.cpu().numpy() if hasattr(first, "cpu") else (
        first.copy_to_host() if hasattr(first, "copy_to_host") else first)
    n, f = x.shape
    y, mean, invstd = np.empty_like(x), np.empty(f, x.dtype), np.empty(f, x.dtype)
    if op == "eval":
        reference.batchnorm_forward_eval(y[:, :, None], mean, invstd, x[:, :, None], rm0, rv0,
                                         gamma, beta, 1e-5)
    else:
        reference.batchnorm_forward_train(y[:, :, None], mean, invstd, None, None,
                                          x[:, :, None], gamma, beta, 1e-5, 0.1)
    if op in ("backward", "forward+backward"):
        expected, dg, db = np.empty_like(x), np.empty(f, x.dtype), np.empty(f, x.dtype)
        reference.batchnorm_backward(expected[:, :, None], dg, db, dy[:, :, None],
                                     x[:, :, None], mean, invstd, gamma, True)
    else:
        expected = y
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-3)


REUSE = [pytest.param(f"{p.values[0]}+out", marks=p.marks, id=f"{p.values[0]}+out")
         for p in backend_params(("numba", "c"))]


@pytest.mark.parametrize("shape", SHAPES, ids=[f"{n}x{f}" for n, f in SHAPES])
@pytest.mark.parametrize("op", list(BYTES))

@pytest.mark.parametrize("backend",
                         backend_params() + REUSE + [pytest.param("numpy-plain")] + peer_params())
def test_batchnorm(benchmark, backend, op, shape):
    benchmark.group = f"batchnorm-{op} {shape[0]}x{shape[1]}"
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(shape) * 2 + 1).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    gamma = rng.uniform(0.5, 1.5, shape[1]).astype(np.float32)
    beta = rng.uniform(-1, 1, shape[1]).astype(np.float32)
    rm, rv = np.zeros(shape[1], np.float32), np.ones(shape[1], np.float32)
    on_gpu = backend in ("cuda", "torch-cuda")
    sync = None
    if backend.startswith("torch"):
        dev = "cuda" if backend == "torch-cuda" else "cpu"
        fn = _torch_fn(x, gamma, beta, rm.copy(), rv.copy(), dy, op, dev)
        sync = torch.cuda.synchronize if dev == "cuda" else None
    elif backend == "numpy-plain":
        r1, r2 = rm.copy(), rv.copy()
        fn = lambda: _numpy_plain(x, gamma, beta, r1, r2, dy, op)  # noqa: E731
    else:
        fn = _ours_fn(x, gamma, beta, rm.copy(), rv.copy(), dy, op, backend)
        sync = cuda_sync if backend == "cuda" else None
    _check(fn(), x, gamma, beta, rm, rv, dy, op)  # warm-up (JIT) and correctness, untimed
    run_benchmark(benchmark, fn, nbytes=BYTES[op] * x.size, on_gpu=on_gpu, sync=sync)
