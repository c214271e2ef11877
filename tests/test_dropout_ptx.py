"""The CUDA dropout kernels compile for a real GPU (sm_90 PTX), with no GPU needed.

The simulator runs kernels as Python and never type-checks them the way the CUDA compiler
does; this test does. It skips when NVVM / NVRTC are not installed (pip install
nvidia-cuda-nvcc-cu12 nvidia-cuda-nvrtc-cu12 to run it) and under the simulator.
"""
import pytest

from fusedops import backends

pytestmark = pytest.mark.skipif(backends.cuda_simulator(), reason="the simulator has no compiler")


@pytest.mark.parametrize("ft", ["float32", "float64"])
def test_kernels_compile(compile_ptx, ft):
    from numba import types

    from fusedops.kernels.cuda import dropout as D
    from fusedops.kernels.cuda import philox as P

    f = getattr(types, ft)
    a, m, u64, i64 = f[::1], types.uint8[::1], types.uint64, types.int64
    words, start = (u64, u64, u64, u64, u64, i64), (i64, i64)
    ptx = {
        "forward": compile_ptx(D._forward_kernel, (a, m, a, *words, f, *start)),
        "forward_nomask": compile_ptx(D._forward_kernel, (a, types.none, a, *words, f, *start)),
        "mask": compile_ptx(D._mask_kernel, (m, i64, *words, *start)),
        "backward": compile_ptx(D._backward_kernel, (a, a, m, f)),
        "scale": compile_ptx(D._scale_kernel, (a, a, f)),
        "philox": compile_ptx(P._philox_kernel, (types.uint32[::1],) * 3),
    }
    for name, text in ptx.items():
        assert ".entry" in text, name
    # the Philox multipliers appear as immediates: the rounds were unrolled into the kernel
    assert str(0xD2511F53) in ptx["mask"] and str(0xCD9E8D57) in ptx["mask"]
    # no float64 arithmetic sneaks into the float32 kernels (a sign of a Numba type promotion)
    if ft == "float32":
        assert ".f64" not in ptx["forward"] and ".f64" not in ptx["backward"]
    # with mask=None the mask store is pruned at compile time: one st.global.u8 fewer
    assert ptx["forward_nomask"].count("st.global.u8") < ptx["forward"].count("st.global.u8")
