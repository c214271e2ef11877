"""Synchronized batch normalization for the CUDA backend: the pieces of a batch norm whose
batch is split across processes (reference/batchnorm_sync.py is the specification).

The passes over this process's rows are batchnorm.py's kernels, and the two new reductions
merge their partials in the order of batchnorm.py's combine kernels (8 fixed chunk ranges per
column, those in order, then the columns of a channel over l), so with a single part every
result has the bits of the plain training kernels. The whole batch's per-channel numbers go
through those combine kernels as one chunk of `count` rows per channel.
"""
import numpy as np
from numba import cuda, float64

from .batchnorm import (_GROUPS, _LANES, CHUNK_ROWS, _chan, _columns, _elementwise_geometry,
                        _grad_combine_kernel, _grad_input_kernel, _grad_partials_kernel,
                        _normalize_kernel, _optional, _scratch, _stats_combine_kernel,
                        _stats_partials_kernel)
from .launch import block_for, current_stream, grid_for, grid_y_for


@cuda.jit
def _channel_stats_kernel(mean, m2, pmean, pm2, n, nl, chunk):
    """mean, m2 (C,) float64 <- per channel the merge of its (chunk, column) partials, in the
    order of batchnorm._stats_combine_kernel; zeros when there are no rows."""
    sn = cuda.shared.array((_GROUPS, _LANES), float64)
    sm = cuda.shared.array((_GROUPS, _LANES), float64)
    sq = cuda.shared.array((_GROUPS, _LANES), float64)
    tx, g = cuda.threadIdx.x, cuda.threadIdx.y
    c = cuda.blockIdx.x * _LANES + tx
    active = c < mean.size
    per = (pmean.shape[0] + _GROUPS - 1) // _GROUPS
    na, ma, m2a = 0.0, 0.0, 0.0
    for l in range(nl):
        nc, mc, m2c = 0.0, 0.0, 0.0
        if active:
            for k in range(g * per, min(pmean.shape[0], (g + 1) * per)):
                nb = float(min(chunk, n - k * chunk))
                nc, mc, m2c = _chan(nc, mc, m2c, nb, pmean[k, c * nl + l], pm2[k, c * nl + l])
        sn[g, tx], sm[g, tx], sq[g, tx] = nc, mc, m2c
        cuda.syncthreads()
        if g == 0 and active:
            nc, mc, m2c = 0.0, 0.0, 0.0
            for h in range(_GROUPS):
                nc, mc, m2c = _chan(nc, mc, m2c, sn[h, tx], sm[h, tx], sq[h, tx])
            na, ma, m2a = _chan(na, ma, m2a, nc, mc, m2c)
        cuda.syncthreads()
    if g == 0 and active:
        mean[c] = ma
        m2[c] = m2a


@cuda.jit
def _channel_sums_kernel(dsum, ddot, psum, pdot, nl):
    """dsum, ddot (C,) float64 <- per channel its (chunk, column) sums, in the order of
    batchnorm._grad_combine_kernel."""
    ss = cuda.shared.array((_GROUPS, _LANES), float64)
    sd = cuda.shared.array((_GROUPS, _LANES), float64)
    tx, g = cuda.threadIdx.x, cuda.threadIdx.y
    c = cuda.blockIdx.x * _LANES + tx
    active = c < dsum.size
    per = (psum.shape[0] + _GROUPS - 1) // _GROUPS
    db, dot = 0.0, 0.0
    for l in range(nl):
        a, b = 0.0, 0.0
        if active:
            for k in range(g * per, min(psum.shape[0], (g + 1) * per)):
                a += psum[k, c * nl + l]
                b += pdot[k, c * nl + l]
        ss[g, tx], sd[g, tx] = a, b
        cuda.syncthreads()
        if g == 0 and active:
            a, b = 0.0, 0.0
            for h in range(_GROUPS):
                a += ss[h, tx]
                b += sd[h, tx]
            db += a
            dot += b
        cuda.syncthreads()
    if g == 0 and active:
        dsum[c] = db
        ddot[c] = dot


