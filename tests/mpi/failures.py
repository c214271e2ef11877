"""Launched by test_distributed.py: `mpiexec -n N python tests/mpi/failures.py MODE`.

nan:   the last rank passes X with a NaN; every rank must raise the same ValueError (and exit
       non-zero) instead of the others waiting in a collective.
crash: rank 1 fails alone in the middle of training; the job must end through MPI_Abort.
"""
import sys

import numpy as np
from mpi4py import MPI

from fusedops.nn import MLP

comm = MPI.COMM_WORLD
rng = np.random.default_rng(0)
X = rng.standard_normal((300, 8)).astype(np.float32)
y = (X[:, 0] > 0).astype(np.int64)
model = MLP([8, 16, 2], seed=0)
if sys.argv[1] == "nan" and comm.rank == comm.size - 1:
    X = X.copy()
    X[7, 2] = np.nan
if sys.argv[1] == "crash":
    calls, value_and_grad = [0], model.loss_fn.value_and_grad

    def failing(*args):
        calls[0] += 1
        if comm.rank == 1 and calls[0] == 3:
            raise MemoryError("simulated failure on rank 1 alone")
        return value_and_grad(*args)

    model.loss_fn.value_and_grad = failing
model.fit(X, y, epochs=3, batch_size=32, comm=comm)
print(f"rank {comm.rank} finished", flush=True)
