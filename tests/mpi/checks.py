"""Checks run under `mpiexec -n N python tests/mpi/checks.py [names]` by test_distributed.py.

Each check is collective; rank 0 prints "ok <name>" when it passed. An assertion on any rank
aborts the job (abort_on_error), so a failure ends the run with a traceback, never a hang.
The one-process references are computed in the same script (on every rank, or on rank 0).
"""
import os
import sys
import tempfile

import numpy as np
from mpi4py import MPI

import fusedops.distributed as fd
from fusedops import optim
from fusedops.data import load_digits
from fusedops.nn import MLP, Autoencoder

COMM = MPI.COMM_WORLD
RANK, SIZE = COMM.Get_rank(), COMM.Get_size()
XTR, _, YTR, _ = load_digits()
FIT = dict(batch_size=64, lr=2e-3)
TOL = 1e-5  # float32: |a - b| / |b| over the whole parameter buffer


def rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def same_on_every_rank(a):
    """Rank 0's array equals every rank's, bit for bit."""
    every = COMM.gather(np.array(a, copy=True))
    if RANK == 0:
        for r, b in enumerate(every):
            assert np.array_equal(a.view(np.uint8), b.view(np.uint8)), f"rank {r} differs"


def mlp(**kw):
    return MLP([64, 64, 32, 10], seed=0, **kw)


def check_fit_equals_one_process():
    """Plain and ZeRO-1 fits with dropout and batch norm: parameters identical on every rank,
    within TOL of one process's fit, ZeRO equal to plain; the History likewise."""
    kw = dict(epochs=2, validation_split=0.1, **FIT)
    for cfg in (dict(), dict(dropout=0.2, batchnorm=True)):
        runs = {}
        for shard in (False, True):
            m = mlp(**cfg)
            h = m.fit(XTR, YTR, comm=COMM, shard_state=shard, **kw)
            same_on_every_rank(m.flat.data)
            same_on_every_rank(np.array(h.loss + h.val_loss + h.accuracy))
            for layer in m._bn_layers():
                same_on_every_rank(layer.running_var)
            runs[shard] = (m, h)
        one = mlp(**cfg)
        h1 = one.fit(XTR, YTR, **kw)
        (plain, hp), (zero, _) = runs[False], runs[True]
        assert rel(plain.flat.data, one.flat.data) < TOL, (cfg, rel(plain.flat.data, one.flat.data))
        for a, b in zip(plain._bn_layers(), one._bn_layers()):
            assert rel(a.running_var, b.running_var) < TOL
        if SIZE == 2:  # two addends: Allreduce and Reduce_scatter round alike (a + b == b + a)
            np.testing.assert_array_equal(zero.flat.data, plain.flat.data)
        else:
            assert rel(zero.flat.data, plain.flat.data) < 1e-6
        np.testing.assert_allclose(hp.val_loss, h1.val_loss, rtol=1e-5)
        np.testing.assert_allclose(hp.accuracy, h1.accuracy, rtol=1e-5)


def check_autoencoder_and_uneven_tiny_batches():
    """A denoising autoencoder with dropout (noise and masks at each row's place in the whole
    batch), and batches of 2 rows: with 3 ranks one rank has no rows at all."""
    kw = dict(hidden=(32,), latent_dim=8, dropout=0.1, seed=0)
    for noise in (("gaussian", 0.3), ("masking", 0.2)):
        ae = Autoencoder(64, noise=noise, **kw)
        ae.fit(XTR, epochs=2, batch_size=50, lr=3e-3, comm=COMM)
        one = Autoencoder(64, noise=noise, **kw)
        one.fit(XTR, epochs=2, batch_size=50, lr=3e-3)
        assert rel(ae.flat.data, one.flat.data) < TOL, (noise, rel(ae.flat.data, one.flat.data))
    X, y = XTR[:40], YTR[:40]
    fits = []
    for comm in (COMM, None):
        m = mlp(batchnorm=True, dropout=0.1)
        for layer in m._bn_layers():
            # two rows normalize to about +-1 and BN's backward becomes a difference of nearly
            # equal terms (condition ~ var/eps): a large eps keeps the comparison meaningful
            layer.eps = 1.0
        m.fit(X, y, epochs=2, batch_size=2, lr=1e-2, optimizer="sgd", comm=comm,
              shard_state=comm is not None)
        fits.append(m.flat.data)
    same_on_every_rank(fits[0])
    assert rel(fits[0], fits[1]) < TOL, rel(fits[0], fits[1])


