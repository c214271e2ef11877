"""Same bits in every process: every CPU kernel of every family (each parallel kernel and its
serial twin, in every float32 specialization tools/bitcheck.py reaches: all optimizer options,
dropout with and without a mask and with start=, Philox, batch norm train / eval / backward
and its synchronized pieces, the stream probe, the low-bit steps on 8-bit state with float32 and
float16 parameters, quantize / dequantize)
computes the same bits when freshly compiled in one process and when loaded from Numba's cache
in another. Kernels compiled with
flags that let LLVM choose (fastmath contract / reassoc) failed this: the in-process compile and
the cached object code fused differently (1 ulp in 4,510 of 65,537 SGD elements).

Compiling is the cost (~55 s of CPU here for float32, twice that with float64, which
`python tools/bitcheck.py numba` covers by hand): two processes compile disjoint families at the
same time (both cores, while the test session waits), then one process loads them all.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

TOOLS = Path(__file__).resolve().parent.parent / "tools"
SPLIT = (["optim", "batchnorm"], ["dropout", "lowbit"])  # about even compile times

SCRIPT = """
import json, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
import bitcheck
from fusedops import ops
from fusedops._threads import forced
from fusedops.kernels.cpu import (batchnorm, batchnorm_sync, dropout, lowbit, optim, philox,
                                  stream)

SIZES, F32 = [0, 1, 7, 97, 100_003], (np.float32,)
BN = [(2, 3), (300, 40), (130, 5, 7)]
CASES = {  # family -> (its bitcheck cases, the kernel modules they compile)
    "optim": (lambda: {**bitcheck.optim_cases(ops, "numba", SIZES, F32),
                       **bitcheck.nonfinite_cases("numba", SIZES[1:]),
                       **bitcheck.stream_cases(ops, "numba", SIZES, F32)}, (optim, stream)),
    "dropout": (lambda: {**bitcheck.dropout_cases(ops, "numba", [0, 1, 9, 1027, 5000], F32),
                         **bitcheck.dropout_start_cases(ops, "numba", [9, 5000])},
                (dropout, philox)),
    "batchnorm": (lambda: {**bitcheck.batchnorm_cases(ops, "numba", BN, F32),
                           **bitcheck.batchnorm_sync_cases(ops, "numba", BN, F32)},
                  (batchnorm, batchnorm_sync)),
    "lowbit": (lambda: bitcheck.lowbit_cases(ops, "numba", [1, 300, 5000]), (lowbit,)),
}
digests, hits, misses, unused, seen = {}, 0, 0, [], set()
for family in sys.argv[2:]:
    cases, modules = CASES[family]
    for mode in ("serial", "parallel"):  # every kernel both ways
        with forced(mode):
            digests.update({f"{mode}.{k}": v for k, v in cases().items()})
    for mod in modules:
        for name, k in vars(mod).items():
            for kern in (k, getattr(k, "fusedops_serial", None)):
                if getattr(kern, "fusedops_options", None) is None or id(kern) in seen:
                    continue  # not a kernel, or one imported from a module already counted
                seen.add(id(kern))
                if not kern.signatures:
                    unused.append(f"{mod.__name__}.{name}")
                hits += sum(kern.stats.cache_hits.values())
                misses += sum(kern.stats.cache_misses.values())
print(json.dumps({"digests": digests, "hits": hits, "misses": misses, "unused": unused}))
"""


def _start(cache, families):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache))
    return subprocess.Popen([sys.executable, "-c", SCRIPT, str(TOOLS), *families], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _result(proc):
    try:
        out, err = proc.communicate(timeout=900)
    finally:
        proc.kill()
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out)


def test_cached_and_fresh_kernels_give_the_same_bits(tmp_path):
    procs = [_start(tmp_path, families) for families in SPLIT]  # an empty cache: compiled here
    parts = [_result(p) for p in procs]
    fresh = {"digests": {k: v for p in parts for k, v in p["digests"].items()},
             "hits": sum(p["hits"] for p in parts), "misses": sum(p["misses"] for p in parts),
             "unused": [u for p in parts for u in p["unused"]]}
    cached = _result(_start(tmp_path, [f for families in SPLIT for f in families]))
    assert fresh["unused"] == [] and cached["unused"] == []
    assert fresh["hits"] == 0 and fresh["misses"] > 40
    assert cached["misses"] == 0 and cached["hits"] == fresh["misses"]
    assert fresh["digests"].keys() == cached["digests"].keys()
    assert len(fresh["digests"]) > 500
    differ = sorted(k for k in fresh["digests"] if fresh["digests"][k] != cached["digests"][k])
    assert not differ, f"{len(differ)} outputs differ, e.g. {differ[:10]}"
