"""Optimizer steps for the Numba CPU backend: one parallel, vectorized pass per step.

Same contract as fusedops.reference.optim (outputs, grad, hyperparameters); the launchers derive
the loop constants (1 - beta, lr/c1, 1/c2, where eps goes, Nesterov's coefficients) once, in
float64, and cast them to the arrays' dtype so no float64 promotion reaches a float32 loop.

Why the options:
- error_model="numpy": Python's error model checks every division for zero, a branch that keeps
  LLVM from vectorizing the loop.
- fastmath without "nnan"/"ninf": contraction, reciprocal and reassociation are fine for an
  update whose reference tolerance is a few ulps, but NaN and Inf must keep their IEEE meaning
  (AMSGrad's max, and a NaN gradient must poison the parameter, not vanish).
- Optional buffers (momentum, centered average, AMSGrad's max) are None or an array: Numba
  compiles one specialization per combination and prunes the `is None` branches, so each
  inner loop is branch-free. Boolean options become arithmetic (eps_in/eps_out, cg/ch).
"""
import math

from numba import njit, prange

_FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}
_JIT = dict(parallel=True, cache=True, fastmath=_FASTMATH, error_model="numpy")


@njit(inline="always")
def _l1_term(w, l1, zero):
    """l1 * sign(w) as two selects (sign(0) = 0), in w's dtype."""
    t = l1 if w > zero else zero
    return -l1 if w < zero else t


@njit(**_JIT)
def _sgd_kernel(w, h, g, lr, beta, cg, ch, l2, l1, zero):
    for i in prange(w.size):
        wi = w[i]
        gi = g[i] + l2 * wi + _l1_term(wi, l1, zero)
        if h is None:
            w[i] = wi - lr * gi
        else:
            hi = beta * h[i] + gi
            h[i] = hi
            w[i] = wi - lr * (cg * gi + ch * hi)


@njit(**_JIT)
def _adagrad_kernel(w, s, g, lr, eps_in, eps_out, l2, l1, zero):
    for i in prange(w.size):
        wi = w[i]
        gi = g[i] + l2 * wi + _l1_term(wi, l1, zero)
        si = s[i] + gi * gi
        s[i] = si
        w[i] = wi - lr * (gi / (math.sqrt(si + eps_in) + eps_out))


@njit(**_JIT)
def _rmsprop_kernel(w, s, h, ga, g, lr, alpha, oma, eps_in, eps_out, beta, l2, l1, zero):
    for i in prange(w.size):
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


@njit(**_JIT)
def _adam_kernel(w, m, v, vmax, g, step_size, b1, omb1, b2, omb2, inv_c2, eps_in, eps_out,
                 decay, l2, l1, zero):
    for i in prange(w.size):
        wi = w[i]
        gi = g[i] + l2 * wi + _l1_term(wi, l1, zero)
        mi = b1 * m[i] + omb1 * gi
        vi = b2 * v[i] + omb2 * (gi * gi)
        m[i] = mi
        v[i] = vi
        if vmax is not None:
            vi = vmax[i] if vmax[i] > vi else vi
            vmax[i] = vi
        w[i] = wi * decay - step_size * (mi / (math.sqrt(vi * inv_c2 + eps_in) + eps_out))


@njit(parallel=True, cache=True)
def _nonfinite_kernel(g):
    bad = 0
    for i in prange(g.size):
        bad += 0 if math.isfinite(g[i]) else 1
    return bad


def _eps_split(eps, eps_inside_sqrt):
    """(eps inside the square root, eps added after it): one of them is zero."""
    return (eps, 0.0) if eps_inside_sqrt else (0.0, eps)


def sgd_update(w, h, g, lr, momentum, nesterov, l2, l1):
    """w (n,), h (n,) or None, g (n,): one SGD step (see reference.sgd_update)."""
    t = w.dtype.type
    cg, ch = (1.0, momentum) if nesterov else (0.0, 1.0)
    _sgd_kernel(w, h, g, t(lr), t(momentum), t(cg), t(ch), t(l2), t(l1), t(0))


def adagrad_update(w, s, g, lr, eps, eps_inside_sqrt, l2, l1):
    """w (n,), s (n,), g (n,): one AdaGrad step."""
    t = w.dtype.type
    eps_in, eps_out = _eps_split(eps, eps_inside_sqrt)
    _adagrad_kernel(w, s, g, t(lr), t(eps_in), t(eps_out), t(l2), t(l1), t(0))


def rmsprop_update(w, s, h, ga, g, lr, alpha, eps, eps_inside_sqrt, momentum, l2, l1):
    """w, s (n,); h, ga (n,) or None; g (n,): one RMSprop step."""
    t = w.dtype.type
    eps_in, eps_out = _eps_split(eps, eps_inside_sqrt)
    _rmsprop_kernel(w, s, h, ga, g, t(lr), t(alpha), t(1.0 - alpha), t(eps_in), t(eps_out),
                    t(momentum), t(l2), t(l1), t(0))


def adam_update(w, m, v, vmax, g, lr, beta1, beta2, eps, eps_inside_sqrt, decay, l2, l1, c1, c2):
    """w, m, v (n,); vmax (n,) or None; g (n,): one Adam / AdamW / AMSGrad step."""
    t = w.dtype.type
    eps_in, eps_out = _eps_split(eps, eps_inside_sqrt)
    _adam_kernel(w, m, v, vmax, g, t(lr / c1), t(beta1), t(1.0 - beta1), t(beta2), t(1.0 - beta2),
                 t(1.0 / c2), t(eps_in), t(eps_out), t(decay), t(l2), t(l1), t(0))


def nonfinite_count(count, g):
    """count (1,) int64 += the number of NaN/Inf entries of g (n,)."""
    count[0] += _nonfinite_kernel(g)