@cuda.jit
def _expand_kernel(out, v, nl):
    """out (C*L,) <- v (C,) repeated L times per channel."""
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for j in range(start, out.size, stride):
        out[j] = v[j // nl]


def _per_column(tag, v, nl, tpb):
    """Per-column coefficients (C*L,) from per-channel ones (C,)."""
    if nl == 1:
        return v
    out = _scratch(tag, (v.size * nl,), v.dtype)
    tpb = block_for(out.size, tpb)
    _expand_kernel[grid_for(out.size, tpb), tpb, current_stream()](out, v, nl)
    return out


def _partials(tag_a, tag_b, n, nj):
    nch = -(-n // CHUNK_ROWS)
    return nch, (_scratch(tag_a, (max(nch, 1), nj), np.float64),
                 _scratch(tag_b, (max(nch, 1), nj), np.float64))


def batchnorm_stats(mean, m2, x, *, threads_per_block):
    """mean, m2 (C,) float64 <- per-channel mean and M2 of x (N,C,L); device arrays."""
    n, c, nl = x.shape
    nj = c * nl
    if nj == 0:
        return
    nch, (pmean, pm2) = _partials("pmean", "pm2", n, nj)
    bx, gx = _columns(nj, threads_per_block)
    if nch:
        _stats_partials_kernel[(gx, grid_y_for(nch)), bx, current_stream()](
            pmean, pm2, x.reshape(n, nj), CHUNK_ROWS)
    _channel_stats_kernel[-(-c // _LANES), (_LANES, _GROUPS), current_stream()](
        mean, m2, pmean[:nch], pm2[:nch], n, nl, CHUNK_ROWS)


def batchnorm_forward_stats(y, mean, invstd, running_mean, running_var, x, gamma, beta,
                            smean, sm2, count, eps, momentum, *, threads_per_block):
    """y (N,C,L), mean, invstd (C,) from the whole batch's smean, sm2 (C,) float64 over `count`
    values per channel; running_mean/var (C,)|None updated in place. Device arrays."""
    n, c, nl = x.shape
    tpb = threads_per_block
    if c * nl == 0:
        return
    cm, cs, cb = (_scratch(t, (c,), x.dtype) for t in ("cm1", "cs1", "cb1"))
    update = running_mean is not None
    rm, _ = _optional(running_mean, "rm", x.dtype)
    rv, _ = _optional(running_var, "rv", x.dtype)
    g, has_g = _optional(gamma, "gamma", x.dtype)
    b, has_b = _optional(beta, "beta", x.dtype)
    # one chunk of `count` rows per channel: the combine's merge then returns (smean, sm2)
    _stats_combine_kernel[-(-c // _LANES), (_LANES, _GROUPS), current_stream()](
        mean, invstd, rm, rv, cm, cs, cb, smean.reshape(1, c), sm2.reshape(1, c), g, b,
        int(count), 1, int(count), float(eps), float(momentum), update, has_g, has_b)
    if n:
        cm, cs, cb = (_per_column(t, v, nl, tpb) for t, v in (("cm", cm), ("cs", cs), ("cb", cb)))
        grid, block = _elementwise_geometry(n, c * nl, tpb)
        _normalize_kernel[grid, block, current_stream()](y.reshape(n, c * nl),
                                                         x.reshape(n, c * nl), cm, cs, cb)


def batchnorm_grad_sums(dsum, ddot, dy, x, mean, *, threads_per_block):
    """dsum, ddot (C,) float64 <- per channel sum dy and sum dy*(x - mean); device arrays."""
    n, c, nl = x.shape
    nj = c * nl
    if nj == 0:
        return
    nch, (psum, pdot) = _partials("pmean", "pm2", n, nj)
    bx, gx = _columns(nj, threads_per_block)
    if nch:
        _grad_partials_kernel[(gx, grid_y_for(nch)), bx, current_stream()](
            psum, pdot, dy.reshape(n, nj), x.reshape(n, nj), mean, nl, CHUNK_ROWS)
    _channel_sums_kernel[-(-c // _LANES), (_LANES, _GROUPS), current_stream()](
        dsum, ddot, psum[:nch], pdot[:nch], nl)


def batchnorm_backward_sums(dx, dgamma, dbeta, dy, x, mean, invstd, gamma, gsum, gdot, count,
                            *, threads_per_block):
    """dx (N,C,L), dgamma, dbeta (C,) from the whole batch's gsum, gdot (C,) float64 over
    `count` values per channel; device arrays."""
    n, c, nl = x.shape
    tpb = threads_per_block
    if c * nl == 0:
        return
    cm, c1, c2, c3 = (_scratch(t, (c,), x.dtype) for t in ("cm1", "cs1", "cb1", "c31"))
    g, has_g = _optional(gamma, "gamma", x.dtype)
    _grad_combine_kernel[-(-c // _LANES), (_LANES, _GROUPS), current_stream()](
        dgamma, dbeta, cm, c1, c2, c3, gsum.reshape(1, c), gdot.reshape(1, c), mean, invstd, g,
        1, float(count), True, has_g)
    if n:
        cm, c1, c2, c3 = (_per_column(t, v, nl, tpb)
                          for t, v in (("cm", cm), ("cs", c1), ("cb", c2), ("c3", c3)))
        grid, block = _elementwise_geometry(n, c * nl, tpb)
        _grad_input_kernel[grid, block, current_stream()](
            dx.reshape(n, c * nl), dy.reshape(n, c * nl), x.reshape(n, c * nl), cm, c1, c2, c3)
