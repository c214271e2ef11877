"""fusedops.kernels: the Numba kernels (cpu/ with parallel loops, cuda/ with @cuda.jit).

Kernels import nothing from the fusedops API. Each family lives in a file of the same name in
both subpackages (stream, optim, dropout, batchnorm, batchnorm_sync, philox) and exposes
launchers with the argument order outputs, inputs, hyperparameters. Callers validate first.
What the two backends share, each element update and host-side loop constant, is written once
in common/ (a file of the same name again) and compiled by each backend; cpu/jit.py keys the
CPU kernels' disk cache on those sources, so an edited body is recompiled, never loaded stale.
"""
