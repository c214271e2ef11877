"""Data parallelism over MPI (mpi4py): every rank runs the same script on its share of each
batch; gradients are combined with collectives on the flat buffers fusedops already keeps.

    mpiexec -n 4 python -m mpi4py train.py           # or: mpiexec -n 4 fusedops train ...

    from mpi4py import MPI
    import fusedops.distributed as fd
    opt = fd.DistributedOptimizer(fusedops.optim.Adam(params, lr=1e-3), shard_state=True)
    opt.step(grads)                                   # Allreduce (or ZeRO-1), then one fused step
    model.fit(X, y, epochs=10, batch_size=256, comm=MPI.COMM_WORLD)   # batch_size is global

Needs the `mpi` extra (mpi4py + the mpich wheel, which brings mpiexec). This package is the
only part of fusedops that imports mpi4py; nothing imports it at `import fusedops`.
"""
from ._comm import abort_on_error, agree, agreed, cuda_aware, is_agreed, resolve_comm
from .optimizer import DistributedOptimizer
from .parameters import broadcast_parameters
from .training import MPIContext

__all__ = ["DistributedOptimizer", "broadcast_parameters", "abort_on_error", "agree", "agreed",
           "is_agreed", "cuda_aware", "resolve_comm", "training_context"]


def training_context(comm, shard_state=False) -> MPIContext:
    """The context fusedops.nn's fit loop runs in for `fit(..., comm=comm)` (the core reaches
    this adapter only through it)."""
    return MPIContext(comm, shard_state)