def check_early_stopping_is_decided_together():
    kw = dict(epochs=12, validation_split=0.2, early_stopping=1, lr=0.02, batch_size=64)
    m = mlp(dropout=0.3)
    h = m.fit(XTR, YTR, comm=COMM, **kw)
    one = mlp(dropout=0.3)
    h1 = one.fit(XTR, YTR, **kw)
    decided = COMM.allgather((h.best_epoch, h.stopped_epoch, h.restored_best))
    assert len(set(decided)) == 1, decided
    assert decided[0] == (h1.best_epoch, h1.stopped_epoch, h1.restored_best), (decided, h1)
    assert h.stopped_epoch is not None and h.restored_best
    assert rel(m.flat.data, one.flat.data) < TOL


def check_fit_hooks_equal_one_process():
    """l2_per_batch (weight decay alpha/n for the whole batch's n rows, a short last batch
    included; the penalty in the reported loss) and a callback that stops after epoch 2: N
    ranks, plain and ZeRO-1, equal one process; a stop on one rank stops every rank."""
    kw = dict(epochs=4, l2_per_batch=0.5, batch_size=100, lr=3e-3)
    stop_at_2 = lambda model, hist: len(hist.epoch) == 2  # noqa: E731
    one = mlp(dropout=0.1)
    h1 = one.fit(XTR, YTR, callback=stop_at_2, **kw)
    assert len(XTR) % 100 and h1.stopped_epoch == 2
    for shard in (False, True):
        m = mlp(dropout=0.1)
        h = m.fit(XTR, YTR, comm=COMM, shard_state=shard, callback=stop_at_2, **kw)
        assert h.stopped_epoch == 2 and rel(m.flat.data, one.flat.data) < TOL, shard
        np.testing.assert_allclose(h.loss, h1.loss, rtol=1e-5)
    h = mlp().fit(XTR, YTR, comm=COMM, callback=lambda model, hist: RANK == SIZE - 1, **kw)
    assert h.stopped_epoch == 1


