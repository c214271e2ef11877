"""Bandwidth probe ops: STREAM copy (b = a) and triad (a = b + s*c)."""
from __future__ import annotations

from .._dispatch import STREAM_COPY, STREAM_TRIAD, launch
from ..backends import resolve_backend
from ..checks import check_array, check_like, check_no_overlap, check_real

__all__ = ["stream_copy", "stream_triad"]


def stream_copy(dst, src, *, backend=None):
    """dst <- src, elementwise. Same shape and float dtype; must not overlap."""
    be = resolve_backend(backend, dst, src)
    check_array("dst", dst, writable=True)
    check_like("src", src, "dst", dst)
    check_no_overlap({"dst": dst}, {"src": src})
    launch(be, STREAM_COPY, (dst, src))
    return dst


def stream_triad(a, b, c, *, scalar, backend=None):
    """a <- b + scalar*c (STREAM triad). Returns a."""
    be = resolve_backend(backend, a, b, c)
    check_array("a", a, writable=True)
    check_like("b", b, "a", a)
    check_like("c", c, "a", a)
    scalar = check_real("scalar", scalar)
    check_no_overlap({"a": a}, {"b": b, "c": c})
    launch(be, STREAM_TRIAD, (a, b, c), scalars=(scalar,))
    return a

