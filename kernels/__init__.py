"""fusedops.kernels: the Numba kernels (cpu/ with parallel loops, cuda/ with @cuda.jit).

Kernels import nothing from the fusedops API. Each family lives in a file of the same name in
both subpackages (stream, optim, dropout, batchnorm, philox) and exposes launchers with the
argument order outputs, inputs, hyperparameters. Callers validate first.
"""
