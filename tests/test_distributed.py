"""fusedops.distributed: in-process checks on one rank, and `mpiexec -n 2` / `-n 3` runs of
tests/mpi/*.py (subprocesses with timeouts: a hang fails the test instead of stalling CI).

What the MPI runs show (tests/mpi/checks.py): N-rank fits of digits (plain and ZeRO-1, with
dropout and batch norm, an autoencoder with noise, uneven splits down to a rank without rows)
equal a one-process fit within float32 rel 1e-5 and are bitwise identical on every rank;
ZeRO-1 equals plain data parallelism; local_state_nbytes is a 1/N shard; checkpoints move
between N ranks and one process both ways; early stopping is decided together; errors are
agreed; GPU (simulator) arrays are staged through the host. tests/mpi/failures.py: a rank with
bad input makes every rank exit non-zero with the error; a rank failing alone aborts the job.
"""
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mpi4py", reason="fusedops[mpi] (mpi4py + mpich) is not installed")

import fusedops.distributed as fd  # noqa: E402
from fusedops import optim  # noqa: E402
from fusedops.distributed._comm import MPI  # noqa: E402
from fusedops.distributed.training import part  # noqa: E402
from fusedops.nn import MLP  # noqa: E402
from fusedops.apps.train import launched_by_mpi  # noqa: E402

HERE = Path(__file__).parent
MPIEXEC = Path(sys.executable).parent / "mpiexec"


def needs_mpiexec(test):
    """Marked `mpi` (deselect with -m "not mpi"); skipped without the venv's mpiexec."""
    skip = pytest.mark.skipif(not MPIEXEC.exists(), reason=f"no {MPIEXEC} (pip install mpich)")
    return skip(pytest.mark.mpi(test))


def _mpiexec(n, args, timeout, **env):
    """Run `mpiexec -n n python args...`; kill the whole process group on timeout."""
    env = {**os.environ, **env}
    for var in ("PMI_SIZE", "PMI_RANK", "PMI_FD", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS"):
        env.pop(var, None)  # a singleton MPI in this process must not leak into the job
    proc = subprocess.Popen([str(MPIEXEC), "-n", str(n), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"mpiexec -n {n} {' '.join(args)} did not finish in {timeout} s (a hang?):\n{out}")
    return proc.returncode, out


# ---------------------------------------------------------------------------- under mpiexec

@needs_mpiexec
@pytest.mark.parametrize("n", [2, 3])
def test_mpi_checks(n):
    rc, out = _mpiexec(n, [sys.executable, str(HERE / "mpi" / "checks.py")], timeout=900,
                       NUMBA_ENABLE_CUDASIM="1")
    names = re.findall(r"^def check_(\w+)\(", (HERE / "mpi" / "checks.py").read_text(), re.M)
    missing = [name for name in names if f"ok {name}" not in out]
    assert len(names) >= 8
    assert rc == 0 and not missing, f"failed: {missing}\n{out}"


@needs_mpiexec
def test_a_rank_with_bad_input_makes_every_rank_exit_with_the_error():
    rc, out = _mpiexec(3, [sys.executable, str(HERE / "mpi" / "failures.py"), "nan"], timeout=300)
    assert rc != 0
    assert out.count("ValueError: rank 2: X contains NaN or infinite values") == 3, out
    assert "finished" not in out


@needs_mpiexec
def test_a_rank_failing_alone_aborts_the_job():
    rc, out = _mpiexec(2, [sys.executable, str(HERE / "mpi" / "failures.py"), "crash"], timeout=300)
    assert rc != 0
    assert "MemoryError: simulated failure on rank 1 alone" in out, out
    assert "rank 1 of 2 failed alone" in out and "MPI_Abort" in out
    assert "finished" not in out


@needs_mpiexec
@pytest.mark.parametrize("shard", [[], ["shard"]])
def test_ctrl_c_on_one_rank_stops_every_rank_after_the_same_step(shard):
    rc, out = _mpiexec(2, [sys.executable, str(HERE / "mpi" / "failures.py"), "sigint", *shard],
                       timeout=120)
    assert rc == 0 and "MPI_Abort" not in out, out
    # not anchored to lines: mpiexec may splice the ranks' output within a line
    lines = sorted(re.findall(r"rank (\d) interrupted: (epochs \d+ interrupted \w+ weights [0-9a-f]{16})", out))
    assert [r for r, _ in lines] == ["0", "1"], out
    assert lines[0][1] == lines[1][1], out  # the same record and weights on both ranks
    assert lines[0][1].startswith("epochs 0 interrupted True weights "), out
    assert "state: steps 3 filled True" in out, out  # ZeRO-1: rank 0 gathered every shard


@needs_mpiexec
def test_fusedops_train_distributes_under_mpiexec(tmp_path, capsys):
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 300)
    X = (rng.standard_normal((300, 6)) + 3 * np.eye(3, 6)[y]).astype(np.float32)
    data, saved = tmp_path / "blobs.npz", tmp_path / "model.npz"
    np.savez(data, X=X, y=y)
    args = ["train", "--data", str(data), "--epochs", "3", "--hidden", "16", "--batchnorm",
            "--dropout", "0.1", "--quiet"]
    rc, out = _mpiexec(2, [str(MPIEXEC.parent / "fusedops"), *args, "--shard-state", "--save",
                           str(saved)], timeout=300)
    assert rc == 0, out
    assert out.count("trained 3 epochs") == 1 and "2 MPI processes" in out  # rank 0 prints
    from fusedops.apps.cli import main
    from fusedops.nn import load

    assert main(args) == 0
    one = capsys.readouterr().out
    loss = [float(text.split("test loss ")[1].split(",")[0]) for text in (out, one)]
    assert loss[0] == pytest.approx(loss[1], abs=2e-4)
    assert load(saved).optimizer.state_dict()["state.0.step"] > 0  # rank 0 saved all the state


# ---------------------------------------------------------------------------- one process

def _problem():
    rng = np.random.default_rng(0)
    flat, ps = optim.flatten([rng.standard_normal((9, 4)).astype(np.float32),
                              rng.standard_normal(4).astype(np.float32)])
    gflat, gs = optim.flatten([np.zeros((9, 4), np.float32), np.zeros(4, np.float32)])
    return flat, ps, gflat, gs


@pytest.mark.parametrize("shard", [False, True])
@pytest.mark.parametrize("make", [lambda ps: optim.Adam(ps, lr=1e-2, amsgrad=True),
                                  lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True),
                                  lambda ps: optim.Adagrad(ps, lr=0.1, initial_accumulator_value=0.5)],
                         ids=["adam", "sgd", "adagrad"])
