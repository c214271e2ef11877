"""Optimizer steps for the CUDA backend: one grid-stride launch per step.

Same contract as fusedops.reference.optim. Each thread walks i, i + stride, ... so a warp reads
and writes consecutive elements (coalesced); the grid is sized by grid_for to fill the device
once, which matters on the GPU where each extra launch costs about as much as a small step.
The launchers derive the loop constants once on the host and cast them to the arrays' dtype
(a Python float in a float32 kernel would promote the arithmetic to float64). Optional buffers
are None or an array: Numba compiles one specialization per combination and prunes the
`is None` branches, so the loop bodies carry no per-element option tests. No fastmath: the
IEEE division and square root cost nothing next to the memory traffic of a step.
"""
import math

from numba import cuda

from .launch import current_stream, grid_for


@cuda.jit(device=True, inline=True)
def _l1_term(w, l1, zero):
    t = l1 if w > zero else zero
    return -l1 if w < zero else t


@cuda.jit
def _sgd_kernel(w, h, g, lr, beta, cg, ch, l2, l1, zero):
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, w.size, stride):
        wi = w[i]
        gi = g[i] + l2 * wi + _l1_term(wi, l1, zero)
        if h is None:
            w[i] = wi - lr * gi
        else:
            hi = beta * h[i] + gi
            h[i] = hi
            w[i] = wi - lr * (cg * gi + ch * hi)


@cuda.jit
def _adagrad_kernel(w, s, g, lr, eps_in, eps_out, l2, l1, zero):
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, w.size, stride):
        wi = w[i]
        gi = g[i] + l2 * wi + _l1_term(wi, l1, zero)
        si = s[i] + gi * gi
        s[i] = si
        w[i] = wi - lr * (gi / (math.sqrt(si + eps_in) + eps_out))


@cuda.jit
def _rmsprop_kernel(w, s, h, ga, g, lr, alpha, oma, eps_in, eps_out, beta, l2, l1, zero):
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, w.size, stride):
        wi = w[i]
        gi = g[i] + l2 * wi + _l1_term(wi, l1, zero)
        si = alpha * s[i] + oma * (gi * gi)
        s[i] = si
        if ga is not None:
            gai = alpha * ga[i] + oma * gi
            ga[i] = gai
            si = si - gai * gai
        ratio = gi / (math.sqrt(si + eps_in) + eps_out)
        if h is None:
            w[i] = wi - lr * ratio
        else:
            hi = beta * h[i] + ratio
            h[i] = hi
            w[i] = wi - lr * hi


@cuda.jit(device=True, inline=True)
def _adam_moments(wi, gi, mi, vi, b1, omb1, b2, omb2, l2, l1, zero):
    gi = gi + l2 * wi + _l1_term(wi, l1, zero)
    return b1 * mi + omb1 * gi, b2 * vi + omb2 * (gi * gi)


@cuda.jit
def _adam_kernel(w, m, v, vmax, g, step_size, b1, omb1, b2, omb2, inv_c2, eps_in, eps_out,
                 decay, l2, l1, zero):
    # Two elements a grid apart per iteration, every load issued before any store: the compiler
    # keeps loads below stores that may alias them, so this doubles the bytes each thread has
    # in flight (PyTorch's multi_tensor_apply does the same with ILP 4). Past the end, the
    # partner index k repeats i: same loads, no store.
    start, stride, n = cuda.grid(1), cuda.gridsize(1), w.size
    for i in range(start, n, 2 * stride):
        j = i + stride
        k = j if j < n else i
        w0, g0, m0, v0 = w[i], g[i], m[i], v[i]
        w1, g1, m1, v1 = w[k], g[k], m[k], v[k]
        if vmax is not None:
            x0, x1 = vmax[i], vmax[k]
        m0, v0 = _adam_moments(w0, g0, m0, v0, b1, omb1, b2, omb2, l2, l1, zero)
        m1, v1 = _adam_moments(w1, g1, m1, v1, b1, omb1, b2, omb2, l2, l1, zero)
        m[i], v[i] = m0, v0
        if vmax is not None:
            v0 = x0 if x0 > v0 else v0
            vmax[i] = v0
        w[i] = w0 * decay - step_size * (m0 / (math.sqrt(v0 * inv_c2 + eps_in) + eps_out))
        if j < n:
            m[j], v[j] = m1, v1
            if vmax is not None:
                v1 = x1 if x1 > v1 else v1
                vmax[j] = v1
            w[j] = w1 * decay - step_size * (m1 / (math.sqrt(v1 * inv_c2 + eps_in) + eps_out))


