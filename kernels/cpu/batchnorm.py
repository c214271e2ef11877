"""Batch normalization (Ioffe & Szegedy 2015) for the Numba CPU backend.

x (N, C, L) is viewed as N rows of J = C*L contiguous values; column j belongs to channel
j // L. Reductions are deterministic: each task owns a fixed block of CHUNK_ROWS rows and up
to TILE columns (sizes fixed by the data, never by the thread count) and writes float64
partials to its own row of an (n_chunks, J) buffer; they are merged in a fixed order: per
column over the chunks (vectorized across columns), then per channel over l. Forward
partials are a chunk's mean and M2, computed two-pass over the chunk while it is still in
cache (no E[x^2]-E[x]^2, which cancels when mean >> std) and merged with Chan, Golub &
LeVeque's pairwise update (1979; the formula in kernels/common/batchnorm.py, shared with the
CUDA backend, as are the per-channel coefficients). x is read from memory twice in training
(12 B/elem in fp32), dy and x twice in backward (20 B/elem). No fastmath: the float64 sums
must keep their order to give the same bits on every run, serial or parallel.
Each kernel runs in parallel when its own work (elements it reads) reaches PARALLEL_MIN, else
as its serial twin (cpu/jit.py): the per-channel combines of a narrow layer wake no pool.
"""
import numpy as np
from numba import njit, prange

from ..common import batchnorm as common
from .jit import kernel, run

CHUNK_ROWS = 128  # rows per partial; 128 rows x TILE fp32 columns = 256 KiB stays in L2
TILE = 512        # columns per task
MERGE_TILE = 64   # columns per task when merging the partials
# Elements of work from which a pass runs in parallel. Measured as optim.PARALLEL_MIN (same
# benchmark, quiet VM): forward + backward crossed over at 256K and 1M elements of x in the two
# sweeps (1.26-1.34x at 1M, 0.8-0.9x at 64K).
PARALLEL_MIN = 1 << 20

_b = common.build(njit(inline="always"))  # the merge and the coefficients, shared with CUDA
_chan_weights, _chan_step, _finish_stats = _b.chan_weights, _b.chan_step, _b.finish_stats
_coefficients, _eval_stats = _b.coefficients, _b.eval_stats
_grad_coefficients, _spread = _b.grad_coefficients, _b.spread


@njit(inline="always")
def _merge_columns(cmean, cm2, c, nl, n):
    """Channel c's (count, mean, M2): its L columns' (mean, M2), each over n rows, merged in
    l order (shared with batchnorm_sync.py)."""
    na, ma, m2a = 0.0, 0.0, 0.0
    for l in range(nl):
        f, w = _chan_weights(na, n)
        ma, dm2 = _chan_step(ma, cmean[c * nl + l], f, w)
        m2a += cm2[c * nl + l] + dm2
        na += n
    return na, ma, m2a


@njit(inline="always")
def _sum_columns(csum, cdot, c, nl):
    """Channel c's sums: its L columns' sums added in l order (shared with batchnorm_sync.py)."""
    db, dot = 0.0, 0.0
    for l in range(nl):
        db += csum[c * nl + l]
        dot += cdot[c * nl + l]
    return db, dot


@kernel(parallel_min=PARALLEL_MIN)
def _stats_partials_kernel(pmean, pm2, x, chunk, tile):
    """pmean, pm2 (n_chunks, J) float64 <- x (N, J): mean and M2 of each (chunk, column).
    Accumulators are fresh local arrays and rows are 1-D views: with them LLVM vectorizes
    both passes (accumulating in place in pmean ran 3x slower)."""
    n, nj = x.shape
    ntiles = (nj + tile - 1) // tile
    for task in prange(pmean.shape[0] * ntiles):
        k, t = task // ntiles, task % ntiles
        r0, j0 = k * chunk, t * tile
        r1, j1 = min(n, r0 + chunk), min(nj, j0 + tile)
        s = np.zeros(j1 - j0)
        for r in range(r0, r1):
            xr = x[r, j0:j1]
            for j in range(j1 - j0):
                s[j] += xr[j]
        m = pmean[k, j0:j1]
        for j in range(j1 - j0):
            m[j] = s[j] / (r1 - r0)
        q = np.zeros(j1 - j0)
        for r in range(r0, r1):  # second pass over the chunk, from cache
            xr = x[r, j0:j1]
            for j in range(j1 - j0):
                d = xr[j] - m[j]
                q[j] += d * d
        pm2[k, j0:j1] = q


