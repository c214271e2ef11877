"""What the two Numba backends share: each formula written once.

A module here has the same name as the family it serves in cpu/ and cuda/. It holds
- `build(jit)`: the element updates as plain Python, compiled by the backend's decorator:
  numba.njit(inline="always") inside the CPU prange loops, cuda.jit(device=True,
  inline="always") inside the grid-stride kernels (or `lambda f: f` for plain Python).
  Inlined at Numba IR level, a body is compiled as if written in the kernel: the kernel's
  fastmath flags apply to it, and a test such as `h is None` on an optional buffer is pruned
  at compile time, so each specialization's loop stays branch-free;
- host helpers of the launchers (the loop constants, cast to the arrays' dtype).

The kernels' loops (prange, grid-stride, CUDA's shared-memory tiles) stay in cpu/ and cuda/.
Nothing here imports numba: it is the backends' choice how to compile it. The CPU kernels'
disk cache is keyed on these files too (cpu/jit.py), so an edit here cannot leave a stale
cached kernel.
"""