def test_one_rank_equals_the_wrapped_optimizer(shard, make):
    _check_wrapped_equals_plain(make, shard)


def _check_wrapped_equals_plain(make, shard):
    runs = []
    for wrap in (False, True):
        flat, ps, gflat, gs = _problem()
        opt = make([{"params": [ps[0]], "weight_decay": 1e-2}, {"params": [ps[1]]}])
        d = fd.DistributedOptimizer(opt, comm=MPI.COMM_SELF, shard_state=shard) if wrap else opt
        for t in range(3):
            gflat[:] = np.random.default_rng(t).standard_normal(gflat.size)
            d.step(gs)
        runs.append((flat, d.state_dict()))
    np.testing.assert_array_equal(runs[1][0], runs[0][0])
    assert set(runs[1][1]) == set(runs[0][1])
    for k, v in runs[0][1].items():
        np.testing.assert_array_equal(np.asarray(runs[1][1][k]), np.asarray(v), err_msg=k)


def test_low_bit_state_is_allreduced_not_sharded():
    _check_wrapped_equals_plain(lambda ps: optim.Adam(ps, lr=1e-2, state_dtype="int8",
                                                      min_8bit_size=0), shard=False)
    flat, ps, gflat, gs = _problem()
    before = flat.copy()
    with pytest.raises(ValueError, match=r"rank 0: shard_state=True \(ZeRO-1\) needs float32"):
        fd.DistributedOptimizer(optim.Adam(ps, lr=1e-2, state_dtype="int8"), comm=MPI.COMM_SELF,
                                shard_state=True)
    np.testing.assert_array_equal(flat, before)


def test_one_rank_state_dict_round_trip():
    flat, ps, gflat, gs = _problem()
    d = fd.DistributedOptimizer(optim.RMSprop(ps, lr=1e-2, centered=True), comm=MPI.COMM_SELF,
                                shard_state=True)
    gflat[:] = 1.5
    d.step(gs)
    sd = d.state_dict()
    assert sd["state.0.step"] == 1 and sd["state.1.grad_avg"].shape == (4,)
    assert d.local_state_nbytes() == 2 * flat.nbytes  # square_avg and grad_avg
    flat2, ps2, _, _ = _problem()
    plain = optim.RMSprop(ps2, lr=1.0, centered=True)
    plain.load_state_dict(sd)  # a single process loads the gathered checkpoint
    assert plain.param_groups[0]["lr"] == 1e-2
    np.testing.assert_array_equal(plain.state_dict()["state.0.square_avg"], sd["state.0.square_avg"])