def check_state_nbytes_is_a_shard():
    """ZeRO-1: the ranks' state adds up to the whole (Adam: 2 float32 per parameter) and each
    holds its shard of it; plain data parallelism holds it all on every rank."""
    out = {}
    for shard in (False, True):
        m = mlp()
        d = fd.DistributedOptimizer(optim.Adam(m.param_groups(), lr=1e-3), shard_state=shard)
        m.flat.grad[:] = np.random.default_rng(RANK).standard_normal(m.n_params)
        d.step()
        out[shard] = d.local_state_nbytes()
    full = 2 * m.n_params * 4
    assert out[False] == full, (out[False], full)
    assert COMM.allreduce(out[True]) == full
    assert out[True] <= 2 * 4 * -(-m.n_params // SIZE), (out[True], full / SIZE)


def check_checkpoints_move_between_n_ranks_and_one_process():
    """N ranks (ZeRO) -> file -> one process, and one process -> file -> N ranks (ZeRO): each
    continuation equals one process training the 4 epochs through."""
    kw = dict(epochs=2, **FIT)
    ref = mlp(dropout=0.1)
    ref.fit(XTR, YTR, **{**kw, "epochs": 4})
    path = os.path.join(tempfile.gettempdir(), f"fusedops-mpi-{os.getppid()}.npz")
    m = mlp(dropout=0.1)
    m.fit(XTR, YTR, comm=COMM, shard_state=True, **kw)
    if RANK == 0:
        m.save(path)
    else:
        try:
            m.save(path)
        except RuntimeError as exc:
            assert "save the model on rank 0" in str(exc)
        else:
            raise AssertionError("a rank without the optimizer state saved a model")
    COMM.Barrier()
    one = MLP.load(path)
    one.fit(XTR, YTR, **kw)
    assert rel(one.flat.data, ref.flat.data) < TOL, rel(one.flat.data, ref.flat.data)
    COMM.Barrier()
    if RANK == 0:
        first = mlp(dropout=0.1)
        first.fit(XTR, YTR, **kw)
        first.save(path)
    COMM.Barrier()
    again = MLP.load(path)
    again.fit(XTR, YTR, comm=COMM, shard_state=True, **kw)
    same_on_every_rank(again.flat.data)
    assert rel(again.flat.data, ref.flat.data) < TOL, rel(again.flat.data, ref.flat.data)
    COMM.Barrier()
    if RANK == 0:
        os.remove(path)


def _flat_problem(seed=0):
    rng = np.random.default_rng(seed)
    flat, (w, b) = optim.flatten([rng.standard_normal((33, 7)).astype(np.float32),
                                  rng.standard_normal(7).astype(np.float32)])
    gflat, (dw, db) = optim.flatten([np.zeros((33, 7), np.float32), np.zeros(7, np.float32)])
    return flat, [w, b], gflat, [dw, db]


def _groups(ps):
    return [{"params": [ps[0]], "weight_decay": 1e-2}, {"params": [ps[1]]}]


def check_optimizer_state_dicts_and_buckets():
    """AMSGrad Adam: plain (tiny buckets) and ZeRO-1 give the steps of one process on the mean
    gradient; ZeRO's gathered state_dict equals plain's; a fresh ZeRO wrapper loaded from it
    takes the same next step; a one-process checkpoint goes into N ranks and back unchanged."""
    live = {}
    for shard, bucket in ((False, 64.0), (False, 1e-4), (True, 64.0)):
        flat, ps, gflat, gs = _flat_problem()
        d = fd.DistributedOptimizer(optim.Adam(_groups(ps), lr=1e-2, amsgrad=True),
                                    shard_state=shard, bucket_mb=bucket)
        for t in range(4):
            gflat[:] = np.random.default_rng([t, RANK]).standard_normal(gflat.size)
            d.step(gs)
        live[(shard, bucket)] = (flat, gflat, gs, d, d.state_dict())
    flat1, ps1, gflat1, gs1 = _flat_problem()
    one = optim.Adam(_groups(ps1), lr=1e-2, amsgrad=True)
    for t in range(4):
        gflat1[:] = sum(np.random.default_rng([t, r]).standard_normal(gflat1.size).astype(np.float32)
                        for r in range(SIZE))
        gflat1 /= SIZE
        one.step(gs1)
    plain, tiny, zero = live[(False, 64.0)], live[(False, 1e-4)], live[(True, 64.0)]
    np.testing.assert_array_equal(tiny[0], plain[0])  # 1e-4 MiB buckets: 26 Allreduce calls
    assert rel(plain[0], flat1) < 1e-6 and rel(zero[0], flat1) < 1e-6
    if RANK == 0:
        assert set(zero[4]) == set(one.state_dict()) == set(plain[4])
        for k, v in plain[4].items():
            if isinstance(v, str):
                assert zero[4][k] == v, k
            else:
                np.testing.assert_allclose(np.asarray(zero[4][k], float), np.asarray(v, float),
                                           rtol=1e-6, atol=1e-9, err_msg=k)
    else:
        assert zero[4] is None and plain[4] is None
    flat2, ps2, gflat2, gs2 = _flat_problem()
    flat2[:] = zero[0]
    d2 = fd.DistributedOptimizer(optim.Adam(_groups(ps2), lr=1.0), shard_state=True)
    d2.load_state_dict(zero[4] if RANK == 0 else None)
    assert d2.param_groups[0]["lr"] == 1e-2 and d2.param_groups[0]["amsgrad"]
    g = np.random.default_rng([9, RANK]).standard_normal(gflat2.size)
    gflat2[:], zero[1][:] = g, g
    d2.step(gs2)
    zero[3].step(zero[2])
    np.testing.assert_array_equal(flat2, zero[0])
    d3 = fd.DistributedOptimizer(optim.Adam(_groups(_flat_problem()[1]), lr=1.0), shard_state=True)
    d3.load_state_dict(one.state_dict() if RANK == 0 else None)
    back = d3.state_dict()
    if RANK == 0:
        for k, v in one.state_dict().items():
            np.testing.assert_array_equal(np.asarray(back[k]), np.asarray(v), err_msg=k)


def check_errors_are_agreed():
    """A rank with a bad gradient, a bad checkpoint or mismatched arrays: every rank raises
    the same error (no hang); a NaN gradient on one rank skips the step on every rank."""
    flat, ps, gflat, gs = _flat_problem()
    d = fd.DistributedOptimizer(optim.SGD(_groups(ps), lr=0.1, momentum=0.9), shard_state=True)
    bad = [gs[0][:-1] if RANK == SIZE - 1 else gs[0], gs[1]]
    try:
        d.step(bad)
    except ValueError as exc:
        assert str(exc).startswith(f"rank {SIZE - 1}: grads[0]"), str(exc)
    else:
        raise AssertionError("no error")
    before = flat.copy()
    gflat[:] = 1.0
    if RANK == 1:
        gflat[3] = np.nan
    assert d.step(gs, skip_if_nonfinite=True) is False
    np.testing.assert_array_equal(flat, before)
    gflat[:] = 1.0
    assert d.step(gs, skip_if_nonfinite=True) is True and not np.array_equal(flat, before)
    try:
        d.load_state_dict({"format": "nonsense"} if RANK == 0 else None)
    except ValueError as exc:
        assert str(exc).startswith("rank 0:"), str(exc)
    else:
        raise AssertionError("no error")
    try:
        fd.broadcast_parameters([np.zeros(3 + (RANK == 1), np.float32)])
    except ValueError as exc:
        assert "arrays differ from rank 0's" in str(exc), str(exc)
    else:
        raise AssertionError("no error")
    mine = [np.full((4, 3), RANK, np.float64), np.full(5, -RANK, np.float32)]
    fd.broadcast_parameters(mine, root=SIZE - 1)
    assert np.all(mine[0] == SIZE - 1) and np.all(mine[1] == 1 - SIZE)


def check_gpu_arrays_are_staged():
    """Device arrays (the CUDA simulator's) through a non-CUDA-aware MPI: staged via the host,
    the same result as host arrays."""
    from numba import cuda

    results = []
    for device in (False, True):
        flat, ps, gflat, gs = _flat_problem()
        gflat[:] = np.random.default_rng(RANK).standard_normal(gflat.size)
        if device:
            dflat, dgflat = cuda.to_device(flat), cuda.to_device(gflat)
            ps, gs = [dflat[:231].reshape(33, 7), dflat[231:]], [dgflat[:231].reshape(33, 7), dgflat[231:]]
        for shard in (False, True):
            # backend "cuda" for both: host arrays then go through the same (simulated) kernel
            d = fd.DistributedOptimizer(optim.Adam(_groups(ps), lr=1e-2, backend="cuda"),
                                        shard_state=shard)
            d.step(gs)
        results.append(dflat.copy_to_host() if device else flat)
    np.testing.assert_array_equal(results[1], results[0])


CHECKS = {name[6:]: fn for name, fn in globals().items() if name.startswith("check_")}

if __name__ == "__main__":
    names = sys.argv[1:] or list(CHECKS)
    with fd.abort_on_error(COMM):
        for name in names:
            CHECKS[name]()
            COMM.Barrier()
            if RANK == 0:
                print(f"ok {name}", flush=True)
