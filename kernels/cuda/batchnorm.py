"""Batch normalization (Ioffe & Szegedy 2015) for the CUDA backend.

x (N, C, L) is viewed as N rows of J = C*L contiguous values; column j belongs to channel
j // L. Same deterministic scheme as the CPU backends: one thread per (row chunk, column) sums
CHUNK_ROWS rows in float64 (two-pass mean and M2 in training; the chunk is re-read from
L1/L2) into an (n_chunks, J) buffer; a block per 32 channels merges the partials in a fixed
order (Chan, Golub & LeVeque 1979; the formula and the per-channel coefficients are
kernels/common/batchnorm.py's, shared with the CPU backend): 8 fixed chunk ranges in
parallel, those in order, then the columns of a channel over l; then an elementwise pass.
Threads of a warp own consecutive columns, so loads are coalesced. Three launches per op;
scratch buffers are reused between calls (launch and allocation overhead dominate small
inputs). Explicit float() casts keep the sums in float64 under the simulator too, which
follows NumPy's promotion (python float + float32 stays float32 there).
"""
import numpy as np
from numba import cuda, float64

from ..common import batchnorm as common
from .launch import MAX_GRID_Y, current_stream, grid_for, grid_y_for, stream_key

CHUNK_ROWS = 128  # rows per partial: the same chunking as the CPU backends
# merge kernels: a fixed block of _LANES channels x _GROUPS chunk ranges (not tied to the
# threads-per-block setting, so the merge order, and the bits, never change)
_LANES = 32
_GROUPS = 8

_b = common.build(cuda.jit(device=True, inline="always"))  # shared with the CPU backend
_chan_weights, _chan_step, _finish_stats = _b.chan_weights, _b.chan_step, _b.finish_stats
_coefficients, _eval_stats = _b.coefficients, _b.eval_stats
_grad_coefficients = _b.grad_coefficients


@cuda.jit
def _stats_partials_kernel(pmean, pm2, x, chunk):
    """pmean, pm2 (n_chunks, J) float64 <- mean and M2 of each (chunk, column) of x (N, J)."""
    n, nj = x.shape
    j = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    if j >= nj:
        return
    for k in range(cuda.blockIdx.y, pmean.shape[0], cuda.gridDim.y):
        r0 = k * chunk
        r1 = min(n, r0 + chunk)
        s = 0.0
        for r in range(r0, r1):
            s += float(x[r, j])
        m = s / (r1 - r0)
        q = 0.0
        for r in range(r0, r1):  # second pass over the chunk, from cache
            d = float(x[r, j]) - m
            q += d * d
        pmean[k, j] = m
        pm2[k, j] = q


@cuda.jit(device=True)
def _chan(na, ma, m2a, nb, mb, m2b):
    """Chan et al.'s merge of (nb, mb, m2b) into (na, ma, m2a): M2a + M2b first, then d*d*w."""
    if nb == 0.0:
        return na, ma, m2a
    f, w = _chan_weights(na, nb)
    ma, dm2 = _chan_step(ma, mb, f, w)
    return na + nb, ma, m2a + m2b + dm2


@cuda.jit(device=True)
def _merge_channel(sn, sm, sq, c, active, pmean, pm2, n, nl, chunk):
    """Channel c's (count, mean, M2) merged by a block (_LANES channels, _GROUPS groups; all
    its threads call this) through shared sn, sm, sq: each group merges a fixed range of chunks
    of a column, group 0 the groups in order, then the columns in l order; valid in group 0."""
    tx, g = cuda.threadIdx.x, cuda.threadIdx.y
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
    return na, ma, m2a


@cuda.jit
def _stats_combine_kernel(mean, invstd, rm, rv, cm, cs, cb, pmean, pm2, gamma, beta,
                          n, nl, chunk, eps, momentum, update, has_gamma, has_beta):
    """Block (_LANES channels, _GROUPS groups): merges each channel's partials
    (_merge_channel) and writes mean, invstd, running stats and the coefficients of y."""
    sn = cuda.shared.array((_GROUPS, _LANES), float64)
    sm = cuda.shared.array((_GROUPS, _LANES), float64)
    sq = cuda.shared.array((_GROUPS, _LANES), float64)
    c = cuda.blockIdx.x * _LANES + cuda.threadIdx.x
    active = c < mean.size
    na, ma, m2a = _merge_channel(sn, sm, sq, c, active, pmean, pm2, n, nl, chunk)
    if cuda.threadIdx.y != 0 or not active:
        return
    inv = _finish_stats(mean, invstd, rm, rv, c, na, ma, m2a, eps, momentum, update)
    _coefficients(cm, cs, cb, c, nl, mean[c], inv, gamma, beta, has_gamma, has_beta)


