"""Hash the outputs of every kernel, to show that a refactoring changed no bit.

    python tools/bitcheck.py numba > a.json      # also: c, cuda (set NUMBA_ENABLE_CUDASIM=1
    python tools/bitcheck.py --compare a.json b.json   # for the simulator), numpy

Runs each op of fusedops.ops (every optimizer option combination over three steps, dropout
forward / backward / mask / eval and with start=, Philox, batchnorm train / eval / backward
and its synchronized pieces, the stream probe; the low-bit steps on 8-bit state, quantize)
on fixed inputs in float32 and float64, at sizes that reach every code path (serial and
parallel CPU twins, vector remainders, several CUDA blocks and a tail), and prints one SHA-256
prefix per (case, output). Run it on two checkouts (each with a fresh NUMBA_CACHE_DIR, and
again with the cache warm) and compare the two JSON files.
"""
from __future__ import annotations

import hashlib
import json
import sys

import numpy as np


def _digest(*arrays):
    h = hashlib.sha256()
    for a in arrays:
        if a is not None:
            a = a.copy_to_host() if hasattr(a, "copy_to_host") else np.asarray(a)
            h.update(str(a.dtype).encode() + str(a.shape).encode())
            h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def _vec(n, dtype, seed, *, mean=0.0, zeros=False):
    x = (np.random.default_rng(seed).standard_normal(n) + mean).astype(dtype)
    if zeros and n > 4:
        x[::5] = 0  # sign(0) and exact zeros
    return x


DTYPES = (np.float32, np.float64)
OPTIM = {  # op -> list of (case name, arrays(n, dtype) -> (args), kwargs)
    "sgd": [("plain", 0, {}), ("mom", 1, dict(momentum=0.9)),
            ("nesterov", 1, dict(momentum=0.9, nesterov=True, weight_decay=0.01, l1=1e-3)),
            ("reg", 0, dict(weight_decay=0.05, l1=1e-2))],
    "adagrad": [("plain", 1, {}), ("in", 1, dict(eps_inside_sqrt=True, weight_decay=0.01, l1=1e-3))],
    "rmsprop": [("plain", 3, {}), ("mom", 3, dict(momentum=0.8)), ("cent", 3, dict(centered=True)),
                ("both", 3, dict(momentum=0.8, centered=True, l1=1e-3, eps_inside_sqrt=True))],
    "adam": [("plain", 2, {}), ("ams", 3, dict(amsgrad=True, weight_decay=0.01)),
             ("adamw", 2, dict(decoupled=True, weight_decay=0.1, l1=1e-3)),
             ("in", 3, dict(amsgrad=True, eps_inside_sqrt=True, l1=1e-2))],
}


def optim_cases(ops, be, sizes, dtypes=DTYPES):
    out = {}
    for dt in dtypes:
        for n in sizes:
            for op, cases in OPTIM.items():
                for name, nstate, kw in cases:
                    w = _vec(n, dt, 1, zeros=True)
                    state = [np.zeros(n, dt) for _ in range(nstate)]
                    for step in range(1, 4):
                        g = _vec(n, dt, 10 + step, zeros=True) * dt(step)
                        extra = {"step": step} if op == "adam" else {}
                        getattr(ops, f"{op}_step")(w, g, *state, lr=1e-2, backend=be, **kw, **extra)
                    out[f"{op}.{name}.{np.dtype(dt).name}.{n}"] = _digest(w, *state)
    return out


def nonfinite_cases(be, sizes):
    from fusedops.ops import optim

    # public since the kernel-table change; private before it
    count_nonfinite = getattr(optim, "count_nonfinite", None) or optim._count_nonfinite

    out = {}
    for n in sizes:
        g = _vec(n, np.float32, 3)
        g[::97] = np.nan
        g[::131] = np.inf
        count = np.zeros(1, np.int64)
        if be == "cuda":
            from numba import cuda

            count = cuda.to_device(count)
            count_nonfinite(be, [cuda.to_device(g)], count)
        else:
            count_nonfinite(be, [g], count)
        out[f"nonfinite.{n}"] = _digest(count)
    return out


