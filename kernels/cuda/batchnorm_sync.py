"""Synchronized batch normalization for the CUDA backend: the pieces of a batch norm whose
batch is split across processes (reference/batchnorm_sync.py is the specification).

The passes over this process's rows are batchnorm.py's kernels, and the two new reductions
merge their partials with batchnorm.py's block merges (_merge_channel, _sum_channel: 8 fixed
chunk ranges per column, those in order, then the columns of a channel over l), so with a
single part every result has the bits of the plain training kernels. The whole batch's
per-channel numbers go through batchnorm.py's combine kernels as one chunk of `count` rows
per channel.
"""
from numba import cuda, float64

from .batchnorm import (_GROUPS, _LANES, CHUNK_ROWS, _chunk_partials, _elementwise_geometry,
                        _grad_combine_kernel, _grad_input_kernel, _grad_partials_kernel,
                        _merge_channel, _merge_grid, _normalize_kernel, _optional, _scratch,
                        _stats_combine_kernel, _stats_partials_kernel, _sum_channel)
from .launch import block_for, current_stream, grid_for


@cuda.jit
def _channel_stats_kernel(mean, m2, pmean, pm2, n, nl, chunk):
    """mean, m2 (C,) float64 <- per channel the merge of its (chunk, column) partials, as in
    batchnorm._stats_combine_kernel; zeros when there are no rows."""
    sn = cuda.shared.array((_GROUPS, _LANES), float64)
    sm = cuda.shared.array((_GROUPS, _LANES), float64)
    sq = cuda.shared.array((_GROUPS, _LANES), float64)
    c = cuda.blockIdx.x * _LANES + cuda.threadIdx.x
    active = c < mean.size
    _, ma, m2a = _merge_channel(sn, sm, sq, c, active, pmean, pm2, n, nl, chunk)
    if cuda.threadIdx.y == 0 and active:
        mean[c] = ma
        m2[c] = m2a


@cuda.jit
def _channel_sums_kernel(dsum, ddot, psum, pdot, nl):
    """dsum, ddot (C,) float64 <- per channel its (chunk, column) sums, as in
    batchnorm._grad_combine_kernel."""
    ss = cuda.shared.array((_GROUPS, _LANES), float64)
    sd = cuda.shared.array((_GROUPS, _LANES), float64)
    c = cuda.blockIdx.x * _LANES + cuda.threadIdx.x
    active = c < dsum.size
    db, dot = _sum_channel(ss, sd, c, active, psum, pdot, nl)
    if cuda.threadIdx.y == 0 and active:
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


def batchnorm_stats(mean, m2, x, *, threads_per_block):
    """mean, m2 (C,) float64 <- per-channel mean and M2 of x (N,C,L); device arrays."""
    n, c, nl = x.shape
    if c * nl == 0:
        return
    pmean, pm2 = _chunk_partials(_stats_partials_kernel, n, c * nl, threads_per_block,
                                 x.reshape(n, c * nl))
    _channel_stats_kernel[_merge_grid(c)](mean, m2, pmean, pm2, n, nl, CHUNK_ROWS)


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
    _stats_combine_kernel[_merge_grid(c)](
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
    if c * nl == 0:
        return
    psum, pdot = _chunk_partials(_grad_partials_kernel, n, c * nl, threads_per_block,
                                 dy.reshape(n, c * nl), x.reshape(n, c * nl), mean, nl)
    _channel_sums_kernel[_merge_grid(c)](dsum, ddot, psum, pdot, nl)


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
    _grad_combine_kernel[_merge_grid(c)](
        dgamma, dbeta, cm, c1, c2, c3, gsum.reshape(1, c), gdot.reshape(1, c), mean, invstd, g,
        1, float(count), True, has_g)
    if n:
        cm, c1, c2, c3 = (_per_column(t, v, nl, tpb)
                          for t, v in (("cm", cm), ("cs", c1), ("cb", c2), ("c3", c3)))
        grid, block = _elementwise_geometry(n, c * nl, tpb)
        _grad_input_kernel[grid, block, current_stream()](dx.reshape(n, c * nl), dy.reshape(n, c * nl),
                                                          x.reshape(n, c * nl), cm, c1, c2, c3)
