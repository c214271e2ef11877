"""The CUDA low-bit kernels compile for a real GPU (sm_90 PTX, no GPU needed) with the
arithmetic that keeps them equal to the reference: no fused multiply-add (products are
mul.rn.f32, which ptxas never contracts), IEEE division and square root, no float64.
Skips without NVVM / NVRTC (pip install nvidia-cuda-nvcc-cu12 nvidia-cuda-nvrtc-cu12) and
under the simulator, which has no compiler."""
import re

import pytest

from fusedops import backends

pytestmark = pytest.mark.skipif(backends.cuda_simulator(), reason="the simulator has no compiler")


def signatures():
    from numba import types as T

    from fusedops.kernels.cuda import lowbit as K

    f, a, u8, u16, none = T.float32, T.float32[::1], T.uint8[::1], T.uint16[::1], T.none
    reg, rng = T.UniTuple(T.float32, 2), T.uint64[::1]
    yield "adam.q8", K._adam_kernel, (a, none, none, none, none, none, u8, a, none, none, u8, a,
                                      a, none, none, T.int64, *(f,) * 9, none, none)
    yield "adam.bf16.master.q8.reg.sr", K._adam_kernel, (
        none, u16, none, a, none, none, u8, a, none, none, u8, a, none, u16, none, T.int64,
        *(f,) * 9, reg, rng)
    yield "sgd.f16.bf16state", K._sgd_kernel, (none, none, u16, none, none, u16, none, none,
                                               none, none, u16, T.int64, *(f,) * 4, reg, rng)
    yield "rmsprop.q8.momentum", K._rmsprop_kernel, (
        a, none, none, none, none, none, u8, a, none, none, u8, a, none, none, none, none, a,
        none, none, T.int64, *(f,) * 6, reg, none)
    yield "quantize", K._quantize_kernel, (u8, a, a, T.int64, T.boolean)


def test_kernels_compile_without_fma_or_float64(compile_ptx):
    for name, kernel, sig in signatures():
        ptx = compile_ptx(kernel, sig)
        assert ".entry" in ptx, name
        ops = set(re.findall(r"^\s*([a-z]+(?:\.[a-z0-9]+)*)", ptx, flags=re.M))
        assert not any(op.startswith("fma") for op in ops), name
        assert not any(".f64" in op for op in ops), name
        assert not any(op.startswith(("sqrt.approx", "div.approx", "div.full")) for op in ops), name
        if name != "quantize":
            assert "mul.rn.f32" in ops, name
        if name.startswith(("adam", "rmsprop")):
            assert "div.rn.f32" in ops and "sqrt.rn.f32" in ops, name
        if ".q8" in name:
            assert "bar.sync" in ops, name  # the block max of the 8-bit slots