def dropout_cases(ops, be, sizes, dtypes=DTYPES):
    out = {}
    keys = [(0, 0), (2**40 + 7, 3), (123, 2**35 + 1)]
    for dt in dtypes:
        for n in sizes:
            x = _vec(n, dt, 4, zeros=True)
            for p in (0.0, 0.3, 1.0):
                for seed, offset in keys:
                    for mode in ("inverted", "classic"):
                        tag = f"{np.dtype(dt).name}.{n}.{p}.{seed}.{offset}.{mode}"
                        y, m = ops.dropout_forward(x, p, seed=seed, offset=offset, mode=mode, backend=be)
                        y2, _ = ops.dropout_forward(x, p, seed=seed, offset=offset, mode=mode,
                                                    return_mask=False, backend=be)
                        dx = ops.dropout_backward(x, p=p, mask=m, mode=mode, backend=be)
                        dx2 = ops.dropout_backward(x, p=p, seed=seed, offset=offset, mode=mode, backend=be)
                        out[f"dropout.fwd.{tag}"] = _digest(y, m, y2)
                        out[f"dropout.bwd.{tag}"] = _digest(dx, dx2)
                        ev, _ = ops.dropout_forward(x, p, seed=seed, mode=mode, training=False, backend=be)
                        out[f"dropout.eval.{tag}"] = _digest(ev)
                        if dt is np.float32:
                            out[f"dropout.mask.{tag}"] = _digest(
                                ops.dropout_mask(n, p, seed=seed, offset=offset, backend=be))
    rng = np.random.default_rng(5)
    counter = rng.integers(0, 2**32, (257, 4), dtype=np.uint64)
    counter[0] = 0xFFFFFFFF
    key = rng.integers(0, 2**32, (257, 2), dtype=np.uint64)
    out["philox"] = _digest(ops.philox4x32(counter, key, backend=be))
    return out


def _bn_inputs(shape, dt):
    """x (mean 100: the shifted-data case), dy, gamma, beta of the batch norm cases."""
    x = _vec(int(np.prod(shape)), dt, 6, mean=100.0).reshape(shape)
    return x, _vec(x.size, dt, 7).reshape(shape), _vec(shape[1], dt, 8), _vec(shape[1], dt, 9)


def batchnorm_cases(ops, be, shapes, dtypes=DTYPES):
    out = {}
    for dt in dtypes:
        for shape in shapes:
            c = shape[1]
            x, dy, gamma, beta = _bn_inputs(shape, dt)
            for affine in (True, False):
                g, b = (gamma, beta) if affine else (None, None)
                for track in (True, False):
                    rm = np.zeros(c, dt) if track else None
                    rv = np.ones(c, dt) if track else None
                    tag = f"{np.dtype(dt).name}.{shape}.{affine}.{track}"
                    y, mean, inv = ops.batchnorm_forward(x, g, b, rm, rv, training=True, backend=be)
                    out[f"bn.train.{tag}"] = _digest(y, mean, inv, rm, rv)
                    grads = ops.batchnorm_backward(dy, x, g, mean, inv, backend=be)
                    out[f"bn.bwd.{tag}"] = _digest(*grads)
                    ye, me, ie = ops.batchnorm_forward(x, g, b, rm, rv, training=False, backend=be)
                    out[f"bn.eval.{tag}"] = _digest(ye, me, ie)
                    ge = ops.batchnorm_backward(dy, x, g, me, ie, training=False, backend=be)
                    out[f"bn.bwd_eval.{tag}"] = _digest(*ge)
    return out


def stream_cases(ops, be, sizes, dtypes=DTYPES):
    out = {}
    for dt in dtypes:
        for n in sizes:
            b, c = _vec(n, dt, 1), _vec(n, dt, 2)
            a = np.empty_like(b)
            ops.stream_triad(a, b, c, scalar=0.7, backend=be)
            d = np.empty_like(b)
            ops.stream_copy(d, c, backend=be)
            out[f"stream.{np.dtype(dt).name}.{n}"] = _digest(a, d)
    return out


def dropout_start_cases(ops, be, sizes, starts=(3, 2**40 + 13)):
    """dropout with start= (a part of a larger stream: r = start % 4 > 0 takes the shifted path)."""
    out = {}
    for n in sizes:
        x = _vec(n, np.float32, 4)
        for start in starts:
            y, m = ops.dropout_forward(x, 0.3, seed=9, offset=1, start=start, backend=be)
            mk = ops.dropout_mask(n, 0.3, seed=9, offset=1, start=start, backend=be)
            out[f"dropout.start.{n}.{start}"] = _digest(y, m, mk)
    return out


