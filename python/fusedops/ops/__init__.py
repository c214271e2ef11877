"""Functional ops: validate once, then dispatch to a backend (numpy, numba, c, cuda).

One module per op family; everything public is re-exported here, so
``fusedops.ops.adam_step`` and ``fusedops.ops.stream_copy`` are the names to use.
"""
from .stream import *  # noqa: F401,F403
from .optim import *  # noqa: F401,F403
from .dropout import *  # noqa: F401,F403
from .batchnorm import *  # noqa: F401,F403
from . import lowbit  # noqa: F401  (fusedops.ops.lowbit.adam_step & co.: low-bit state)
