"""Damaged and hostile low-bit optimizer state (8-bit codes and block absmax scales, bfloat16
bits, float32 master copies of float16 parameters, the low-bit options): Optimizer.
load_state_dict, check_state_dict, nn.load and a one-rank DistributedOptimizer refuse each case
with a ValueError naming the entry, and change nothing. Runs on C (nothing compiled at test
time; the state format does not depend on the backend)."""
import numpy as np
import pytest

from fusedops import backends, optim
from fusedops.ops import lowbit as L

BE = "c" if backends.backend_unavailable_reason("c") is None else "numpy"
N0, N1 = 600, 40  # parameter 0 keeps 8-bit state (>= min_8bit_size), parameter 1 float32
NB0 = -(-N0 // L.BLOCK)


def _adam():
    """Adam with int8 state and float32 master copies of float16 params, after two steps."""
    ws = [np.linspace(-1, 1, n).astype(np.float16) for n in (N0, N1)]
    opt = optim.Adam(ws, lr=1e-2, state_dtype="int8", master_weights=True, min_8bit_size=512,
                     backend=BE)
    for t in range(2):
        opt.step([np.full(w.shape, 0.5 + t, np.float16) for w in ws])
    return opt


def _sgd():
    """SGD with momentum held as bfloat16 bits, after one step."""
    ws = [np.ones(N1, np.float32)]
    opt = optim.SGD(ws, lr=0.1, momentum=0.9, state_dtype="bfloat16", backend=BE)
    opt.step([np.full(N1, 0.25, np.float32)])
    return opt


D = KeyError  # remove the entry
CASES = [
    # (case id, optimizer, {entry: new value or D}, the entry the error names)
    ("options removed", _adam, {"lowbit.state_dtype": D}, "lowbit"),
    ("state_dtype a number", _adam, {"lowbit.state_dtype": 8}, "lowbit.state_dtype"),
    ("master_weights an int", _adam, {"lowbit.master_weights": 1}, "lowbit.master_weights"),
    ("seed text", _adam, {"lowbit.seed": "0"}, "lowbit.seed"),
    ("seed other", _adam, {"lowbit.seed": 5}, "lowbit"),
    ("min_8bit_size array", _adam, {"lowbit.min_8bit_size": np.zeros(2)}, "lowbit.min_8bit_size"),
    ("hostile option", _adam, {"lowbit.__class__": "x"}, "lowbit.__class__"),
    ("codes removed", _adam, {"state.0.exp_avg.codes": D}, "state.0.exp_avg.codes"),
    ("scales removed", _adam, {"state.0.exp_avg_sq.scales": D}, "state.0.exp_avg_sq.scales"),
    ("codes int8", _adam, {"state.0.exp_avg.codes": np.zeros(N0, np.int8)}, "state.0.exp_avg.codes"),
    ("codes short", _adam, {"state.0.exp_avg.codes": np.zeros(N0 - 1, np.uint8)},
     "state.0.exp_avg.codes"),
    ("codes text", _adam, {"state.0.exp_avg.codes": "zeros"}, "state.0.exp_avg.codes"),
    ("scales one short", _adam, {"state.0.exp_avg.scales": np.ones(NB0 - 1, np.float32)},
     "state.0.exp_avg.scales"),
    ("scales float64", _adam, {"state.0.exp_avg.scales": np.ones(NB0)}, "state.0.exp_avg.scales"),
    ("scale negative", _adam, {"state.0.exp_avg.scales": np.full(NB0, -1, np.float32)},
     "state.0.exp_avg.scales"),
    ("scale NaN", _adam, {"state.0.exp_avg_sq.scales": np.full(NB0, np.nan, np.float32)},
     "state.0.exp_avg_sq.scales"),
    ("scale inf", _adam, {"state.0.exp_avg.scales": np.full(NB0, np.inf, np.float32)},
     "state.0.exp_avg.scales"),
    ("8-bit state as float32", _adam, {"state.0.exp_avg.codes": D, "state.0.exp_avg.scales": D,
                                       "state.0.exp_avg": np.zeros(N0, np.float32)},
     "state.0.exp_avg"),
    ("float32 state as 8-bit", _adam, {"state.1.exp_avg": D,
                                       "state.1.exp_avg.codes": np.zeros(N1, np.uint8),
                                       "state.1.exp_avg.scales": np.ones(1, np.float32)},
     "state.1.exp_avg"),
    ("two formats of a slot", _adam, {"state.1.exp_avg.bfloat16": np.zeros(N1, np.uint16)},
     "state.1.exp_avg"),
    ("float32 state float64", _adam, {"state.1.exp_avg_sq": np.zeros(N1)}, "state.1.exp_avg_sq"),
    ("master float64", _adam, {"state.0.master": np.zeros(N0)}, "state.0.master"),
    ("master wrong shape", _adam, {"state.1.master": np.zeros(N0, np.float32)}, "state.1.master"),
    ("master text", _adam, {"state.0.master": "x"}, "state.0.master"),
    ("master of no parameter", _adam, {"state.2.master": np.zeros(3, np.float32)},
     "state.2.master"),
    ("unknown slot", _adam, {"state.0.bogus.codes": np.zeros(N0, np.uint8)},
     "state.0.bogus.codes"),
    ("step negative", _adam, {"state.0.step": -1}, "state.0.step"),
    ("step a float", _adam, {"state.1.step": 2.0}, "state.1.step"),
    ("lr negative", _adam, {"group.0.lr": -1.0}, "group.0"),
    ("bfloat16 bits as float32", _sgd, {"state.0.momentum_buffer.bfloat16":
                                        np.zeros(N1, np.float32)},
     "state.0.momentum_buffer.bfloat16"),
    ("bfloat16 state as float32", _sgd, {"state.0.momentum_buffer.bfloat16": D,
                                         "state.0.momentum_buffer": np.zeros(N1, np.float32)},
     "state.0.momentum_buffer"),
    ("a float32 state_dict", _sgd, {"lowbit.state_dtype": "float32"}, "lowbit"),
]


def _edited(sd, edits):
    sd = dict(sd)
    for key, value in edits.items():
        if value is D:
            del sd[key]
        else:
            sd[key] = value
    return sd


def _same(a, b):
    assert sorted(a) == sorted(b)
    for k in a:
        np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]), err_msg=k)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_load_state_dict_refuses_and_changes_nothing(case):
    _, make, edits, field = case
    opt = make()
    before, params = opt.state_dict(), [p.copy() for p in opt.param_arrays()]
    bad = _edited(before, edits)
    for call in (opt.check_state_dict, opt.load_state_dict):
        with pytest.raises(ValueError) as exc:
            call(bad)
        assert str(exc.value).startswith(f"state_dict: {field}:"), str(exc.value)
    _same(opt.state_dict(), before)
    for p, q in zip(opt.param_arrays(), params):
        np.testing.assert_array_equal(p, q)


