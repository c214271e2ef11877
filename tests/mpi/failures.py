"""Launched by test_distributed.py: `mpiexec -n N python tests/mpi/failures.py MODE`.

nan:   the last rank passes X with a NaN; every rank must raise the same ValueError (and exit
       non-zero) instead of the others waiting in a collective.
crash: rank 1 fails alone in the middle of training; the job must end through MPI_Abort.
sigint: rank 1 alone gets a Ctrl-C (SIGINT) inside its 3rd step; every rank must stop after
       that step with KeyboardInterrupt (no abort), with the same weights and 3 steps taken.
       `sigint shard` with shard_state=True: rank 0 also holds the whole state then.
"""
import hashlib
import os
import signal
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
if sys.argv[1] in ("crash", "sigint"):
    calls, value_and_grad = [0], model.loss_fn.value_and_grad

    def failing(*args):
        calls[0] += 1
        if comm.rank == 1 and calls[0] == 3:
            if sys.argv[1] == "sigint":
                os.kill(os.getpid(), signal.SIGINT)  # mid-step: before backward and the update
            else:
                raise MemoryError("simulated failure on rank 1 alone")
        return value_and_grad(*args)

    model.loss_fn.value_and_grad = failing
try:
    model.fit(X, y, epochs=3, batch_size=32, comm=comm, shard_state=sys.argv[1:] == ["sigint", "shard"])
except KeyboardInterrupt:
    digest = hashlib.blake2b(model.flat.data.tobytes(), digest_size=8).hexdigest()
    line = (f"rank {comm.rank} interrupted: epochs {len(model.history.epoch)} "
            f"interrupted {model.history.interrupted} weights {digest}")
    if comm.rank == 0:  # after ZeRO-1 too, rank 0 holds every parameter's state
        sd = model.optimizer.state_dict()
        sq = [sd[k] for k in sd if k.endswith(".exp_avg_sq")]
        line += f"; state: steps {sd['state.0.step']} filled {all(np.all(v > 0) for v in sq)}"
    sys.stdout.flush()
    os.write(1, (line + "\n").encode())  # one write: mpiexec does not splice the ranks in it
    sys.exit(0)
print(f"rank {comm.rank} finished", flush=True)
