"""Low-bit optimizer steps for the CUDA backend: one CUDA block per 256-element state block.

Same contract as fusedops.reference.lowbit; the element bodies are kernels/common/lowbit.py,
compiled here with cuda.jit(device=True, inline="always") (inlined at Numba IR level, so the
kernels also compile to PTX with no GPU present: tests/test_lowbit_ptx.py). Thread t of the
CUDA block that owns state block b updates element i = 256*b + t in registers, writes float32 / bf16 state and the parameter at
once, and for each 8-bit slot takes part in a shared-memory max over the block (the max of
bit patterns of finite |x|: exact and order-independent), then encodes its own element
against the new scale; thread 0 writes the scale. Blocks grid-stride over state blocks.
Launches always use 256 threads (threads_per_block is ignored: a CUDA block is a state block).

Products go through __fmul_rn (libdevice.fmul_rn): NVVM fuses a*b + c into an FMA by default,
which rounds once where the reference rounds twice. Under the simulator the primitives are
NumPy scalar operations (float32 arithmetic, no fusion).
"""
import math
import types as _pytypes

import numpy as np
from numba import config, cuda

from ..common import lowbit as common
from .launch import current_stream, grid_for
from .philox import philox4x32_10

BLOCK = common.BLOCK
_SIM = bool(config.ENABLE_CUDASIM)


def _prims():
    if _SIM:
        def f2i(x):
            return np.float32(x).view(np.uint32)

        def i2f(b):
            return np.uint32(int(b) & 0xFFFFFFFF).view(np.float32)

        def mul(a, b):
            return np.float32(a) * np.float32(b)

        return _pytypes.SimpleNamespace(jit=cuda.jit(device=True), f2i=f2i, i2f=i2f, mul=mul,
                                        sqrt=np.sqrt, philox=philox4x32_10)
    from numba.cuda import libdevice

    @cuda.jit(device=True, inline="always")
    def f2i(x):
        return np.uint32(libdevice.float_as_int(x))

    @cuda.jit(device=True, inline="always")
    def i2f(b):
        return libdevice.int_as_float(np.int32(np.uint32(b)))

    @cuda.jit(device=True, inline="always")
    def mul(a, b):
        return libdevice.fmul_rn(a, b)

    @cuda.jit(device=True, inline="always")
    def sqrt(x):
        return math.sqrt(x)  # sqrt.rn.f32: numba-cuda keeps IEEE square roots without fastmath

    return _pytypes.SimpleNamespace(jit=cuda.jit(device=True, inline="always"), f2i=f2i, i2f=i2f,
                                    mul=mul, sqrt=sqrt, philox=philox4x32_10)


_B = common.build(_prims())
_amax_finite, _inverse, _enc_s, _enc_u = _B["amax_finite"], _B["inverse"], _B["enc_s"], _B["enc_u"]
_load_param, _load_grad, _store_param = _B["load_param"], _B["load_grad"], _B["store_param"]
_load_state, _store_state, _rounding_word = _B["load_state"], _B["store_state"], _B["rounding_word"]
_adam, _sgd, _rmsprop, _scale_of = _B["adam"], _B["sgd"], _B["rmsprop"], _B["scale_of"]


@cuda.jit(device=True, inline="always")
def _block_max(buf, t, x):
    """The max of x (uint32) over the 256 threads of the block; every thread gets it."""
    buf[t] = x
    cuda.syncthreads()
    s = BLOCK // 2
    while s > 0:
        if t < s:
            y = buf[t + s]
            if y > buf[t]:
                buf[t] = y
        cuda.syncthreads()
        s //= 2
    r = buf[0]
    cuda.syncthreads()  # buf is reused by the next reduction
    return r


@cuda.jit(device=True, inline="always")
def _encode(sq, scales, buf, blk, t, i, live, x, signed):
    """Block max, scale (thread 0) and this thread's code of one 8-bit slot."""
    if sq is None:
        pass
    else:
        acc = _block_max(buf, t, _amax_finite(np.uint32(0), x) if live else np.uint32(0))
        s, inv = _inverse(acc)
        if t == 0:
            scales[blk] = s
        if live:
            y = x * inv
            sq[i] = np.uint8(_enc_s(y) if signed else _enc_u(y))


