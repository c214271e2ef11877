"""fusedops._arrays: host, device and simulator arrays told apart in one place.

Real device memory is stood in for by an object exposing only __cuda_array_interface__ (what
CuPy and PyTorch CUDA tensors expose), so the device paths run without a GPU; the simulator's
FakeCUDAArray is built directly (it needs no NUMBA_ENABLE_CUDASIM to exist).
"""
import ast
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from fusedops import _arrays
from fusedops.checks import check_array, check_like, check_no_overlap


class FakeDevice:
    """__cuda_array_interface__ only: a stand-in for a CuPy array or a PyTorch CUDA tensor."""

    def __init__(self, ptr, shape, typestr="<f4", strides=None, readonly=False):
        self.__cuda_array_interface__ = {"data": (ptr, readonly), "shape": shape,
                                         "typestr": typestr, "strides": strides, "version": 3}


def _simulator(a):
    from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray

    return FakeCUDAArray(a)


def test_kinds():
    host = np.zeros(3, np.float32)
    dev = FakeDevice(4096, (3,))
    sim = _simulator(np.zeros(3, np.float32))
    assert [_arrays.is_device_array(a) for a in (host, dev, sim)] == [False, True, True]
    assert [_arrays.is_simulator_array(a) for a in (host, dev, sim)] == [False, False, True]
    assert [_arrays.is_array(a) for a in (host, dev, sim, [1.0], 2.0)] == [True] * 3 + [False] * 2
    assert _arrays.host_data(host) is host and _arrays.host_data(dev) is None
    assert _arrays.host_data(sim) is sim._ary


def test_array_info_of_a_device_array():
    info = _arrays.array_info("x", FakeDevice(4096, (2, 3), "<f8"))
    assert info == (np.dtype(np.float64), (2, 3), True, True, True)
    strided = _arrays.array_info("x", FakeDevice(4096, (2, 3), "<f8", strides=(48, 16)))
    assert not strided.c_contiguous
    assert _arrays.array_info("x", FakeDevice(4096, (2, 3), "<f8", strides=(24, 8))).c_contiguous
    assert not _arrays.array_info("x", FakeDevice(4096, (3,), readonly=True)).writable
    with pytest.raises(TypeError, match="x must be a numpy.ndarray or a CUDA array; got list"):
        _arrays.array_info("x", [1.0])


def test_checks_read_device_arrays_without_touching_them():
    a = FakeDevice(4096, (4,))
    check_array("a", a, writable=True)
    with pytest.raises(ValueError, match="a is read-only"):
        check_array("a", FakeDevice(4096, (4,), readonly=True), writable=True)
    with pytest.raises(ValueError, match="b and a must both be host arrays or both GPU arrays"):
        check_like("b", np.zeros(4, np.float32), "a", a)


@pytest.mark.parametrize("start_b, overlap", [(4096 + 12, True), (4096 + 16, False), (4096 - 4, True),
                                              (4096 - 16, False)])
def test_overlaps_of_device_spans(start_b, overlap):
    a, b = FakeDevice(4096, (4,)), FakeDevice(start_b, (4,))  # 16 bytes each
    assert _arrays.overlaps(a, b) is overlap and _arrays.overlaps(b, a) is overlap
    if overlap:
        with pytest.raises(ValueError, match="out and x share memory"):
            check_no_overlap({"out": a}, {"x": b})


def test_overlaps_host_simulator_and_mixed():
    base = np.zeros(8, np.float32)
    sim = _simulator(base[2:6])
    assert _arrays.overlaps(sim, base[5:]) and not _arrays.overlaps(sim, base[6:])
    assert not _arrays.overlaps(base, FakeDevice(base.ctypes.data, (8,)))  # different memories
    assert not _arrays.overlaps(FakeDevice(4096, (0,)), FakeDevice(4096, (4,)))  # empty


def test_host_array_and_host_copy():
    host = np.arange(3.0)
    sim = _simulator(np.arange(3.0))
    assert _arrays.host_array(host) is host
    assert _arrays.host_copy(host) is not host and np.array_equal(_arrays.host_copy(host), host)
    for got in (_arrays.host_array(sim), _arrays.host_copy(sim)):
        assert isinstance(got, np.ndarray) and got.base is not sim._ary and got is not sim._ary
        np.testing.assert_array_equal(got, [0.0, 1.0, 2.0])
    assert _arrays.host_array([1, 2]).tolist() == [1, 2]


def test_simulator_zero_fill_and_copy_into():
    sim = _simulator(np.arange(4.0))
    _arrays.copy_into(sim, np.full((2, 2), 7.0))
    np.testing.assert_array_equal(sim._ary, [7.0] * 4)
    _arrays.zero_fill(sim)
    assert not sim._ary.any()


# --------------------------------------------------------------------------- one place

KIND_ATTRIBUTES = {"copy_to_host", "__cuda_array_interface__", "_ary", "get", "zero_"}


def _kind_tests(tree):
    """Lines where a module tests an array's kind itself: hasattr / getattr on a kind attribute,
    the simulator's class name, or a read of the simulator's wrapped array."""
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id in ("hasattr", "getattr") and len(node.args) >= 2
                and isinstance(node.args[1], ast.Constant) and node.args[1].value in KIND_ATTRIBUTES):
            yield node.lineno
        elif isinstance(node, ast.Constant) and node.value == "FakeCUDAArray":
            yield node.lineno
        elif isinstance(node, ast.Attribute) and node.attr == "_ary":
            yield node.lineno


def test_array_kinds_are_told_apart_only_in_arrays_module():
    root = Path(importlib.util.find_spec("fusedops").submodule_search_locations[0])
    found = {}
    for path in sorted(root.rglob("*.py")):
        if path.name == "_arrays.py" and path.parent == root:
            continue
        lines = sorted(set(_kind_tests(ast.parse(path.read_text()))))
        if lines:
            found[str(path.relative_to(root))] = lines
    assert not found, f"array-kind tests outside fusedops/_arrays.py (file: lines): {found}"


def test_the_guard_sees_each_kind_test():
    src = ("hasattr(a, 'copy_to_host')\ngetattr(a, '__cuda_array_interface__', None)\n"
           "type(a).__name__ == 'FakeCUDAArray'\nh = a._ary\nhasattr(a, 'shape')\n")
    assert sorted(set(_kind_tests(ast.parse(src)))) == [1, 2, 3, 4]