@cuda.jit
def _eval_stats_kernel(mean, invstd, cm, cs, cb, rm, rv, gamma, beta, nl, eps,
                       has_gamma, has_beta):
    """mean <- rm, invstd <- 1/sqrt(rv + eps) and the per-column coefficients."""
    c = cuda.grid(1)
    if c < mean.size:
        _eval_stats(mean, invstd, cm, cs, cb, rm, rv, gamma, beta, c, nl, eps, has_gamma,
                    has_beta)


@cuda.jit
def _normalize_kernel(y, x, cm, cs, cb):
    """y (N, J) <- (x - cm)*cs + cb; 2-D blocks: columns in x, a row stride in y."""
    n, nj = x.shape
    j = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    if j >= nj:
        return
    m, s, b = cm[j], cs[j], cb[j]
    stride = cuda.gridDim.y * cuda.blockDim.y
    for r in range(cuda.blockIdx.y * cuda.blockDim.y + cuda.threadIdx.y, n, stride):
        y[r, j] = (x[r, j] - m) * s + b


@cuda.jit
def _grad_partials_kernel(psum, pdot, dy, x, mean, nl, chunk):
    """psum = sum dy, pdot = sum dy*(x - mean) over each (chunk, column), float64."""
    n, nj = x.shape
    j = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    if j >= nj:
        return
    m = float(mean[j // nl])
    for k in range(cuda.blockIdx.y, psum.shape[0], cuda.gridDim.y):
        s, p = 0.0, 0.0
        for r in range(k * chunk, min(n, k * chunk + chunk)):
            g = float(dy[r, j])
            s += g
            p += g * (float(x[r, j]) - m)
        psum[k, j] = s
        pdot[k, j] = p


@cuda.jit(device=True)
def _sum_channel(ss, sd, c, active, psum, pdot, nl):
    """Channel c's sums of its (chunk, column) partials in _merge_channel's order, through
    shared ss, sd; every thread of the block calls it; valid in group 0."""
    tx, g = cuda.threadIdx.x, cuda.threadIdx.y
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
    return db, dot


@cuda.jit
def _grad_combine_kernel(dgamma, dbeta, cm, c1, c2, c3, psum, pdot, mean, invstd, gamma, nl,
                         count, training, has_gamma):
    """Block (_LANES channels, _GROUPS groups), sums in the order of _stats_combine_kernel
    (_sum_channel): dbeta, dgamma and the coefficients of dx = c1*dy - c2 - (x - cm)*c3."""
    ss = cuda.shared.array((_GROUPS, _LANES), float64)
    sd = cuda.shared.array((_GROUPS, _LANES), float64)
    c = cuda.blockIdx.x * _LANES + cuda.threadIdx.x
    active = c < dgamma.size
    db, dot = _sum_channel(ss, sd, c, active, psum, pdot, nl)
    if cuda.threadIdx.y != 0 or not active:
        return
    k1, k2, k3 = _grad_coefficients(dgamma, dbeta, c, db, dot, invstd, gamma, count, training,
                                    has_gamma)
    for l in range(nl):
        cm[c * nl + l] = mean[c]
        c1[c * nl + l] = k1
        c2[c * nl + l] = k2
        c3[c * nl + l] = k3


@cuda.jit
def _grad_input_kernel(dx, dy, x, cm, c1, c2, c3):
    """dx (N, J) <- dy*c1 - c2 - (x - cm)*c3, in the input dtype."""
    n, nj = x.shape
    j = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    if j >= nj:
        return
    m, a, b, s = cm[j], c1[j], c2[j], c3[j]
    stride = cuda.gridDim.y * cuda.blockDim.y
    for r in range(cuda.blockIdx.y * cuda.blockDim.y + cuda.threadIdx.y, n, stride):
        dx[r, j] = dy[r, j] * a - b - (x[r, j] - m) * s


# --------------------------------------------------------------------------- launchers

_SCRATCH = {}


def _scratch(tag, shape, dtype):
    """A device buffer reused across calls, one per stream (launches on a stream run in order)."""
    key = (tag, tuple(shape), np.dtype(dtype).str, stream_key())
    buf = _SCRATCH.get(key)
    if buf is None:
        if len(_SCRATCH) > 32:
            _SCRATCH.clear()
        buf = _SCRATCH[key] = cuda.device_array(shape, dtype)
    return buf


def _optional(a, tag, dtype):
    """Absent arrays become a 1-element dummy plus a False flag: one compiled signature."""
    return (_scratch(tag, (1,), dtype), False) if a is None else (a, True)


def _columns(nj, tpb):
    """Threads along the columns (a multiple of the warp) and blocks across them."""
    bx = min(tpb, max(32, -(-nj // 32) * 32))
    return bx, -(-nj // bx)


def _elementwise_geometry(n, nj, tpb):
    bx, gx = _columns(nj, tpb)
    by = max(1, tpb // bx)
    gy = max(1, min(-(-n // by), MAX_GRID_Y, grid_for(n * nj, tpb) // gx or 1))
    return (gx, gy), (bx, by)


def _merge_grid(c):  # the block merges: a block per _LANES channels
    return -(-c // _LANES), (_LANES, _GROUPS), current_stream()


def _chunk_partials(kernel, n, nj, tpb, *args):
    """kernel(pa, pb, *args) over the (chunk, column) tasks of n rows, J = nj columns, into
    two float64 (n_chunks, J) scratch buffers; returns them (0 rows when n = 0)."""
    nch = -(-n // CHUNK_ROWS)
    pa = _scratch("pmean", (max(nch, 1), nj), np.float64)
    pb = _scratch("pm2", (max(nch, 1), nj), np.float64)
    if nch:
        bx, gx = _columns(nj, tpb)
        kernel[(gx, grid_y_for(nch)), bx, current_stream()](pa, pb, *args, CHUNK_ROWS)
    return pa[:nch], pb[:nch]


def _stats(mean, invstd, cm, cs, cb, rm, rv, x2, gamma, beta, n, nl, eps, momentum, tpb):
    pmean, pm2 = _chunk_partials(_stats_partials_kernel, n, x2.shape[1], tpb, x2)
    update = rm is not None
    rm, _ = _optional(rm, "rm", x2.dtype)
    rv, _ = _optional(rv, "rv", x2.dtype)
    g, has_g = _optional(gamma, "gamma", x2.dtype)
    b, has_b = _optional(beta, "beta", x2.dtype)
    _stats_combine_kernel[_merge_grid(mean.size)](
        mean, invstd, rm, rv, cm, cs, cb, pmean, pm2, g, b, n, nl, CHUNK_ROWS, float(eps),
        float(momentum), update, has_g, has_b)


def batchnorm_forward_train(y, mean, invstd, running_mean, running_var, x, gamma, beta,
                            eps, momentum, *, threads_per_block):
    """Device arrays: y (N,C,L), mean, invstd (C,) <- x (N,C,L), gamma|None, beta|None;
    running_mean/var (C,)|None updated in place."""
    n, c, nl = x.shape
    if c * nl == 0:
        return
    x2, y2 = x.reshape(n, c * nl), y.reshape(n, c * nl)
    cm, cs, cb = (_scratch(t, (c * nl,), x.dtype) for t in ("cm", "cs", "cb"))
    _stats(mean, invstd, cm, cs, cb, running_mean, running_var, x2, gamma, beta, n, nl,
           eps, momentum, threads_per_block)
    grid, block = _elementwise_geometry(n, c * nl, threads_per_block)
    _normalize_kernel[grid, block, current_stream()](y2, x2, cm, cs, cb)


def batchnorm_forward_eval(y, mean, invstd, x, running_mean, running_var, gamma, beta, eps,
                           *, threads_per_block):
    """y (N,C,L) normalized with the running statistics; mean <- running_mean,
    invstd <- 1/sqrt(running_var + eps)."""
    n, c, nl = x.shape
    if c * nl == 0:
        return
    tpb = threads_per_block
    cm, cs, cb = (_scratch(t, (c * nl,), x.dtype) for t in ("cm", "cs", "cb"))
    g, has_g = _optional(gamma, "gamma", x.dtype)
    b, has_b = _optional(beta, "beta", x.dtype)
    _eval_stats_kernel[-(-c // tpb), tpb, current_stream()](
        mean, invstd, cm, cs, cb, running_mean, running_var, g, b, nl, float(eps), has_g, has_b)
    if n:
        grid, block = _elementwise_geometry(n, c * nl, tpb)
        _normalize_kernel[grid, block, current_stream()](y.reshape(n, c * nl), x.reshape(n, c * nl),
                                                          cm, cs, cb)


def batchnorm_backward(dx, dgamma, dbeta, dy, x, mean, invstd, gamma, training, *,
                       threads_per_block):
    """dx (N,C,L), dgamma, dbeta (C,) <- dy, x (N,C,L), mean, invstd (C,), gamma|None."""
    n, c, nl = x.shape
    nj, tpb = c * nl, threads_per_block
    if nj == 0:
        return
    x2, dy2, dx2 = x.reshape(n, nj), dy.reshape(n, nj), dx.reshape(n, nj)
    psum, pdot = _chunk_partials(_grad_partials_kernel, n, nj, tpb, dy2, x2, mean, nl)
    cm, c1, c2, c3 = (_scratch(t, (nj,), x.dtype) for t in ("cm", "cs", "cb", "c3"))
    g, has_g = _optional(gamma, "gamma", x.dtype)
    _grad_combine_kernel[_merge_grid(c)](
        dgamma, dbeta, cm, c1, c2, c3, psum, pdot, mean, invstd, g, nl,
        float(n * nl), bool(training), has_g)
    if n:
        grid, block = _elementwise_geometry(n, nj, tpb)
        _grad_input_kernel[grid, block, current_stream()](dx2, dy2, x2, cm, c1, c2, c3)
