"""model.fit(..., comm=...): the MPI context of fusedops.nn's training loop.

Every rank holds the same data and draws the same shuffled order; each global batch of
`batch_size` rows is split into contiguous parts, one per rank (sizes differ by at most one
row). A rank's step, and its collectives:
- forward on its rows, with each Dropout's mask (and an autoencoder's noise) taken at the
  rows' place in the whole batch (the Philox `start`), and each BatchNorm1d synchronized: one
  Allgather of the per-channel (count, mean, M2) of every part, merged in rank order;
- the loss gradient scaled by rows/global rows, so the ranks' gradients add up to the whole
  batch's; backward (synchronized BN: one Allreduce of its 2 per-channel sums);
- DistributedOptimizer(reduce="sum").step(): see fusedops.distributed.optimizer.
Per epoch, the loss and accuracy sums (and the validation numbers, each rank evaluating a part
of the validation rows) are reduced on rank 0 and broadcast, so the early-stopping and
restore-best decisions are bitwise the same on every rank.
"""
from __future__ import annotations

import contextlib
import hashlib
import os

import numpy as np

from .. import ops
from ..checks import check_bool
from ..nn.threads import auto_threads
from ._comm import _AGREED, MPI, abort_on_error, agreed, is_agreed, resolve_comm
from .optimizer import DistributedOptimizer

__all__ = ["MPIContext", "SyncBatchNorm", "part"]

SAMPLE_ROWS = 4096  # rows hashed per array when checking that every rank has the same data


def part(total: int, rank: int, size: int) -> tuple[int, int]:
    """Rows [lo, hi) of `total` that `rank` of `size` trains on (the first total % size ranks
    get one more)."""
    base, extra = divmod(total, size)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (rank < extra)


def _fingerprint(arrays) -> str:
    """A digest of the arrays' shapes, dtypes and a fixed sample of their rows."""
    h = hashlib.blake2b(digest_size=16)
    for a in arrays:
        if a is None:
            h.update(b"-")
            continue
        h.update(repr((a.shape, a.dtype.str)).encode())
        rows = a if len(a) <= SAMPLE_ROWS else a[np.linspace(0, len(a) - 1, SAMPLE_ROWS).astype(np.int64)]
        h.update(np.ascontiguousarray(rows).tobytes())
    return h.hexdigest()


def _local_ranks(comm) -> int:
    """Ranks on this host, from the launcher's environment (no collective): MPICH's Hydra sets
    MPI_LOCALNRANKS, Open MPI OMPI_COMM_WORLD_LOCAL_SIZE; else assume one host."""
    for var in ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE"):
        if os.environ.get(var, "").isdigit():
            return max(1, int(os.environ[var]))
    return comm.Get_size()


class SyncBatchNorm:
    """The collectives of a synchronized BatchNorm1d (its `sync` attribute)."""

    def __init__(self, comm):
        self.comm, self.size = comm, comm.Get_size()

    def stats(self, count, mean, m2):
        """One Allgather of every part's (count, mean, M2), merged in rank order."""
        c = mean.size
        mine = np.concatenate([[float(count)], mean, m2])
        every = np.empty((self.size, 1 + 2 * c))
        self.comm.Allgather(mine, every)
        return ops.batchnorm_merge_stats(every[:, 0].astype(np.int64), every[:, 1:1 + c],
                                         every[:, 1 + c:])

    def sums(self, sum_dy, sum_dy_xmu):
        """One Allreduce of both per-channel sums."""
        buf = np.concatenate([sum_dy, sum_dy_xmu])
        self.comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        return buf[:sum_dy.size], buf[sum_dy.size:]


