"""Numba CUDA kernels: @cuda.jit grid-stride loops; launchers take threads_per_block.

Importing a module here imports numba.cuda; set NUMBA_ENABLE_CUDASIM=1 before the import to run
on the CPU simulator.
"""