@kernel(parallel_min=PARALLEL_MIN)
def _merge_chunks_kernel(cmean, cm2, pmean, pm2, n, chunk, tile):
    """cmean, cm2 (J,) <- per column, Chan et al.'s merge of its chunk partials in chunk
    order. Every column has the same counts, so the weights are scalars: no division per
    element, and the column loop vectorizes."""
    nch, nj = pmean.shape
    for t in prange((nj + tile - 1) // tile):
        j0, j1 = t * tile, min(nj, (t + 1) * tile)
        ma, m2a = np.zeros(j1 - j0), np.zeros(j1 - j0)
        na = 0.0
        for k in range(nch):
            nb = float(min(chunk, n - k * chunk))
            f, w = _chan_weights(na, nb)
            pk, qk = pmean[k, j0:j1], pm2[k, j0:j1]
            for j in range(j1 - j0):
                mb = pk[j]  # before ma[j]: LLVM then interleaves the vector loop 2x (asm)
                ma[j], dm2 = _chan_step(ma[j], mb, f, w)
                m2a[j] += qk[j] + dm2
            na += nb
        cmean[j0:j1] = ma
        cm2[j0:j1] = m2a


@kernel(parallel_min=PARALLEL_MIN)
def _stats_combine_kernel(mean, invstd, rm, rv, cm, cs, cb, cmean, cm2, gamma, beta,
                          n, nl, eps, momentum, update, has_gamma, has_beta):
    """Per channel: merge its L column results (each over n rows) in l order, write mean,
    invstd, the running stats (when `update`) and the coefficients of y = (x-cm)*cs + cb."""
    for c in prange(mean.size):
        na, ma, m2a = _merge_columns(cmean, cm2, c, nl, n)
        inv = _finish_stats(mean, invstd, rm, rv, c, na, ma, m2a, eps, momentum, update)
        _coefficients(cm, cs, cb, c, nl, mean[c], inv, gamma, beta, has_gamma, has_beta)


@kernel(parallel_min=PARALLEL_MIN)
def _eval_stats_kernel(mean, invstd, cm, cs, cb, rm, rv, gamma, beta, nl, eps,
                       has_gamma, has_beta):
    """mean <- rm, invstd <- 1/sqrt(rv + eps) and the per-column coefficients."""
    for c in prange(mean.size):
        _eval_stats(mean, invstd, cm, cs, cb, rm, rv, gamma, beta, c, nl, eps, has_gamma,
                    has_beta)


@kernel(parallel_min=PARALLEL_MIN)
def _normalize_kernel(y, x, cm, cs, cb, chunk):
    """y (N, J) <- (x - cm)*cs + cb, in the input dtype; columns innermost (vectorized)."""
    n, nj = x.shape
    for k in prange((n + chunk - 1) // chunk):
        for r in range(k * chunk, min(n, (k + 1) * chunk)):
            xr, yr = x[r], y[r]
            for j in range(nj):
                yr[j] = (xr[j] - cm[j]) * cs[j] + cb[j]


@kernel(parallel_min=PARALLEL_MIN)
def _grad_partials_kernel(psum, pdot, dy, x, cm, chunk, tile):
    """psum = sum dy, pdot = sum dy*(x - mean) over each (chunk, column), float64."""
    n, nj = x.shape
    ntiles = (nj + tile - 1) // tile
    for task in prange(psum.shape[0] * ntiles):
        k, t = task // ntiles, task % ntiles
        r0, j0 = k * chunk, t * tile
        r1, j1 = min(n, r0 + chunk), min(nj, j0 + tile)
        s = np.zeros(j1 - j0)
        p = np.zeros(j1 - j0)
        m = cm[j0:j1]
        for r in range(r0, r1):
            xr, gr = x[r, j0:j1], dy[r, j0:j1]
            for j in range(j1 - j0):
                g = np.float64(gr[j])
                s[j] += g
                p[j] += g * (np.float64(xr[j]) - m[j])
        psum[k, j0:j1] = s
        pdot[k, j0:j1] = p


@kernel(parallel_min=PARALLEL_MIN)
def _sum_chunks_kernel(csum, cdot, psum, pdot, tile):
    """csum, cdot (J,) <- per column, the chunk partials summed in chunk order."""
    nch, nj = psum.shape
    for t in prange((nj + tile - 1) // tile):
        j0, j1 = t * tile, min(nj, (t + 1) * tile)
        a, b = np.zeros(j1 - j0), np.zeros(j1 - j0)
        for k in range(nch):
            pk, qk = psum[k, j0:j1], pdot[k, j0:j1]
            for j in range(j1 - j0):
                a[j] += pk[j]
                b[j] += qk[j]
        csum[j0:j1] = a
        cdot[j0:j1] = b


@kernel(parallel_min=PARALLEL_MIN)
def _grad_combine_kernel(dgamma, dbeta, c1, c2, c3, csum, cdot, invstd, gamma, nl, count,
                         training, has_gamma):
    """Per channel: dbeta = sum dy, dgamma = invstd * sum dy*(x-mean) (columns summed in
    l order), and the per-column coefficients of dx = c1*dy - c2 - (x - mean)*c3."""
    for c in prange(dgamma.size):
        db, dot = _sum_columns(csum, cdot, c, nl)
        k1, k2, k3 = _grad_coefficients(dgamma, dbeta, c, db, dot, invstd, gamma, count,
                                        training, has_gamma)
        _spread(c1, c2, c3, c, nl, k1, k2, k3)


@kernel(parallel_min=PARALLEL_MIN)
def _grad_input_kernel(dx, dy, x, cm, c1, c2, c3, chunk):
    """dx (N, J) <- dy*c1 - c2 - (x - cm)*c3, in the input dtype."""
    n, nj = x.shape
    for k in prange((n + chunk - 1) // chunk):
        for r in range(k * chunk, min(n, (k + 1) * chunk)):
            xr, gr, dr = x[r], dy[r], dx[r]
            for j in range(nj):
                dr[j] = gr[j] * c1[j] - c2[j] - (xr[j] - cm[j]) * c3[j]


@kernel(parallel=False)
def _expand_kernel(out, v, nl):
    for c in range(v.size):
        for l in range(nl):
            out[c * nl + l] = v[c]


# --------------------------------------------------------------------------- launchers

def _flags(gamma, beta, dtype):
    """Absent gamma/beta become empty arrays plus a flag: one compiled specialization."""
    empty = np.empty(0, dtype)
    return (empty if gamma is None else gamma, empty if beta is None else beta,
            gamma is not None, beta is not None)


def batchnorm_forward_train(y, mean, invstd, running_mean, running_var, x, gamma, beta,
                            eps, momentum):
    """y (N,C,L), mean (C,), invstd (C,) <- x (N,C,L), gamma (C,)|None, beta (C,)|None;
    running_mean/var (C,)|None are updated in place."""
    n, c, nl = x.shape
    x2, y2 = x.reshape(n, c * nl), y.reshape(n, c * nl)
    nch = (n + CHUNK_ROWS - 1) // CHUNK_ROWS
    pmean, pm2 = np.empty((nch, c * nl)), np.empty((nch, c * nl))
    cm, cs, cb = (np.empty(c * nl, x.dtype) for _ in range(3))
    g, b, has_g, has_b = _flags(gamma, beta, x.dtype)
    update = running_mean is not None
    rm = running_mean if update else np.empty(0, x.dtype)
    rv = running_var if update else np.empty(0, x.dtype)
    run(_stats_partials_kernel, x.size, pmean, pm2, x2, CHUNK_ROWS, TILE)
    cmean, cm2 = np.empty(c * nl), np.empty(c * nl)
    run(_merge_chunks_kernel, pmean.size, cmean, cm2, pmean, pm2, n, CHUNK_ROWS, MERGE_TILE)
    run(_stats_combine_kernel, c * nl, mean, invstd, rm, rv, cm, cs, cb, cmean, cm2, g, b,
        float(n), nl, float(eps), float(momentum), update, has_g, has_b)
    run(_normalize_kernel, x.size, y2, x2, cm, cs, cb, CHUNK_ROWS)


def batchnorm_forward_eval(y, mean, invstd, x, running_mean, running_var, gamma, beta, eps):
    """y (N,C,L) normalized with the running statistics; mean <- running_mean,
    invstd <- 1/sqrt(running_var + eps)."""
    n, c, nl = x.shape
    cm, cs, cb = (np.empty(c * nl, x.dtype) for _ in range(3))
    g, b, has_g, has_b = _flags(gamma, beta, x.dtype)
    run(_eval_stats_kernel, c * nl, mean, invstd, cm, cs, cb, running_mean, running_var, g, b,
        nl, float(eps), has_g, has_b)
    run(_normalize_kernel, x.size, y.reshape(n, c * nl), x.reshape(n, c * nl), cm, cs, cb,
        CHUNK_ROWS)


def batchnorm_backward(dx, dgamma, dbeta, dy, x, mean, invstd, gamma, training):
    """dx (N,C,L), dgamma (C,), dbeta (C,) <- dy, x (N,C,L), mean, invstd (C,), gamma|None."""
    n, c, nl = x.shape
    x2, dy2, dx2 = x.reshape(n, c * nl), dy.reshape(n, c * nl), dx.reshape(n, c * nl)
    nch = (n + CHUNK_ROWS - 1) // CHUNK_ROWS
    psum, pdot = np.empty((nch, c * nl)), np.empty((nch, c * nl))
    cm = np.empty(c * nl, x.dtype)
    c1, c2, c3 = (np.empty(c * nl, x.dtype) for _ in range(3))
    g, _, has_g, _ = _flags(gamma, None, x.dtype)
    _expand_kernel(cm, mean, nl)
    run(_grad_partials_kernel, x.size, psum, pdot, dy2, x2, cm, CHUNK_ROWS, TILE)
    csum, cdot = np.empty(c * nl), np.empty(c * nl)
    run(_sum_chunks_kernel, psum.size, csum, cdot, psum, pdot, MERGE_TILE)
    run(_grad_combine_kernel, c * nl, dgamma, dbeta, c1, c2, c3, csum, cdot, invstd, g, nl,
        float(n * nl), bool(training), has_g)
    run(_grad_input_kernel, x.size, dx2, dy2, x2, cm, c1, c2, c3, CHUNK_ROWS)
