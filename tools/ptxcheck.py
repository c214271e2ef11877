"""Compile every CUDA kernel to sm_90 PTX (no GPU needed) and summarize its instructions.

    pip install "cuda-toolkit[nvrtc,nvvm]==13.*"     # NVVM and NVRTC (in the test extra)
    python tools/ptxcheck.py > a.json
    python tools/ptxcheck.py --compare a.json b.json

For each kernel specialization (float32 and float64, every optional buffer None or an array)
it records a hash of the PTX with comments and the kernel's mangled names stripped, and the
count of each opcode; --compare reports specializations whose PTX or instruction mix differ.
"""
from __future__ import annotations

import collections
import hashlib
import json
import re
import sys


def _signatures():
    from numba import types as T

    from fusedops.kernels.cuda import batchnorm as B
    from fusedops.kernels.cuda import batchnorm_sync as BS
    from fusedops.kernels.cuda import dropout as D
    from fusedops.kernels.cuda import optim as O
    from fusedops.kernels.cuda import philox as P
    from fusedops.kernels.cuda import stream as S

    i64, u64, f64, b = T.int64, T.uint64, T.float64, T.boolean
    none = T.none
    yield "philox", P._philox_kernel, (T.uint32[::1],) * 3
    for ft in ("float32", "float64"):
        f = getattr(T, ft)
        a, a2, p2 = f[::1], f[:, ::1], T.float64[:, ::1]
        m = T.uint8[::1]
        words = (u64, u64, u64, u64, u64, i64)
        start = (i64, i64)  # the stream index's Philox block and word
        for h in (none, a):
            yield f"sgd.{ft}.{h}", O._sgd_kernel, (a, h, a, f, f, b, f, f, f)
            for ga in (none, a):
                yield f"rmsprop.{ft}.{h}.{ga}", O._rmsprop_kernel, (a, a, h, ga, a, *(f,) * 9)
            yield f"adam.{ft}.{h}", O._adam_kernel, (a, a, a, h, a, *(f,) * 12)
        yield f"adagrad.{ft}", O._adagrad_kernel, (a, a, a, *(f,) * 6)
        yield f"nonfinite.{ft}", O._nonfinite_kernel, (i64[::1], a)
        for mk in (m, none):
            yield f"dropout.fwd.{ft}.{mk}", D._forward_kernel, (a, mk, a, *words, f, *start)
        yield f"dropout.bwd.{ft}", D._backward_kernel, (a, a, m, f)
        yield f"dropout.scale.{ft}", D._scale_kernel, (a, a, f)
        yield f"bn.partials.{ft}", B._stats_partials_kernel, (p2, p2, a2, i64)
        yield f"bn.combine.{ft}", B._stats_combine_kernel, (
            a, a, a, a, a, a, a, p2, p2, a, a, i64, i64, i64, f64, f64, b, b, b)
        yield f"bn.eval.{ft}", B._eval_stats_kernel, (a, a, a, a, a, a, a, a, a, i64, f64, b, b)
        yield f"bn.normalize.{ft}", B._normalize_kernel, (a2, a2, a, a, a)
        yield f"bn.grad_partials.{ft}", B._grad_partials_kernel, (p2, p2, a2, a2, a, i64, i64)
        yield f"bn.grad_combine.{ft}", B._grad_combine_kernel, (
            a, a, a, a, a, a, p2, p2, a, a, a, i64, f64, b, b)
        yield f"bn.grad_input.{ft}", B._grad_input_kernel, (a2, a2, a2, a, a, a, a)
        yield f"stream.copy.{ft}", S._copy_kernel, (a, a)
        yield f"stream.triad.{ft}", S._triad_kernel, (a, a, a, f)
    yield "dropout.mask", D._mask_kernel, (T.uint8[::1], i64, *(u64,) * 5, i64, i64, i64)
    p1, p2 = T.float64[::1], T.float64[:, ::1]
    yield "bn_sync.channel_stats", BS._channel_stats_kernel, (p1, p1, p2, p2, i64, i64, i64)
    yield "bn_sync.channel_sums", BS._channel_sums_kernel, (p1, p1, p2, p2, i64)


def _normalize(ptx: str) -> str:
    ptx = re.sub(r"//.*", "", ptx)
    ptx = re.sub(r"_Z\w+", "NAME", ptx)  # mangled names carry the module path and a uid
    return "\n".join(line.strip() for line in ptx.splitlines() if line.strip())


def _opcodes(ptx: str) -> dict:
    ops = collections.Counter()
    for line in ptx.splitlines():
        line = line.strip()
        if not line or line.startswith((".", "{", "}", "$", "//")) or line.endswith(":"):
            continue
        op = line.split()[0].rstrip(";")
        if op.startswith("@"):  # predicated: count the instruction
            op = line.split()[1]
        ops[op] += 1
    return dict(ops)


def _ptx(kernel, sig, ccs):
    """{cc: PTX} of one kernel specialization: Numba types and lowers it once (most of the
    time) and NVVM emits PTX per target; compile_ptx per cc where numba-cuda's internals differ."""
    from numba import cuda

    try:
        from numba.cuda.compiler import _compile_pyfunc_with_fixup

        lib, _ = _compile_pyfunc_with_fixup(kernel.py_func, sig, device=False, cc=ccs[0],
                                            abi="numba")
        return {cc: "\n".join(lib.get_asm_strs(cc=cc)) for cc in ccs}
    except (ImportError, TypeError, AttributeError):
        return {cc: cuda.compile_ptx(kernel.py_func, sig, cc=cc)[0] for cc in ccs}


def compile_all(ccs=((9, 0),)):
    """{specialization name: {cc: PTX}} of every CUDA kernel (no GPU needed, only NVVM)."""
    import numba.cuda.dispatcher

    # a device function that is not inlined asks the current device for its compute
    # capability; with no GPU, answer the first target asked for
    numba.cuda.dispatcher.get_current_device = type("Device", (), {"compute_capability": ccs[0]})
    return {name: _ptx(kernel, sig, ccs) for name, kernel, sig in _signatures()}


def run():
    out = {}
    for name, by_cc in compile_all(((9, 0),)).items():
        text = _normalize(by_cc[(9, 0)])
        out[name] = {"hash": hashlib.sha256(text.encode()).hexdigest()[:16],
                     "lines": len(text.splitlines()), "ops": _opcodes(text)}
    return out


def compare(a_path, b_path):
    a, b = (json.load(open(p)) for p in (a_path, b_path))
    same_text = same_mix = 0
    for k in sorted(a.keys() | b.keys()):
        x, y = a.get(k), b.get(k)
        if x is None or y is None:
            print(f"  {k}: only in {'b' if x is None else 'a'}")
        elif x["hash"] == y["hash"]:
            same_text += 1
        elif x["ops"] == y["ops"]:
            same_mix += 1
            print(f"  {k}: same instruction mix, text differs ({x['lines']} vs {y['lines']} lines)")
        else:
            d = {op: (x["ops"].get(op, 0), y["ops"].get(op, 0))
                 for op in x["ops"].keys() | y["ops"].keys()
                 if x["ops"].get(op, 0) != y["ops"].get(op, 0)}
            print(f"  {k}: instruction mix differs: {d}")
    print(f"{len(a)} vs {len(b)} kernels; {same_text} identical PTX, {same_mix} same mix only")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--compare"]:
        compare(sys.argv[2], sys.argv[3])
    else:
        json.dump(run(), sys.stdout, indent=0, sort_keys=True)
