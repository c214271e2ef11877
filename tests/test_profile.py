"""The profiler's parts: timing (warm-up outside the timed region, medians), bytes per element
against DESIGN.md, the crossover rule, and the op registry's wiring on every backend."""
import dataclasses

import numpy as np
import pytest
from conftest import SIM

from fusedops import backends
from fusedops.apps import profile
from fusedops.apps.profile_ops import OPS, host_arrays

CPU = [b for b in ("numpy", "numba", "c") if backends.backend_unavailable_reason(b) is None]


class FakeClock:
    """perf_counter that only moves when the timed function says so."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_warm_up_is_outside_the_timed_region(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(profile.time, "perf_counter", clock)
    costs = iter([5.0] + [1e-3] * 100_000)  # the first call compiles: 5 s, then 1 ms per call

    def fn():
        clock.now += next(costs)

    t = profile.time_call(fn, lambda: None, repeat=5, min_sample_s=0.01)
    assert t["median_s"] == pytest.approx(1e-3)
    assert t["max_s"] == pytest.approx(1e-3)  # the 5 s call is in no sample
    assert t["calls_per_sample"] == 10  # back to back until 10 ms have passed
    assert len(t["samples_s"]) == 5 and t["spread"] == pytest.approx(0.0, abs=1e-9)


def test_median_and_spread_of_uneven_samples(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(profile.time, "perf_counter", clock)
    # warm-up 1 call, then 5 samples of one call each: 1, 9, 2, 3, 4 ms
    costs = iter([0.1, 1e-3, 9e-3, 2e-3, 3e-3, 4e-3])

    def fn():
        clock.now += next(costs)

    t = profile.time_call(fn, lambda: None, repeat=5, min_sample_s=1e-6)
    assert t["median_s"] == pytest.approx(3e-3)
    assert t["min_s"] == pytest.approx(1e-3) and t["max_s"] == pytest.approx(9e-3)
    assert t["q1_s"] == pytest.approx(2e-3) and t["q3_s"] == pytest.approx(4e-3)
    assert t["spread"] == pytest.approx(2e-3 / 3e-3)


def test_backends_are_sampled_round_robin(monkeypatch):
    """One sample of each contender in turn, so a burst of load hits them alike; one that
    raises is dropped and reported while the others go on."""
    clock = FakeClock()
    monkeypatch.setattr(profile.time, "perf_counter", clock)
    order = []

    def make(name, cost, fail_at=None):
        def fn():
            order.append(name)
            if fail_at is not None and order.count(name) == fail_at:
                raise RuntimeError("no such kernel")
            clock.now += cost
        return fn, lambda: None

    errors = {}
    t = profile.time_interleaved({"a": make("a", 1e-3), "b": make("b", 2e-3),
                                  "c": make("c", 1e-3, fail_at=3)},
                                 repeat=3, min_sample_s=1e-6, errors=errors)
    assert order == ["a", "b", "c"] * 3 + ["a", "b"] * 1  # warm-up, 3 rounds; c fails in round 2
    assert set(t) == {"a", "b"} and "no such kernel" in str(errors["c"])
    assert t["a"]["median_s"] == pytest.approx(1e-3) and t["b"]["median_s"] == pytest.approx(2e-3)
    assert len(t["a"]["samples_s"]) == 3


@pytest.mark.parametrize("op,fp32,fp64", [
    ("copy", 8, 16), ("triad", 12, 24), ("sgd", 12, 24), ("momentum", 20, 40), ("adagrad", 20, 40),
    ("rmsprop", 20, 40), ("adam", 28, 56), ("adamw", 28, 56), ("amsgrad", 36, 72),
    ("dropout", 8.125, 16.125), ("dropout_backward", 8.125, 16.125), ("batchnorm", 12, 24),
    ("batchnorm_eval", 8, 16), ("batchnorm_backward", 20, 40)])
def test_bytes_per_element_follow_design(op, fp32, fp64):
    # DESIGN.md, "Bandwidth probe": SGD 12, momentum/AdaGrad/RMSprop 20, Adam 28 (+8 AMSGrad),
    # dropout 8 + 1/8, BN forward (training) 12, BN backward 20, all fp32
    assert OPS[op].bytes_per_element(np.float32) == fp32
    assert OPS[op].bytes_per_element(np.float64) == fp64


def _rows(op, table):
    return [{"op": op, "size": s, "n": s, "backend": b, "median_s": t} for s, b, t in table]


def test_crossover_is_where_the_gpu_keeps_winning():
    rows = _rows("adam", [
        (10, "numba", 1.0), (10, "cuda", 2.0), (10, "cuda+transfer", 9.0),
        (100, "numba", 2.0), (100, "cuda", 1.0), (100, "cuda+transfer", 5.0),
        (1000, "numba", 8.0), (1000, "c", 3.0), (1000, "cuda", 1.0), (1000, "cuda+transfer", 2.5),
        (10000, "numba", 30.0), (10000, "cuda", 2.0), (10000, "cuda+transfer", 10.0)])
    cross = profile.crossover({"results": rows}, "adam")
    # transfers: beats the best CPU (c, 3.0) at 1000 and 10000 but not at 100
    assert cross == {"cuda": 100, "cuda+transfer": 1000}


def test_crossover_needs_a_win_at_the_largest_size():
    rows = _rows("sgd", [(10, "numpy", 1.0), (10, "cuda", 0.5), (100, "numpy", 1.0),
                         (100, "cuda", 2.0)])
    assert profile.crossover({"results": rows}, "sgd") == {"cuda": None, "cuda+transfer": None}


def _outputs(result, arrays):
    """The arrays an op returned that are not in its `arrays` dict (its own allocations:
    batch norm's y, mean, invstd, dropout's mask), on the host."""
    from fusedops._arrays import host_copy

    items = result if isinstance(result, tuple) else (result,)
    return [np.asarray(host_copy(r)) for r in items
            if r is not None and not any(r is a for a in arrays.values())]


def _run(spec, backend, size, dtype):
    arrays, params = host_arrays(spec, size, dtype, 16)
    if backend == "cuda":
        from numba import cuda

        dev = {k: cuda.to_device(v) for k, v in arrays.items()}
        out = _outputs(spec.call(dev, "cuda", params), dev)
        return {k: v.copy_to_host() for k, v in dev.items()}, out
    return arrays, _outputs(spec.call(arrays, backend, params), arrays)


@pytest.mark.parametrize("op", profile.available_ops())
def test_each_registered_op_does_the_same_work_on_every_backend(op, dtype):
    """The registry calls the real op: it writes its arrays or returns new ones (no op is
    exempt), the same on every backend."""
    spec = OPS[op]
    before, _ = host_arrays(spec, 70, dtype, 16)
    ref, ref_out = _run(spec, "numpy", 70, dtype)
    changed = [k for k in ref if not np.array_equal(ref[k], before[k])]
    assert changed or any(np.any(o != 0) for o in ref_out), f"{op} wrote nothing"
    targets = [b for b in CPU if b != "numpy"]
    if SIM:
        targets.append("cuda")
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for b in targets:
        got, got_out = _run(spec, b, 70, dtype)
        for k in ref:
            np.testing.assert_allclose(got[k], ref[k], rtol=tol, atol=tol, err_msg=f"{op} {b} {k}")
        assert len(got_out) == len(ref_out)
        for i, (g, r) in enumerate(zip(got_out, ref_out)):
            np.testing.assert_allclose(g, r, rtol=tol, atol=tol, err_msg=f"{op} {b} output {i}")


def test_batchnorm_shapes_keep_two_rows():
    _, params = host_arrays(OPS["batchnorm"], 3, np.float32, 256)
    rows, f = params["shape"]
    assert rows >= 2 and params["n"] == rows * f


def test_run_profile_rows():
    res = profile.run_profile(["copy", "triad"], [1000, 5000], CPU, repeat=3, probe={"cpu": 10.0},
                              progress=False, min_sample_s=1e-4)
    assert {(r["op"], r["size"], r["backend"]) for r in res["results"]} == {
        (op, s, b) for op in ("copy", "triad") for s in (1000, 5000) for b in CPU}
    for r in res["results"]:
        per = {"copy": 8, "triad": 12}[r["op"]]
        assert r["bytes"] == per * r["n"]
        assert r["gbps"] == pytest.approx(r["bytes"] / r["median_s"] / 1e9)
        assert r["fraction_of_probe"] == pytest.approx(r["gbps"] / 10.0)
        assert r["min_s"] <= r["median_s"] <= r["max_s"]
        numpy_row = next(x for x in res["results"] if x["backend"] == "numpy"
                         and x["op"] == r["op"] and x["size"] == r["size"])
        assert r["speedup_vs_numpy"] == pytest.approx(numpy_row["median_s"] / r["median_s"])
    assert res["errors"] == []
    assert res["crossover"] == {"copy": {"cuda": None, "cuda+transfer": None},
                                "triad": {"cuda": None, "cuda+transfer": None}}


def test_a_failing_backend_is_reported_not_raised(monkeypatch):
    spec = OPS["copy"]

    def boom(a, be, p):
        if be == "numba":
            raise RuntimeError("kernel exploded")
        spec.call(a, be, p)

    monkeypatch.setitem(OPS, "copy", dataclasses.replace(spec, call=boom))
    res = profile.run_profile(["copy"], [100], ["numpy", "numba"], repeat=2, probe=False,
                              progress=False, min_sample_s=1e-4)
    assert [r["backend"] for r in res["results"]] == ["numpy"]
    assert res["errors"][0]["backend"] == "numba" and "kernel exploded" in res["errors"][0]["error"]
    assert profile.emit(res) == 1


@pytest.mark.cuda
@pytest.mark.skipif(backends.backend_unavailable_reason("cuda") is not None, reason="no CUDA")
def test_cuda_is_timed_kernel_only_and_with_transfers():
    res = profile.run_profile(["adam"] if "adam" in profile.available_ops() else ["copy"], [600],
                              ["numpy", "cuda"], repeat=2, probe=False, progress=False,
                              min_sample_s=1e-4)
    kinds = {r["backend"]: r["transfers"] for r in res["results"]}
    assert kinds == {"numpy": False, "cuda": False, "cuda+transfer": True}
    assert res["errors"] == []