@cuda.jit(device=True, inline="always")
def _write_param(pf, pb, ph, w32, w, rng, i):
    if rng is None:
        _store_param(pf, pb, ph, w32, w, np.uint32(0), False, i)
    else:
        r = _rounding_word(i >> 2, rng[0], rng[1], rng[2], rng[3], rng[4], i & 3)
        _store_param(pf, pb, ph, w32, w, r, True, i)


@cuda.jit
def _adam_kernel(pf, pb, ph, w32, mf, mb, mq, ms, vf, vb, vq, vs, gf, gb, gh, n, step_size, b1,
                 omb1, b2, omb2, inv_c2, eps_in, eps_out, decay, reg, rng):
    buf = cuda.shared.array(BLOCK, np.uint32)
    t = cuda.threadIdx.x
    zero = np.float32(0.0)
    for blk in range(cuda.blockIdx.x, (n + BLOCK - 1) // BLOCK, cuda.gridDim.x):
        i = blk * BLOCK + t
        live = i < n
        m, v = zero, zero
        if live:
            w, m, v = _adam(_load_param(pf, pb, ph, w32, i), _load_grad(gf, gb, gh, i),
                            _load_state(mf, mb, mq, _scale_of(ms, blk), True, i),
                            _load_state(vf, vb, vq, _scale_of(vs, blk), False, i), step_size,
                            b1, omb1, b2, omb2, inv_c2, eps_in, eps_out, decay, reg)
            _store_state(mf, mb, None, m, zero, True, i)
            _store_state(vf, vb, None, v, zero, False, i)
            _write_param(pf, pb, ph, w32, w, rng, i)
        _encode(mq, ms, buf, blk, t, i, live, m, True)
        _encode(vq, vs, buf, blk, t, i, live, v, False)


@cuda.jit
def _sgd_kernel(pf, pb, ph, w32, hf, hb, hq, hs, gf, gb, gh, n, lr, beta, cg, ch, reg, rng):
    buf = cuda.shared.array(BLOCK, np.uint32)
    t = cuda.threadIdx.x
    zero = np.float32(0.0)
    has_h = not (hf is None and hb is None and hq is None)
    for blk in range(cuda.blockIdx.x, (n + BLOCK - 1) // BLOCK, cuda.gridDim.x):
        i = blk * BLOCK + t
        live = i < n
        h = zero
        if live:
            w, h = _sgd(_load_param(pf, pb, ph, w32, i), _load_grad(gf, gb, gh, i),
                        _load_state(hf, hb, hq, _scale_of(hs, blk), True, i), lr, beta, cg, ch,
                        reg, has_h)
            _store_state(hf, hb, None, h, zero, True, i)
            _write_param(pf, pb, ph, w32, w, rng, i)
        _encode(hq, hs, buf, blk, t, i, live, h, True)


@cuda.jit
def _rmsprop_kernel(pf, pb, ph, w32, sf, sb, sq, ss, hf, hb, hq, hs, af, ab, aq, as_, gf, gb, gh,
                    n, lr, alpha, oma, eps_in, eps_out, beta, reg, rng):
    buf = cuda.shared.array(BLOCK, np.uint32)
    t = cuda.threadIdx.x
    zero = np.float32(0.0)
    has_h = not (hf is None and hb is None and hq is None)
    has_a = not (af is None and ab is None and aq is None)
    for blk in range(cuda.blockIdx.x, (n + BLOCK - 1) // BLOCK, cuda.gridDim.x):
        i = blk * BLOCK + t
        live = i < n
        s, h, a = zero, zero, zero
        if live:
            w, s, h, a = _rmsprop(
                _load_param(pf, pb, ph, w32, i), _load_grad(gf, gb, gh, i),
                _load_state(sf, sb, sq, _scale_of(ss, blk), False, i),
                _load_state(hf, hb, hq, _scale_of(hs, blk), True, i),
                _load_state(af, ab, aq, _scale_of(as_, blk), True, i),
                lr, alpha, oma, eps_in, eps_out, beta, reg, has_h, has_a)
            _store_state(sf, sb, None, s, zero, False, i)
            _store_state(hf, hb, None, h, zero, True, i)
            _store_state(af, ab, None, a, zero, True, i)
            _write_param(pf, pb, ph, w32, w, rng, i)
        _encode(sq, ss, buf, blk, t, i, live, s, False)
        _encode(hq, hs, buf, blk, t, i, live, h, True)
        _encode(aq, as_, buf, blk, t, i, live, a, True)


@cuda.jit
def _quantize_kernel(codes, scales, x, n, signed):
    buf = cuda.shared.array(BLOCK, np.uint32)
    t = cuda.threadIdx.x
    for blk in range(cuda.blockIdx.x, (n + BLOCK - 1) // BLOCK, cuda.gridDim.x):
        i = blk * BLOCK + t
        live = i < n
        _encode(codes, scales, buf, blk, t, i, live, x[i] if live else np.float32(0.0), signed)


@cuda.jit
def _dequantize_kernel(out, codes, scales, n, signed):
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, n, stride):
        out[i] = _load_state(None, None, codes, scales[i // BLOCK], signed, i)


# --------------------------------------------------------------------------- launchers

def _grid(n):
    """Launch configuration: grid, one 256-thread block per state block, the current stream."""
    return grid_for(max(n, 1), BLOCK), BLOCK, current_stream()


_slots, _state = common.param_slots, common.state_slots


def _f32(*xs):
    return [np.float32(x) for x in xs]


def _extras(l2, l1, seed, step, stream, sr):
    """(reg, rng) as in kernels/cpu/lowbit.py: None or (l2, l1); None or the Philox words (a
    device array)."""
    reg = None if l2 == 0 and l1 == 0 else (np.float32(l2), np.float32(l1))
    words = common.rounding_words(seed, step, stream, sr)
    return reg, None if words is None else cuda.to_device(words, stream=current_stream())


def adam_lowbit(p, w32, m, ms, v, vs, g, step_size, b1, omb1, b2, omb2, inv_c2, eps_in, eps_out,
                decay, l2, l1, pfmt, sfmt, seed, step, stream, sr, *, threads_per_block):
    """Device arrays as in kernels/cpu/lowbit.adam_lowbit: one Adam step on low-bit state."""
    if p.size:
        _adam_kernel[_grid(p.size)](
            *_slots(p, pfmt), w32, *_state(m), ms, *_state(v), vs, *_slots(g, pfmt), p.size,
            *_f32(step_size, b1, omb1, b2, omb2, inv_c2, eps_in, eps_out, decay),
            *_extras(l2, l1, seed, step, stream, sr))


def sgd_lowbit(p, w32, h, hs, g, lr, beta, cg, ch, l2, l1, pfmt, sfmt, seed, step, stream, sr, *,
               threads_per_block):
    """One SGD step on low-bit state (device arrays)."""
    if p.size:
        _sgd_kernel[_grid(p.size)](*_slots(p, pfmt), w32, *_state(h), hs, *_slots(g, pfmt),
                                   p.size, *_f32(lr, beta, cg, ch),
                                   *_extras(l2, l1, seed, step, stream, sr))


def rmsprop_lowbit(p, w32, s, ss, h, hs, ga, gas, g, lr, alpha, oma, eps_in, eps_out, beta, l2,
                   l1, pfmt, sfmt, seed, step, stream, sr, *, threads_per_block):
    """One RMSprop step on low-bit state (device arrays)."""
    if p.size:
        _rmsprop_kernel[_grid(p.size)](
            *_slots(p, pfmt), w32, *_state(s), ss, *_state(h), hs, *_state(ga), gas,
            *_slots(g, pfmt), p.size, *_f32(lr, alpha, oma, eps_in, eps_out, beta),
            *_extras(l2, l1, seed, step, stream, sr))


def quantize_blocks(codes, scales, x, signed, *, threads_per_block):
    """codes, scales <- 8-bit blockwise codes of x (device arrays)."""
    if x.size:
        _quantize_kernel[_grid(x.size)](codes, scales, x, x.size, bool(signed))


def dequantize_blocks(out, codes, scales, signed, *, threads_per_block):
    """out <- values of codes with scales (device arrays)."""
    if codes.size:
        _dequantize_kernel[grid_for(codes.size, threads_per_block), threads_per_block,
                           current_stream()](out, codes, scales, codes.size, bool(signed))
