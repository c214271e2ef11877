"""Data parallelism over MPI: Allreduce of a flat buffer and time per epoch on 1 and N ranks.

Run it under MPI (`make bench-mpi`, or by hand):

    mpiexec -n 2 .venv/bin/python -m pytest benchmarks/test_distributed.py --benchmark-only \
        --benchmark-group-by=group --benchmark-columns=median,iqr,min,rounds

Every rank runs the same tests and the same fixed number of rounds (pedantic: the collectives
must match); only rank 0 reports and saves (benchmarks/conftest.py). Without mpiexec the
suite skips. Groups:
- allreduce-<n>: the gradient reduction of DistributedOptimizer (its in-place, bucketed
  Allreduce of one flat float32 buffer of n elements) against raw mpi4py `Allreduce(IN_PLACE)`
  on the same buffer. extra_info: algorithm bandwidth (bytes / time) and bus bandwidth
  (x 2(N-1)/N, the NCCL-tests convention: the bytes each rank moves).
- epoch-<model>: one epoch of fit() on 1 rank (rank 0 alone, the others asleep) and on N ranks
  (plain and ZeRO-1) with the same global batch: the digits MLP (64-256-256-10, batch 64) and a
  25.2M-parameter MLP (1024-4096-4096-1024, batch 512, 2048 synthetic rows). extra_info:
  `comm_share`, the fraction of the epoch rank 0 spends inside MPI calls. fit's setup
  (broadcasting rank 0's parameters and optimizer state) is inside the timed epoch, as a user
  calling fit(epochs=1) sees it.
FUSEDOPS_BENCH_SIZES=1e4,1e6 sets the Allreduce sizes; FUSEDOPS_BENCH_MLP=digits picks one model.
"""
from __future__ import annotations

import os
import time

import numpy as np
import pytest
from conftest import bench_sizes

MPI = pytest.importorskip("mpi4py.MPI", reason="fusedops[mpi] is not installed")
WORLD = MPI.COMM_WORLD
if WORLD.Get_size() < 2:
    pytest.skip("run under mpiexec -n N (N >= 2): see the module docstring", allow_module_level=True)

import fusedops.distributed as fd  # noqa: E402
from fusedops import optim  # noqa: E402
from fusedops.nn import MLP  # noqa: E402

RANK, SIZE = WORLD.Get_rank(), WORLD.Get_size()
MODELS = {"digits": ([64, 256, 256, 10], 64, None), "25M": ([1024, 4096, 4096, 1024], 512, 2048)}
SELECTED = [m for m in os.environ.get("FUSEDOPS_BENCH_MLP", "digits,25M").split(",") if m]
ROUNDS = {"digits": 5, "25M": 3}


class TimedComm(MPI.Intracomm):
    """COMM_WORLD, adding up the seconds rank 0 spends in the collectives fit uses."""

    spent = 0.0


def _timed(name):
    def call(self, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return getattr(MPI.Intracomm, name)(self, *args, **kwargs)
        finally:
            TimedComm.spent += time.perf_counter() - t0
    return call


for _name in ("Allreduce", "Reduce_scatter", "Allgatherv", "Allgather", "Bcast", "Reduce",
              "Scatterv", "Gatherv", "allgather", "bcast"):
    setattr(TimedComm, _name, _timed(_name))


def _idle_others(work):
    """Run `work` on rank 0 only; the other ranks sleep (no spinning: rank 0 has the cores)."""
    if RANK == 0:
        work()
    req = WORLD.Ibarrier()
    while not req.Test():
        time.sleep(1e-3)


def _gbps(benchmark, nbytes):
    t = benchmark.stats.stats.median
    benchmark.extra_info.update(bytes=nbytes, algbw_gbps=round(nbytes / t / 1e9, 3),
                                busbw_gbps=round(nbytes / t / 1e9 * 2 * (SIZE - 1) / SIZE, 3))


@pytest.mark.parametrize("n", bench_sizes([10_000, 1_000_000, 25_000_000]))
@pytest.mark.parametrize("who", ["fusedops", "mpi4py"])
def test_allreduce(benchmark, who, n):
    buf = np.zeros(n, np.float32)  # zeros stay zeros: every round adds the same values
    _, (view,) = optim.flatten([buf])
    opt = fd.DistributedOptimizer(optim.SGD([view], lr=0.0), reduce="sum")
    check = np.full(n, RANK + 1, np.float32)
    opt._allreduce(check) if who == "fusedops" else WORLD.Allreduce(MPI.IN_PLACE, check)
    assert np.all(check == SIZE * (SIZE + 1) / 2)  # correctness once, outside the timing
    if who == "fusedops":
        run = lambda: opt._allreduce(buf)  # noqa: E731 - the step's reduction of a flat buffer
    else:
        run = lambda: WORLD.Allreduce(MPI.IN_PLACE, buf)  # noqa: E731
    benchmark.group = f"allreduce-{n}"
    rounds = max(3, min(200, int(2e8 // (4 * n))))
    benchmark.pedantic(run, rounds=rounds, iterations=1, warmup_rounds=1)
    _gbps(benchmark, 4 * n)


def _data(model):
    sizes, batch, rows = MODELS[model]
    if rows is None:
        from fusedops.data import load_digits

        X, _, y, _ = load_digits()
        return X, y, batch
    rng = np.random.default_rng(0)
    X = rng.standard_normal((rows, sizes[0]), dtype=np.float32)
    return X, rng.integers(0, sizes[-1], rows), batch


@pytest.mark.parametrize("model", SELECTED)
@pytest.mark.parametrize("how", ["1 rank", "N ranks", "N ranks ZeRO-1"])
def test_epoch(benchmark, model, how):
    X, y, batch = _data(model)
    m = MLP(MODELS[model][0], seed=0)
    comm = None if how == "1 rank" else TimedComm(WORLD)
    kw = dict(batch_size=batch, lr=1e-3, comm=comm, shard_state=how.endswith("ZeRO-1"))
    if comm is None:
        kw.pop("shard_state")
    epoch = lambda: m.fit(X, y, epochs=1, **kw)  # noqa: E731
    benchmark.group = f"epoch-{model}"
    benchmark.name = f"{how} ({SIZE} ranks)" if how != "1 rank" else how
    if comm is None:  # rank 0 trains alone; the others only take part in the test's pace
        m.fit(X, y, epochs=1, **kw) if RANK == 0 else None
        benchmark.pedantic(lambda: epoch() if RANK == 0 else None, rounds=ROUNDS[model], iterations=1)
        _idle_others(lambda: None)
        return
    epoch()  # warm-up: JIT, first-touch of the optimizer state
    TimedComm.spent = 0.0
    benchmark.pedantic(epoch, rounds=ROUNDS[model], iterations=1)
    total = benchmark.stats.stats.total if RANK == 0 else 1.0
    benchmark.extra_info["comm_share"] = round(TimedComm.spent / total, 3)
    benchmark.extra_info["params"] = m.n_params
