"""STREAM copy and triad (McCalpin 1995)."""
import numpy as np

__all__ = ["stream_copy", "stream_triad"]


def stream_copy(dst, src):
    """dst <- src."""
    np.copyto(dst, src)


def stream_triad(a, b, c, scalar):
    """a <- b + scalar*c, rounded as two operations (no fused multiply-add)."""
    np.multiply(c, a.dtype.type(scalar), out=a)
    np.add(b, a, out=a)