def test_argument_errors():
    flat, ps, gflat, gs = _problem()
    with pytest.raises(TypeError, match="rank 0: optimizer must be a fusedops.optim optimizer"):
        fd.DistributedOptimizer(object())
    with pytest.raises(ValueError, match="rank 0: reduce must be one of"):
        fd.DistributedOptimizer(optim.SGD(ps, lr=0.1), reduce="max")
    with pytest.raises(ValueError, match="rank 0: bucket_mb must be a positive number"):
        fd.DistributedOptimizer(optim.SGD(ps, lr=0.1), bucket_mb=0)
    with pytest.raises(TypeError, match="rank 0: shard_state must be True or False"):
        fd.DistributedOptimizer(optim.SGD(ps, lr=0.1), shard_state=1)
    with pytest.raises(TypeError, match="comm must be an mpi4py intracommunicator"):
        fd.DistributedOptimizer(optim.SGD(ps, lr=0.1), comm="world")
    d = fd.DistributedOptimizer(optim.SGD(ps, lr=0.1), comm=MPI.COMM_SELF, shard_state=True)
    separate = [np.zeros((9, 4), np.float32), np.zeros(4, np.float32)]
    with pytest.raises(ValueError, match=r"rank 0: grads\[0:2\] must lie end to end"):
        d.step(separate)
    with pytest.raises(ValueError, match="rank 0: grads must have one entry per parameter"):
        d.step(gs[:1])
    before = flat.copy()
    with pytest.raises(ValueError, match="rank 0: grads\\[1\\] is None") as info:
        d.step([gs[0], None])
    np.testing.assert_array_equal(flat, before)  # nothing stepped
    assert fd.is_agreed(info.value) and not fd.is_agreed(ValueError("local"))


def test_fit_arguments():
    X = np.random.default_rng(0).standard_normal((40, 4)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    with pytest.raises(ValueError, match="shard_state applies to distributed training"):
        MLP([4, 8, 2]).fit(X, y, epochs=1, shard_state=True)
    with pytest.raises(TypeError, match="comm must be an mpi4py intracommunicator"):
        MLP([4, 8, 2]).fit(X, y, epochs=1, comm=0)
    with pytest.raises(TypeError, match="rank 0: shard_state must be True or False"):
        MLP([4, 8, 2]).fit(X, y, epochs=1, comm=MPI.COMM_SELF, shard_state="yes")


def test_one_rank_fit_equals_the_plain_fit():
    """With one process the distributed loop (its synced BN, row offsets and reductions)
    computes exactly the plain loop's training."""
    rng = np.random.default_rng(2)
    X = rng.standard_normal((130, 5)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int64)
    kw = dict(epochs=2, batch_size=16, validation_split=0.2, lr=1e-2)
    a, b = MLP([5, 12, 2], dropout=0.2, batchnorm=True), MLP([5, 12, 2], dropout=0.2, batchnorm=True)
    ha = a.fit(X, y, **kw)
    hb = b.fit(X, y, comm=MPI.COMM_SELF, shard_state=True, **kw)
    np.testing.assert_array_equal(b.flat.data, a.flat.data)
    assert ha.val_loss == pytest.approx(hb.val_loss, rel=1e-12) and ha.loss == pytest.approx(hb.loss, rel=1e-12)
    assert all(layer.sync is None for layer in b._bn_layers())  # the model is plain again


@pytest.mark.parametrize("total", range(0, 12))
@pytest.mark.parametrize("size", [1, 2, 3, 5])
def test_parts_cover_the_batch_and_differ_by_at_most_one_row(total, size):
    bounds = [part(total, r, size) for r in range(size)]
    assert bounds[0][0] == 0 and bounds[-1][1] == total
    assert all(bounds[r][1] == bounds[r + 1][0] for r in range(size - 1))
    lengths = [hi - lo for lo, hi in bounds]
    assert max(lengths) - min(lengths) <= 1 and lengths == sorted(lengths, reverse=True)


def test_cuda_awareness(monkeypatch):
    try:
        for value, expected in (("1", True), ("0", False)):
            monkeypatch.setenv("FUSEDOPS_MPI_CUDA_AWARE", value)
            fd.cuda_aware.cache_clear()
            assert fd.cuda_aware() is expected
        monkeypatch.delenv("FUSEDOPS_MPI_CUDA_AWARE")
        fd.cuda_aware.cache_clear()
        assert fd.cuda_aware() is False  # the mpich wheel from PyPI is not CUDA-aware
    finally:
        fd.cuda_aware.cache_clear()


def test_launch_detection(monkeypatch):
    for var in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS"):
        monkeypatch.delenv(var, raising=False)
    assert not launched_by_mpi()
    monkeypatch.setenv("PMI_SIZE", "1")
    assert not launched_by_mpi()  # a singleton: nothing to distribute
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "4")
    assert launched_by_mpi()