@pytest.mark.parametrize("make", [_adam, _sgd])
def test_the_untouched_state_loads_into_a_fresh_optimizer(make, tmp_path):
    """The table's baseline: the honest dict and its .npz load (so a refusal above is the
    edit's doing), and the fresh optimizer then holds the same state."""
    sd = make().state_dict()
    np.savez(tmp_path / "s.npz", **sd)
    for source in (sd, np.load(tmp_path / "s.npz")):
        fresh = make()
        fresh.load_state_dict(source)
        _same(fresh.state_dict(), sd)


def test_model_file_with_damaged_low_bit_state(tmp_path):
    """nn.load: the error names the file, the optimizer state and the entry."""
    from fusedops.nn import MLP, load
    from model_file_cases import new_array, original
    import json

    rng = np.random.default_rng(0)
    X, y = rng.random((64, 20)).astype(np.float32), rng.integers(0, 3, 64)
    m = MLP([20, 32, 3], seed=0, backend=BE)
    m.set_optimizer(optim.Adam(m.param_groups(), lr=1e-2, state_dtype="int8", min_8bit_size=0,
                               backend=BE))
    m.fit(X, y, epochs=1, batch_size=32, optimizer=m.optimizer)
    m.save(tmp_path / "m.npz")
    meta, arrays = original(tmp_path / "m.npz")
    state = dict(meta["optimizer"]["state"]["__dict__"])
    key = "state.0.exp_avg.scales"
    assert key in state
    state[key] = new_array(arrays, np.full(3, np.nan, np.float32))
    meta["optimizer"]["state"]["__dict__"] = [[k, v] for k, v in state.items()]
    np.savez(tmp_path / "bad.npz", __meta__=np.array(json.dumps(meta)), **arrays)
    with pytest.raises(ValueError) as exc:
        load(tmp_path / "bad.npz")
    assert str(exc.value).startswith(f"{tmp_path / 'bad.npz'}: optimizer.state: state_dict: "
                                     f"{key}:"), str(exc.value)


@pytest.mark.parametrize("shard", [False, True])
def test_distributed_optimizer_refuses_damaged_state(shard):
    """The state a DistributedOptimizer saves (one process's format) is checked the same way on
    load, plain and ZeRO-1 (one rank here; agreement across ranks: tests/mpi/checks.py)."""
    pytest.importorskip("mpi4py", reason="fusedops[mpi] is not installed")
    import fusedops.distributed as fd

    ws = [np.ones(N1, np.float32), np.ones(7, np.float32)]
    d = fd.DistributedOptimizer(optim.SGD(ws, lr=0.1, momentum=0.9, backend=BE), shard_state=shard)
    d.step([np.full(N1, 0.5, np.float32), np.full(7, 0.5, np.float32)])
    sd = d.state_dict()
    for edits, field in (({"state.1.momentum_buffer": np.zeros(7, np.int32)},
                          "state.1.momentum_buffer"),
                         ({"state.0.step": 2**70}, "state.0.step"),
                         ({"state.0.__init__": 1}, "state.0.__init__")):
        with pytest.raises(ValueError) as exc:
            d.load_state_dict(_edited(sd, edits))
        assert f"state_dict: {field}:" in str(exc.value), str(exc.value)
        _same(d.state_dict(), sd)
