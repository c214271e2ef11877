"""DistributedOptimizer: data-parallel steps of any fusedops.optim optimizer over MPI.

Collectives of one step, plain (`shard_state=False`):
  1. Allreduce MAX of a 4-byte flag: did any rank's local checks fail (every rank then raises)
  2. per flat gradient buffer, Allreduce SUM in place (in buckets of `bucket_mb`)
  3. with skip_if_nonfinite: Allreduce MAX of a flag (one NaN anywhere skips the step everywhere)
  then the wrapped optimizer's fused step on the whole buffer, every rank alike.
ZeRO-1 (`shard_state=True`): 1; per flat buffer a Reduce_scatter of the gradient; 3; the fused
step on this rank's shard; per flat buffer an in-place Allgatherv of the parameters.
"""
from __future__ import annotations

import numpy as np

from .. import optim
from ..checks import check_bool, check_int
from ._comm import MPI, Staged, agreed, all_finite, resolve_comm
from ._layout import runs
from ._zero import ZeroShards
from .parameters import bcast_tree, broadcast_parameters

__all__ = ["DistributedOptimizer"]

REDUCE = ("mean", "sum")


class DistributedOptimizer:
    """Wrap `optimizer` (any fusedops.optim optimizer) for data-parallel training.

    Construction is collective: every rank starts from rank 0's parameters, optimizer state
    and hyperparameters (sharded with shard_state=True; the wrapped optimizer then keeps no
    state of its own). `step(grads)` combines the gradients of all ranks and takes one fused
    step: reduce="mean" averages them (each rank's loss a mean over equally many rows),
    reduce="sum" adds them (each rank scaled its own share, e.g. by rows/global rows, as
    model.fit does for uneven splits). `param_groups` and `lr` are the wrapped optimizer's.
    GPU arrays are staged through host memory unless MPI is CUDA-aware (see cuda_aware()).
    """

    def __init__(self, optimizer, *, comm=None, shard_state: bool = False, reduce: str = "mean",
                 bucket_mb: float = 64.0):
        self.comm = resolve_comm(comm)
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        with agreed(self.comm):  # a rank with other arguments must not reach a collective alone
            if not isinstance(optimizer, optim._Optimizer):
                raise TypeError(f"optimizer must be a fusedops.optim optimizer; got "
                                f"{type(optimizer).__name__}")
            if reduce not in REDUCE:
                raise ValueError(f"reduce must be one of {REDUCE}; got {reduce!r}")
            if isinstance(bucket_mb, bool) or not isinstance(bucket_mb, (int, float)) or not bucket_mb > 0:
                raise ValueError(f"bucket_mb must be a positive number; got {bucket_mb!r}")
            self.shard_state = check_bool("shard_state", shard_state)
            if self.shard_state and optimizer.low_bit_options() is not None:
                raise ValueError(
                    "shard_state=True (ZeRO-1) needs float32 / float64 optimizer state and params; "
                    f"this optimizer runs the low-bit path ({optimizer.low_bit_options()}). Its "
                    "8-bit state is quantized in 256-element blocks per parameter tensor, and a "
                    "shard boundary inside a block would change the rounding and the checkpoint. "
                    "Use shard_state=False: the allreduce path steps low-bit state (8-bit Adam "
                    "state is already 4x smaller than float32)")
        self.optimizer, self.reduce = optimizer, reduce
        self.bucket_bytes = max(1, int(bucket_mb * 2**20))
        broadcast_parameters(optimizer.param_arrays(), comm=self.comm)
        self._zero = None
        with agreed(self.comm):
            if self.shard_state:
                self._zero = ZeroShards(optimizer, self.comm)
        self._adopt_root_state()
        self._runs_key, self._runs = None, None

    # ------------------------------------------------------------------ the wrapped optimizer
    @property
    def param_groups(self):
        return self.optimizer.param_groups

    @property
    def lr(self) -> float:
        return self.optimizer.lr

    @lr.setter
    def lr(self, value):
        self.optimizer.lr = value

    def zero_grad(self, set_to_none: bool = False) -> None:
        self.optimizer.zero_grad(set_to_none)

    # ------------------------------------------------------------------ a step
    def step(self, grads=None, *, skip_if_nonfinite: bool = False) -> bool:
        """Combine the gradients of all ranks, then one fused step (collective). `grads` as in
        the wrapped optimizer's step (aligned with its parameters, or None to read `.grad`).
        skip_if_nonfinite: a NaN/Inf in the combined gradients skips the step on every rank
        (returns False). A rank whose gradients fail the checks makes every rank raise."""
        with agreed(self.comm):
            if self._zero is not None:  # no plan on the wrapped optimizer: it holds no state
                grads = self.optimizer.resolve_grads(grads)
                self._zero.check(grads)
            else:
                grads = self.optimizer.check_step(grads)
                flats = self._grad_runs(grads)
        if self._zero is not None:
            self._zero.reduce_scatter(self.reduce == "mean")
            if skip_if_nonfinite and self._any(self._zero.nonfinite()):
                return False
            self._zero.step_and_gather()
            return True
        for flat in flats:
            self._allreduce(flat)
        if skip_if_nonfinite and self._any(not all(all_finite(f) for f in flats)):
            return False
        return self.optimizer.step(grads)

    def _grad_runs(self, grads):
        key = tuple(map(id, grads))
        if key != self._runs_key:
            live = [g for g in grads if g is not None]
            self._runs, self._runs_key = [flat for _, _, flat in runs(live, "grads")], key
        return self._runs

    def _allreduce(self, flat) -> None:
        """In-place Allreduce SUM of one flat buffer, bucket by bucket (then / size for mean)."""
        st = Staged(flat)
        buf = st.buf
        step = max(1, self.bucket_bytes // buf.dtype.itemsize)
        for lo in range(0, buf.shape[0], step):
            self.comm.Allreduce(MPI.IN_PLACE, buf[lo:lo + step], op=MPI.SUM)
        if self.reduce == "mean":
            buf /= self.size
        st.finish()

    def _any(self, local: bool) -> bool:
        flag = np.array([int(bool(local))], np.int32)
        self.comm.Allreduce(MPI.IN_PLACE, flag, op=MPI.MAX)
        return bool(flag[0])

    # ------------------------------------------------------------------ state
    def local_state_nbytes(self) -> int:
        """Bytes of optimizer state this rank holds (about 1/size of it with shard_state)."""
        if self._zero is not None:
            return self._zero.nbytes()
        return self.optimizer.state_nbytes()

    def state_dict(self, *, root: int = 0):
        """Collective: the wrapped optimizer's state_dict as one process would hold it (the
        format of fusedops.optim; a single process loads it) on `root`, None on other ranks."""
        root = check_int("root", root, lo=0, hi=self.size - 1)
        if self._zero is not None:
            return self._zero.state_dict(root)
        return self.optimizer.state_dict() if self.rank == root else None

    def load_state_dict(self, state_dict, *, root: int = 0) -> None:
        """Collective: adopt the root's state_dict (a single-process checkpoint, or one from
        state_dict()); the other ranks' argument is ignored (pass None). Checked on the root
        first: a bad checkpoint makes every rank raise and changes nothing."""
        root = check_int("root", root, lo=0, hi=self.size - 1)
        meta = None
        with agreed(self.comm):
            if self.rank == root:
                if self._zero is not None:
                    meta = self._zero.check_checkpoint(state_dict)
                else:
                    self.optimizer.load_state_dict(state_dict)
        self._load_from_root(meta, root)

    def _adopt_root_state(self) -> None:
        meta = None
        with agreed(self.comm):
            if self.rank == 0 and self._zero is not None:
                meta = self._zero.check_checkpoint(self.optimizer.state_dict())
        self._load_from_root(meta, 0)

    def _load_from_root(self, meta, root) -> None:
        if self._zero is not None:
            shared = self.comm.bcast(None if meta is None else
                                     {k: v for k, v in meta.items() if k != "sd"}, root=root)
            self._zero.load(meta if self.rank == root else shared, root)
            return
        sd = bcast_tree(self.optimizer.state_dict() if self.rank == root else None, self.comm, root)
        with agreed(self.comm):
            if self.rank != root:
                self.optimizer.load_state_dict(sd)
