"""broadcast_parameters, and a broadcast of a flat dict of numbers and arrays (checkpoints)."""
from __future__ import annotations

import numpy as np

from .._arrays import array_info
from ..checks import check_int
from ._comm import Staged, agreed, resolve_comm
from ._layout import runs

__all__ = ["broadcast_parameters", "bcast_tree"]

BCAST_BUCKET = 64 << 20  # bytes per Bcast: MPI's int counts and its staging stay small


def broadcast_parameters(arrays, root: int = 0, comm=None) -> None:
    """Collective: overwrite `arrays` (host or GPU arrays, or objects with `.data`) with the
    root's values, in place, so every rank starts from the same parameters. Arrays laid end to
    end in one buffer (a model's flat parameters) go in one Bcast per 64 MiB. Every rank must
    pass arrays of the same shapes and dtypes: checked first, and a mismatch raises on every
    rank."""
    comm = resolve_comm(comm)
    root = check_int("root", root, lo=0, hi=comm.Get_size() - 1)
    arrays = [getattr(a, "data", a) if not isinstance(a, np.ndarray) and hasattr(a, "grad") else a
              for a in arrays]
    with agreed(comm):
        infos = [array_info(f"arrays[{i}]", a) for i, a in enumerate(arrays)]
        layout = [(tuple(i.shape), i.dtype.str) for i in infos]
        flats = [flat for _, _, flat in runs(arrays, "arrays")]
    roots = comm.bcast(layout if comm.Get_rank() == root else None, root=root)
    with agreed(comm):
        if layout != roots:
            raise ValueError(f"arrays differ from rank {root}'s: shapes and dtypes {layout} "
                             f"against {roots}")
    for flat in flats:
        st = Staged(flat)
        step = max(1, BCAST_BUCKET // st.buf.dtype.itemsize)
        for lo in range(0, st.buf.shape[0], step):
            comm.Bcast(st.buf[lo:lo + step], root=root)
        st.finish()


def bcast_tree(d, comm, root: int = 0):
    """Collective: the root's flat dict of numbers, strings and host arrays on every rank.
    Keys and scalars travel pickled (small); each array's bytes by one Bcast."""
    is_root = comm.Get_rank() == root
    meta = None
    if is_root:
        meta = {k: ("array", np.asarray(v).shape, np.asarray(v).dtype.str)
                if isinstance(v, np.ndarray) else ("value", v) for k, v in d.items()}
    meta = comm.bcast(meta, root=root)
    out = {}
    for k, m in meta.items():
        if m[0] == "value":
            out[k] = m[1]
            continue
        buf = np.ascontiguousarray(d[k]) if is_root else np.empty(m[1], np.dtype(m[2]))
        if buf.size:
            comm.Bcast(buf.reshape(-1), root=root)
        out[k] = buf
    return out