def batchnorm_sync_cases(ops, be, shapes, dtypes=DTYPES):
    """The synchronized batch norm pieces on one part: stats, forward with batch_stats, grad
    sums, backward with grad_sums."""
    out = {}
    for dt in dtypes:
        for shape in shapes:
            c = shape[1]
            x, dy, gamma, beta = _bn_inputs(shape, dt)
            rm, rv = np.zeros(c, dt), np.ones(c, dt)
            count = x.size // c
            mean, m2 = ops.batchnorm_stats(x, backend=be)
            whole = ops.batchnorm_merge_stats(np.array([count]), mean[None], m2[None])
            y, bm, inv = ops.batchnorm_forward(x, gamma, beta, rm, rv, training=True,
                                               batch_stats=whole, backend=be)
            gs, gd = ops.batchnorm_grad_sums(dy, x, bm, backend=be)
            grads = ops.batchnorm_backward(dy, x, gamma, bm, inv, grad_sums=(gs, gd, count),
                                           backend=be)
            tag = f"{np.dtype(dt).name}.{shape}"
            out[f"bnsync.{tag}"] = _digest(mean, m2, y, bm, inv, rm, rv, gs, gd, *grads)
    return out


def lowbit_cases(ops, be, sizes):
    """The low-bit steps on 8-bit state (float32 params, and float16 params with a float32
    master and stochastic rounding) over three steps, and quantize / dequantize."""
    from fusedops.ops import lowbit as L

    out = {}
    for n in sizes:
        for half in (False, True):
            w32 = _vec(n, np.float32, 1)
            p = w32.astype(np.float16) if half else w32.copy()
            master = w32.copy() if half else None
            kw = dict(master=master, stochastic_rounding=half, seed=5, backend=be)
            q = lambda signed: L.BlockQuantized.zeros(n, signed=signed)  # noqa: E731
            m, v, h, s = q(True), q(False), q(True), q(False)
            pa, pb = p.copy(), p.copy()
            ma, mb = (None, None) if master is None else (master.copy(), master.copy())
            for step in range(1, 4):
                g = (_vec(n, np.float32, 10 + step) * np.float32(step)).astype(p.dtype)
                L.adam_step(p, g, m, v, step=step, lr=1e-2, **kw)
                L.sgd_step(pa, g, h, lr=1e-2, momentum=0.9, step=step,
                           **dict(kw, master=ma))
                L.rmsprop_step(pb, g, s, lr=1e-2, step=step, **dict(kw, master=mb))
            tag = f"{'f16' if half else 'f32'}.{n}"
            out[f"lowbit.adam.{tag}"] = _digest(p, master, m.codes, m.scales, v.codes, v.scales)
            out[f"lowbit.sgd.{tag}"] = _digest(pa, ma, h.codes, h.scales)
            out[f"lowbit.rmsprop.{tag}"] = _digest(pb, mb, s.codes, s.scales)
        x = _vec(n, np.float32, 3)
        for signed in (True, False):
            qx = L.quantize(x if signed else np.abs(x), signed=signed, backend=be)
            out[f"lowbit.quant.{n}.{signed}"] = _digest(qx.codes, qx.scales,
                                                        L.dequantize(qx, backend=be))
    return out


def run(be):
    from fusedops import ops

    if be == "cuda":  # the simulator runs every thread in Python: small, but several blocks
        sizes, bn_shapes = [0, 1, 7, 97, 1000], [(2, 3), (300, 40), (130, 5, 7)]
        big = [2000]
    else:
        sizes, bn_shapes = [0, 1, 7, 97, 100_003], [(2, 3), (300, 40), (1030, 700), (130, 5, 7)]
        big = [1000, 5000, 100_003]  # dropout: the serial (< 32768) and the parallel twins
    res = {}
    res.update(optim_cases(ops, be, sizes))
    res.update(nonfinite_cases(be, sizes[1:]))
    res.update(dropout_cases(ops, be, [0, 1, 9, 1027] + big))
    res.update(batchnorm_cases(ops, be, bn_shapes))
    res.update(stream_cases(ops, be, sizes))
    res.update(dropout_start_cases(ops, be, [9, 1027] + big))
    res.update(batchnorm_sync_cases(ops, be, bn_shapes))
    res.update(lowbit_cases(ops, be, sizes))
    return res


def compare(a_path, b_path):
    a, b = (json.load(open(p)) for p in (a_path, b_path))
    diff = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    print(f"{len(a)} vs {len(b)} outputs hashed; {len(diff)} differ")
    for k in diff[:40]:
        print(f"  {k}: {a.get(k)} != {b.get(k)}")
    return 1 if diff else 0


if __name__ == "__main__":
    if sys.argv[1] == "--compare":
        sys.exit(compare(sys.argv[2], sys.argv[3]))
    json.dump(run(sys.argv[1]), sys.stdout, indent=0, sort_keys=True)
