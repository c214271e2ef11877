"""Batch normalization's merges and coefficients (Ioffe & Szegedy 2015), once.

The reductions differ by backend (CPU: tiles of columns per task; CUDA: a thread per column and
a block per 32 channels), but they merge partial statistics with the same formula, finish them
the same way and expand the same per-channel coefficients to the L columns of a channel
(column j = c*L + l). Sums are float64: explicit float() casts keep them so under the CUDA
simulator too, which follows NumPy's promotion (a Python float times a float32 stays float32
there); compiled, float() is the promotion Numba would apply anyway.

Merging (count, mean, M2) partials follows Chan, Golub & LeVeque (1979):
  f = nb/(na + nb),  w = na*f,  d = mb - ma,  mean = ma + d*f,  M2 = M2a + M2b + d*d*w.
The two backends add the three M2 terms in a different order (the CPU adds M2b + d*d*w to its
running column sum, CUDA adds M2a + M2b first); each keeps its own order, so their bits are
unchanged by sharing the formula.
"""
import math
from collections import namedtuple

Bodies = namedtuple("Bodies", "chan_weights chan_step finish_stats spread coefficients "
                              "eval_stats grad_coefficients")


def build(jit) -> Bodies:
    """The batchnorm bodies compiled by `jit` (see kernels/common/__init__.py)."""

    @jit
    def chan_weights(na, nb):
        """(f, w) of merging a partial over nb values into one over na (na + nb > 0)."""
        f = nb / (na + nb)
        return f, na * f

    @jit
    def chan_step(ma, mb, f, w):
        """(merged mean, the d*d*w term of the merged M2)."""
        d = mb - ma
        return ma + d * f, d * d * w

    @jit
    def finish_stats(mean, invstd, rm, rv, c, na, ma, m2a, eps, momentum, update):
        """Channel c's mean and invstd from its merged (na, ma, m2a); the running statistics
        (unbiased variance) when `update`. Returns invstd in float64."""
        var = m2a / na
        inv = 1.0 / math.sqrt(var + eps)
        mean[c] = ma
        invstd[c] = inv
        if update:
            rm[c] = (1.0 - momentum) * float(rm[c]) + momentum * ma
            rv[c] = (1.0 - momentum) * float(rv[c]) + momentum * var * (na / (na - 1.0))
        return inv

    @jit
    def spread(a, b, d, c, nl, x, y, z):
        """a, b, d[c*L + l] = x, y, z for the L columns of channel c."""
        for l in range(nl):
            a[c * nl + l] = x
            b[c * nl + l] = y
            d[c * nl + l] = z

    @jit
    def coefficients(cm, cs, cb, c, nl, m, inv, gamma, beta, has_gamma, has_beta):
        """Channel c's y = (x - cm)*cs + cb: cm = mean, cs = gamma*invstd, cb = beta."""
        g = float(gamma[c]) * inv if has_gamma else inv
        b = float(beta[c]) if has_beta else 0.0
        spread(cm, cs, cb, c, nl, m, g, b)

    @jit
    def eval_stats(mean, invstd, cm, cs, cb, rm, rv, gamma, beta, c, nl, eps, has_gamma,
                   has_beta):
        """Eval mode, channel c: mean <- rm, invstd <- 1/sqrt(rv + eps), the coefficients."""
        inv = 1.0 / math.sqrt(float(rv[c]) + eps)
        mean[c] = rm[c]
        invstd[c] = inv
        coefficients(cm, cs, cb, c, nl, mean[c], inv, gamma, beta, has_gamma, has_beta)

    @jit
    def grad_coefficients(dgamma, dbeta, c, db, dot, invstd, gamma, count, training, has_gamma):
        """Channel c's dbeta = sum dy and dgamma = invstd * sum dy*(x - mean); returns the
        coefficients (k1, k2, k3) of dx = k1*dy - k2 - (x - mean)*k3 (k2 = k3 = 0 in eval)."""
        inv = float(invstd[c])
        dg = dot * inv
        dgamma[c] = dg
        dbeta[c] = db
        k1 = float(gamma[c]) * inv if has_gamma else inv
        k2 = k1 * db / count if training else 0.0
        k3 = k1 * inv * dg / count if training else 0.0
        return k1, k2, k3

    return Bodies(chan_weights, chan_step, finish_stats, spread, coefficients, eval_stats,
                  grad_coefficients)
