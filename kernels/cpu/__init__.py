"""Numba CPU kernels: @njit(parallel=True) loops over flat (or (N, F)) arrays."""
