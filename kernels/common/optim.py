"""Optimizer element updates (DESIGN.md "Optimizer steps"; fusedops.reference.optim), once.

Every body reads and returns scalars already in the arrays' dtype: the launchers cast each loop
constant with the helpers below (a Python float in a float32 loop would promote the arithmetic
to float64). Regularization enters the gradient: g' = g + l2*w + l1*sign(w). The `*_at(i, ...)`
bodies load element i, update it and store it, with optional buffers None or an array (pruned
at compile time); Adam is split into moments and parameter update because the CUDA kernel
interleaves two elements between them (its loads before any store).
"""
import math
from collections import namedtuple

Bodies = namedtuple("Bodies", "l1_term sgd_at adagrad_at rmsprop_at adam_moments amsgrad_max "
                              "adam_param adam_at")


def build(jit) -> Bodies:
    """The optimizer bodies compiled by `jit` (see kernels/common/__init__.py)."""

    @jit
    def l1_term(w, l1, zero):
        """l1 * sign(w) as two selects (sign(0) = 0), in w's dtype."""
        t = l1 if w > zero else zero
        return -l1 if w < zero else t

    @jit
    def sgd_at(i, w, h, g, lr, beta, nesterov, l2, l1, zero):
        """h = beta*h + g'; w -= lr*h (heavy ball) or lr*(g' + beta*h) (Nesterov); no momentum
        buffer: w -= lr*g'. The two momentum forms are a select on a loop constant, not one
        blend 0*g' + 1*h: that is NaN for g' = inf where the reference's w -= lr*h is -inf."""
        wi = w[i]
        gi = g[i] + l2 * wi + l1_term(wi, l1, zero)
        if h is None:
            w[i] = wi - lr * gi
        else:
            hi = beta * h[i] + gi
            h[i] = hi
            w[i] = wi - lr * ((gi + beta * hi) if nesterov else hi)

    @jit
    def adagrad_at(i, w, s, g, lr, eps_in, eps_out, l2, l1, zero):
        """s += g'^2; w -= lr*g'/(sqrt(s + eps_in) + eps_out)."""
        wi = w[i]
        gi = g[i] + l2 * wi + l1_term(wi, l1, zero)
        si = s[i] + gi * gi
        s[i] = si
        w[i] = wi - lr * (gi / (math.sqrt(si + eps_in) + eps_out))

    @jit
    def rmsprop_at(i, w, s, h, ga, g, lr, alpha, oma, eps_in, eps_out, beta, l2, l1, zero):
        """s = alpha*s + (1-alpha)*g'^2 (centered: minus ga^2, ga = alpha*ga + (1-alpha)*g');
        r = g'/(sqrt(s + eps_in) + eps_out); w -= lr*r, or h = beta*h + r, w -= lr*h."""
        wi = w[i]
        gi = g[i] + l2 * wi + l1_term(wi, l1, zero)
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

    @jit
    def adam_moments(wi, gi, mi, vi, b1, omb1, b2, omb2, l2, l1, zero):
        """(m, v) = (b1*m + (1-b1)*g', b2*v + (1-b2)*g'^2)."""
        gi = gi + l2 * wi + l1_term(wi, l1, zero)
        return b1 * mi + omb1 * gi, b2 * vi + omb2 * (gi * gi)

    @jit
    def amsgrad_max(xi, vi):
        """max(vmax, v) as a select that keeps a NaN in v (AMSGrad)."""
        return xi if xi > vi else vi

    @jit
    def adam_param(wi, mi, vi, step_size, inv_c2, eps_in, eps_out, decay):
        """w*decay - (lr/c1)*m/(sqrt(v/c2 + eps_in) + eps_out); decay = 1 - lr*wd for AdamW."""
        return wi * decay - step_size * (mi / (math.sqrt(vi * inv_c2 + eps_in) + eps_out))

    @jit
    def adam_at(i, w, m, v, vmax, g, step_size, b1, omb1, b2, omb2, inv_c2, eps_in, eps_out,
                decay, l2, l1, zero):
        """One Adam / AdamW / AMSGrad element (vmax None or an array)."""
        wi = w[i]
        mi, vi = adam_moments(wi, g[i], m[i], v[i], b1, omb1, b2, omb2, l2, l1, zero)
        m[i] = mi
        v[i] = vi
        if vmax is not None:
            vi = amsgrad_max(vmax[i], vi)
            vmax[i] = vi
        w[i] = adam_param(wi, mi, vi, step_size, inv_c2, eps_in, eps_out, decay)

    return Bodies(l1_term, sgd_at, adagrad_at, rmsprop_at, adam_moments, amsgrad_max,
                  adam_param, adam_at)


# --------------------------------------------------------------------------- loop constants
# Derived once per step on the host, in float64, then cast by t (the arrays' scalar type).

def _eps_split(eps, eps_inside_sqrt):
    """(eps inside the square root, eps added after it): one of them is zero."""
    return (eps, 0.0) if eps_inside_sqrt else (0.0, eps)


def sgd_constants(t, lr, momentum, nesterov, l2, l1):
    """(lr, beta, nesterov, l2, l1, zero) of sgd_at (nesterov a bool)."""
    return t(lr), t(momentum), bool(nesterov), t(l2), t(l1), t(0)


def adagrad_constants(t, lr, eps, eps_inside_sqrt, l2, l1):
    """(lr, eps_in, eps_out, l2, l1, zero) of adagrad_at."""
    eps_in, eps_out = _eps_split(eps, eps_inside_sqrt)
    return t(lr), t(eps_in), t(eps_out), t(l2), t(l1), t(0)


def rmsprop_constants(t, lr, alpha, eps, eps_inside_sqrt, momentum, l2, l1):
    """(lr, alpha, 1 - alpha, eps_in, eps_out, beta, l2, l1, zero) of rmsprop_at."""
    eps_in, eps_out = _eps_split(eps, eps_inside_sqrt)
    return (t(lr), t(alpha), t(1.0 - alpha), t(eps_in), t(eps_out), t(momentum), t(l2), t(l1),
            t(0))


def adam_constants(t, lr, beta1, beta2, eps, eps_inside_sqrt, decay, l2, l1, c1, c2):
    """(lr/c1, b1, 1 - b1, b2, 1 - b2, 1/c2, eps_in, eps_out, decay, l2, l1, zero) of adam_at."""
    eps_in, eps_out = _eps_split(eps, eps_inside_sqrt)
    return (t(lr / c1), t(beta1), t(1.0 - beta1), t(beta2), t(1.0 - beta2), t(1.0 / c2),
            t(eps_in), t(eps_out), t(decay), t(l2), t(l1), t(0))
