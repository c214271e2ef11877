"""Every CUDA kernel specialization (tools/ptxcheck.py's list: float32 and float64, every optional
buffer None or an array) compiles to PTX for sm_80 (A100) and sm_90 (H100/H200), with no GPU:
the simulator runs kernels as Python and never types or lowers them as the CUDA target does.
NVVM and NVRTC come from the test extra (cuda-toolkit[nvrtc,nvvm] wheels); without them the
test skips with the reason, and it skips under the simulator."""
import sys
from pathlib import Path

import pytest

from fusedops import backends

pytestmark = pytest.mark.skipif(backends.cuda_simulator(), reason="the simulator has no compiler")
CCS = ((8, 0), (9, 0))
# kernels whose float32 specializations take no float64 argument: a .f64 instruction there is
# a Numba type promotion (a Python float constant, an int64 / float32 mix) costing 32x on a GPU
PURE = ("sgd.", "rmsprop.", "adam.", "adagrad.", "nonfinite.", "dropout.fwd.", "dropout.bwd.",
        "dropout.scale.")


@pytest.fixture(scope="module")
def ptx():
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
    try:
        import ptxcheck
    finally:
        sys.path.pop(0)
    try:
        from numba import cuda, types

        cuda.compile_ptx(lambda a: None, (types.float32[::1],), cc=CCS[0])
    except Exception as exc:  # no NVVM / NVRTC / numba-cuda here
        pytest.skip(f"no CUDA compiler here: {type(exc).__name__}: {str(exc)[:160]}")
    return ptxcheck.compile_all(CCS)


def test_every_kernel_compiles_for_sm80_and_sm90(ptx):
    from fusedops.kernels.cuda import batchnorm, dropout, optim, philox, stream

    kernels = {name for m in (batchnorm, dropout, optim, philox, stream) for name in dir(m)
               if name.endswith("_kernel") and hasattr(getattr(m, name), "py_func")}
    compiled = {name.split(".")[0] for name in ptx}
    assert len(ptx) >= 48 and {"sgd", "adam", "rmsprop", "adagrad", "dropout", "bn"} <= compiled
    for name, by_cc in ptx.items():
        for (major, minor), text in by_cc.items():
            assert f".target sm_{major}{minor}" in text and ".entry" in text, (name, major)
    # the list in ptxcheck names every kernel the CUDA backend defines
    named = {k.py_func.__name__ for k in _kernel_objects()}
    assert kernels <= named, kernels - named


def _kernel_objects():
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
    try:
        import ptxcheck
    finally:
        sys.path.pop(0)
    return [k for _, k, _ in ptxcheck._signatures()]


def test_float32_kernels_do_no_float64_arithmetic(ptx):
    for name, by_cc in ptx.items():
        if name.startswith(PURE) and ".float32" in name:
            for cc, text in by_cc.items():
                assert ".f64" not in text, (name, cc)