class MPIContext:
    """fusedops.nn's training-loop context for a communicator (see the module docstring)."""

    def __init__(self, comm, shard_state):
        self.comm = resolve_comm(comm)
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.root = self.rank == 0
        self.shard_state = shard_state
        self.dist = None

    @contextlib.contextmanager
    def checks(self):
        with agreed(self.comm):
            self.shard_state = check_bool("shard_state", self.shard_state)
            yield

    def threads(self, model, threads):
        """fit's choice for small models (1), else the host's cores shared by its ranks."""
        chosen = auto_threads(model, threads)
        if chosen is None:
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
            chosen = max(1, (cores or 1) // _local_ranks(self.comm))
        return chosen

    @contextlib.contextmanager
    def training(self, model, X, y, val):
        mine = _fingerprint([X, y, *(val or ())])
        prints = self.comm.allgather(mine)
        with agreed(self.comm):
            if mine != prints[0]:
                raise ValueError("the training data differ from rank 0's: every rank passes the "
                                 "same X, y and validation data (each trains on its part of "
                                 "every batch)")
        self.dist = DistributedOptimizer(model.optimizer, comm=self.comm,
                                         shard_state=self.shard_state, reduce="sum")
        sync = SyncBatchNorm(self.comm)
        for layer in model._bn_layers():
            layer.sync = sync
        try:
            stopped = None
            with abort_on_error(self.comm):
                try:
                    yield
                except KeyboardInterrupt as exc:  # agreed (interrupt_point): every rank is here
                    if not is_agreed(exc):
                        raise
                    stopped = exc
                if self.shard_state:  # rank 0 gathers the whole state: save() there is complete
                    sd = self.dist.state_dict(root=0)
                    if self.root:
                        model.optimizer.load_state_dict(sd)
            model._state_on_root = self.shard_state and not self.root
            if stopped is not None:
                raise stopped
        finally:
            for layer in model._bn_layers():
                layer.sync = None
            model._set_batch_part(None)

    def step(self, model, X, y, idx, penalty):
        total = len(idx)
        lo, hi = part(total, self.rank, self.size)
        rows = idx[lo:hi]
        xb, yb = model.xp.asarray(X[rows]), model.xp.asarray(y[rows])
        model._set_batch_part((lo, total))
        out = model.net.forward(model._train_input(xb))
        if hi > lo:
            loss, grad = model.loss_fn.value_and_grad(out, yb)
            grad *= grad.dtype.type((hi - lo) / total)  # this part's share of the batch mean
        else:  # more ranks than rows: this rank adds nothing but takes part in every collective
            loss, grad = 0.0, model.xp.zeros_like(out)
        model.net.backward(grad)
        self.dist.step()
        return (loss + penalty) * (hi - lo), out, yb  # the ranks' parts add up to the batch's

    def _sum(self, values) -> np.ndarray:
        """Sums over the ranks, reduced on rank 0 and broadcast: the same bits everywhere."""
        buf = np.array(values, np.float64)
        if self.root:
            self.comm.Reduce(MPI.IN_PLACE, buf, op=MPI.SUM, root=0)
        else:
            self.comm.Reduce(buf, None, op=MPI.SUM, root=0)
        self.comm.Bcast(buf, root=0)
        return buf

    def totals(self, loss_sum, correct):
        return tuple(float(v) for v in self._sum([float(loss_sum), float(correct)]))

    def any(self, flag: bool) -> bool:
        """True on every rank when it is on any (a callback's stop: no rank trains on alone)."""
        return bool(self.comm.allreduce(bool(flag), op=MPI.LOR))

    def interrupt_point(self, signalled: bool) -> None:
        """A step boundary of fit: one 4-byte Allreduce MAX of the ranks' Ctrl-C flags; when
        any rank was signalled (mpiexec forwards SIGINT to every rank, but they see it at
        different steps) every rank raises the same agreed KeyboardInterrupt after the same
        step, so the weights and state stay equal across ranks and nobody aborts."""
        flag = np.array([int(bool(signalled))], np.int32)
        self.comm.Allreduce(MPI.IN_PLACE, flag, op=MPI.MAX)
        if flag[0]:
            exc = KeyboardInterrupt()
            setattr(exc, _AGREED, True)
            raise exc

    def evaluate(self, model, X, y):
        lo, hi = part(len(X), self.rank, self.size)
        loss, acc = 0.0, 0.0
        if hi > lo:
            ev = model.evaluate(X[lo:hi], y[lo:hi])
            loss, acc = ev["loss"] * (hi - lo), ev.get("accuracy", 0.0) * (hi - lo)
        loss, acc = self._sum([loss, acc])
        res = {"loss": float(loss) / len(X)}
        if model.has_accuracy:
            res["accuracy"] = float(acc) / len(X)
        return res
