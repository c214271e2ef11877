"""Damaged and hostile model files: a table of cases (truncations, every field removed or
retyped, hostile values) for fusedops.nn.load. Each must fail with a ValueError naming the file
and the field, without building anything from an unchecked size; the untouched file loads."""
import io
import json
import time
import zipfile

import numpy as np
import pytest
from numpy.lib import format as npy_format

import fusedops
from fusedops.nn import MLP, Autoencoder, load

from model_file_cases import (HOSTILE, META_KEYS, RETYPED, STATE_CASES, W0, apply, new_array,
                              original)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Two saved models: an MLP with BN, dropout and an AMSGrad Adam; an Autoencoder with
    fitted latent statistics and a noise step counter."""
    d = tmp_path_factory.mktemp("models")
    rng = np.random.default_rng(0)
    X, y = rng.random((64, 6)).astype(np.float32), rng.integers(0, 3, 64)
    m = MLP([6, 8, 3], dropout=0.2, batchnorm=True, seed=1, backend="numpy")
    m.set_optimizer(fusedops.optim.Adam(m.param_groups(weight_decay=1e-3), lr=1e-2, amsgrad=True,
                                        backend="numpy"))
    m.fit(X, y, epochs=1, batch_size=32, optimizer=m.optimizer)
    ae = Autoencoder(6, (5,), 2, noise=("masking", 0.2), seed=2, backend="numpy")
    ae.fit(X, epochs=1, batch_size=32)
    paths = {"mlp": d / "mlp.npz", "ae": d / "ae.npz"}
    m.save(paths["mlp"])
    ae.save(paths["ae"])
    return paths


def _write(path, meta, arrays):
    """meta: a dict (written as JSON), a str (raw __meta__ text) or an array (as it is)."""
    text = meta if isinstance(meta, np.ndarray) else np.array(
        meta if isinstance(meta, str) else json.dumps(meta))
    np.savez(path, __meta__=text, **arrays)
    return path


def _expect(path, field):
    with pytest.raises(ValueError) as exc:
        load(path)
    msg = str(exc.value)
    assert msg.startswith(f"{path}: ") and field in msg, msg
    return msg


def test_the_untouched_files_load(files):
    for kind, path in files.items():
        meta, arrays = original(path)
        model = load(_write(path.with_name(f"copy_{kind}.npz"), meta, arrays))
        assert type(model).__name__ == meta["class"]


@pytest.mark.parametrize("cut", [0, 1, 22, 100, 0.5, -200, -1])
def test_truncated_file(files, tmp_path, cut):
    data = files["mlp"].read_bytes()
    n = int(len(data) * cut) if isinstance(cut, float) else cut % len(data) if cut < 0 else cut
    bad = tmp_path / "cut.npz"
    bad.write_bytes(data[:n])
    _expect(bad, "")  # "not a readable .npz archive", or the damaged member's name


@pytest.mark.parametrize("kind", ["mlp", "ae"])
@pytest.mark.parametrize("key", META_KEYS)
def test_every_meta_field_removed(files, tmp_path, kind, key):
    meta, arrays = original(files[kind])
    del meta[key]
    _expect(_write(tmp_path / "m.npz", meta, arrays), f"{key}: missing")


@pytest.mark.parametrize("key", META_KEYS)
@pytest.mark.parametrize("value", RETYPED, ids=repr)
def test_every_meta_field_retyped(files, tmp_path, key, value):
    meta, arrays = original(files["mlp"])
    meta[key] = value
    path = _write(tmp_path / "m.npz", meta, arrays)
    if key == "optimizer" and value is None:  # legal, but the moments' arrays are left over
        _expect(path, "an array no field of the file refers to")
        return
    _expect(path, key)


@pytest.mark.parametrize("case", HOSTILE, ids=[c[0] for c in HOSTILE])
def test_hostile_and_damaged_fields(files, tmp_path, case):
    name, kind, field, edit = case
    meta, arrays = original(files[kind])
    t = time.perf_counter()
    _expect(_write(tmp_path / "m.npz", *apply(edit, meta, arrays)), field)
    assert time.perf_counter() - t < 5  # refused, not built: no allocation from the claim


@pytest.mark.parametrize("case", STATE_CASES, ids=[c[0] for c in STATE_CASES])
def test_optimizer_state_entries(files, tmp_path, case):
    name, key, value, field = case
    meta, arrays = original(files["mlp"])
    state = dict(meta["optimizer"]["state"]["__dict__"])
    if value is KeyError:
        del state[key]
    else:
        state[key] = new_array(arrays, value) if isinstance(value, np.ndarray) else value
    meta["optimizer"]["state"]["__dict__"] = [[k, v] for k, v in state.items()]
    _expect(_write(tmp_path / "m.npz", meta, arrays), f"optimizer.state: state_dict: {field}")


def _npy_with_header(shape, dtype="<f8", data=b"\0" * 64):
    buf = io.BytesIO()
    npy_format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False,
                                            "shape": shape})
    return buf.getvalue() + data


@pytest.mark.parametrize("shape,dtype", [((10**12,), "<f8"), ((2**40, 2**40), "<f4"),
                                         ((8,), "|O"), ((8,), "<c16"), ((-1,), "<f8")])
def test_member_headers_are_checked_before_any_allocation(files, tmp_path, shape, dtype):
    """A .npy header claims its shape: np.load allocates it before reading. Here a claim that
    the archive's bytes do not back, or a dtype fusedops never writes (objects need pickle),
    is refused first."""
    bad = tmp_path / "claims.npz"
    with zipfile.ZipFile(files["mlp"]) as src, zipfile.ZipFile(bad, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "params.npy":
                data = _npy_with_header(shape, dtype)
            dst.writestr(info.filename, data)
    t = time.perf_counter()
    _expect(bad, "params")
    assert time.perf_counter() - t < 5


def test_pickled_member_is_refused(files, tmp_path):
    meta, arrays = original(files["mlp"])
    arrays["params"] = np.array([object()] * 3, dtype=object)
    _expect(_write(tmp_path / "m.npz", meta, arrays), "params")


def test_a_model_class_registered_later_is_still_checked(files, tmp_path):
    """A subclass without param_count: its sizes may not exceed the parameters the file holds."""
    class Tiny(MLP):
        @staticmethod
        def param_count(config):
            return None

    meta, arrays = original(files["mlp"])
    meta["class"] = "Tiny"
    meta["config"]["sizes"] = [6, 10**9, 3]
    _expect(_write(tmp_path / "m.npz", meta, arrays), "config")


def _adam():
    w = [np.ones(s, np.float32) for s in (W0, (8,), (3,))]
    opt = fusedops.optim.Adam([{"params": w[:2]}, {"params": w[2:], "lr": 0.1}], lr=1e-2,
                              amsgrad=True, backend="numpy")
    for _ in range(2):
        opt.step([np.full(a.shape, 0.5, np.float32) for a in w])
    return opt


@pytest.mark.parametrize("case", STATE_CASES, ids=[c[0] for c in STATE_CASES])
def test_optimizer_load_state_dict_rejects_and_changes_nothing(case):
    """The same table through Optimizer.load_state_dict on a dict: the error names the entry,
    and the optimizer keeps its state, steps and hyperparameters."""
    name, key, value, field = case
    opt = _adam()
    sd = opt.state_dict()
    if value is KeyError:
        del sd[key]
    else:
        sd[key] = value
    before = opt.state_dict()
    with pytest.raises(ValueError, match=f"^state_dict: {field}"):
        opt.load_state_dict(sd)
    after = opt.state_dict()
    assert sorted(after) == sorted(before)
    for k in before:
        np.testing.assert_array_equal(after[k], before[k], err_msg=k)
    assert [g["lr"] for g in opt.param_groups] == [1e-2, 0.1]


def test_optimizer_load_state_dict_from_a_hostile_npz(tmp_path):
    """np.load's NpzFile reads a member by allocating what its header claims: load_state_dict
    checks every header against the archive's bytes before reading any member."""
    opt = _adam()
    good = tmp_path / "opt.npz"
    np.savez(good, **opt.state_dict())
    opt.load_state_dict(np.load(good))  # the honest file loads
    bad = tmp_path / "claims.npz"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "state.0.exp_avg.npy":
                data = _npy_with_header((10**6, 10**6), "<f4")
            dst.writestr(info.filename, data)
    with np.load(bad) as f, pytest.raises(ValueError, match=f"{bad}: state.0.exp_avg: its header"):
        opt.load_state_dict(f)


@pytest.mark.parametrize("cls,config", [
    (MLP, dict(sizes=[5, 3])), (MLP, dict(sizes=[5, 7, 4, 3], batchnorm=True)),
    (MLP, dict(sizes=[5, 7, 1], task="binary", dropout=0.1)),
    (Autoencoder, dict(input_dim=9)), (Autoencoder, dict(input_dim=9, hidden=[], latent_dim=2)),
    (Autoencoder, dict(input_dim=9, hidden=[7, 5], latent_dim=3, batchnorm=True))])
def test_param_count_is_what_the_constructor_allocates(cls, config):
    """load trusts param_count to refuse a config before building it: it must be exact."""
    assert cls.param_count(config) == cls(**config, backend="numpy").n_params