@cuda.jit
def _nonfinite_kernel(count, g):
    start, stride = cuda.grid(1), cuda.gridsize(1)
    bad = 0
    for i in range(start, g.size, stride):
        if not math.isfinite(g[i]):
            bad += 1
    if bad:  # rare: one atomic per thread that saw a NaN/Inf, none otherwise
        cuda.atomic.add(count, 0, bad)


def _eps_split(eps, eps_inside_sqrt):
    return (eps, 0.0) if eps_inside_sqrt else (0.0, eps)


def _grid(n, threads_per_block):
    return grid_for(n, threads_per_block), threads_per_block, current_stream()


def sgd_update(w, h, g, lr, momentum, nesterov, l2, l1, *, threads_per_block):
    """w (n,), h (n,) or None, g (n,) device arrays: one SGD step."""
    if w.size:
        t = w.dtype.type
        cg, ch = (1.0, momentum) if nesterov else (0.0, 1.0)
        _sgd_kernel[_grid(w.size, threads_per_block)](w, h, g, t(lr), t(momentum), t(cg), t(ch),
                                                     t(l2), t(l1), t(0))


def adagrad_update(w, s, g, lr, eps, eps_inside_sqrt, l2, l1, *, threads_per_block):
    """w, s, g (n,) device arrays: one AdaGrad step."""
    if w.size:
        t = w.dtype.type
        e_in, e_out = _eps_split(eps, eps_inside_sqrt)
        _adagrad_kernel[_grid(w.size, threads_per_block)](w, s, g, t(lr), t(e_in), t(e_out),
                                                         t(l2), t(l1), t(0))


def rmsprop_update(w, s, h, ga, g, lr, alpha, eps, eps_inside_sqrt, momentum, l2, l1, *,
                   threads_per_block):
    """w, s (n,); h, ga (n,) or None; g (n,) device arrays: one RMSprop step."""
    if w.size:
        t = w.dtype.type
        e_in, e_out = _eps_split(eps, eps_inside_sqrt)
        _rmsprop_kernel[_grid(w.size, threads_per_block)](
            w, s, h, ga, g, t(lr), t(alpha), t(1.0 - alpha), t(e_in), t(e_out), t(momentum),
            t(l2), t(l1), t(0))


def adam_update(w, m, v, vmax, g, lr, beta1, beta2, eps, eps_inside_sqrt, decay, l2, l1, c1, c2,
                *, threads_per_block):
    """w, m, v (n,); vmax (n,) or None; g (n,) device arrays: one Adam/AdamW/AMSGrad step."""
    if w.size:
        t = w.dtype.type
        e_in, e_out = _eps_split(eps, eps_inside_sqrt)
        _adam_kernel[_grid(w.size, threads_per_block)](
            w, m, v, vmax, g, t(lr / c1), t(beta1), t(1.0 - beta1), t(beta2), t(1.0 - beta2),
            t(1.0 / c2), t(e_in), t(e_out), t(decay), t(l2), t(l1), t(0))


def nonfinite_count(count, g, *, threads_per_block):
    """count (1,) int64 device array += the number of NaN/Inf entries of g (n,)."""
    if g.size:
        _nonfinite_kernel[_grid(g.size, threads_per_block)](count, g)
