"""Low-bit optimizer steps for the Numba CPU backend: one fused pass per step.

Same contract as fusedops.reference.lowbit (the specification; the element bodies are
kernels/common/lowbit.py, compiled here with njit). Each parallel task takes CHUNK_BLOCKS blocks
of 256 elements and, per block, in L1-resident 256-element buffers:
  A  loads w (master or param), g, decodes the state, runs the update, writes float32 / bf16
     state directly, keeps the new values of 8-bit slots and the block's largest |x|;
  B  encodes the 8-bit slots against the new block scale (one division per block);
  C  (stochastic rounding only) writes the master copy and the rounded parameter; otherwise
     pass A writes them at once.
Memory sees each array once: read w, g and the codes, write them back — never a float32 copy
of 8-bit state. Loops are written for the vectorizer: selects, no branches, no calls that
LLVM cannot inline, unsigned indices (Numba's negative-index wraparound blocks vectorization).

No fastmath and no contraction: the bits must equal the reference. error_model="numpy" keeps
divisions branch-free. The bodies are compiled with plain njit, not inline="always": LLVM
inlines them all the same (the loops vectorize), and a body's `if x is None` tests are pruned
in its own specialization. The disk cache is keyed on kernels/common too (cpu/jit.py).
"""
import math
import types as _pytypes

import numpy as np
from numba import njit, prange, types
from numba.extending import intrinsic

from ..common import lowbit as common
from .jit import kernel, run
from .philox import philox4x32_10

BLOCK = common.BLOCK
_EXP = common.EXP
CHUNK_BLOCKS = 16  # blocks per parallel task: the three 1 KiB buffers are allocated per task
# Elements from which a kernel runs in parallel, else as its serial twin (cpu/jit.py).
# Measured as optim.PARALLEL_MIN (same benchmark, quiet VM): the 8-bit Adam step crossed over
# at 64K and 256K in the two sweeps (1.23-1.85x at 256K, ~2x at 1M and 4M).
PARALLEL_MIN = 1 << 18
_JIT = dict(error_model="numpy", parallel_min=PARALLEL_MIN)


@intrinsic
def _f2i(typingctx, x):
    """float32 -> its bit pattern as uint32."""
    if x != types.float32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.uint32))
    return types.uint32(types.float32), codegen


@intrinsic
def _i2f(typingctx, x):
    """Low 32 bits of an integer -> float32."""
    if not isinstance(x, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        v = args[0]
        if x.bitwidth > 32:
            v = builder.trunc(v, context.get_value_type(types.uint32))
        elif x.bitwidth < 32:
            v = builder.zext(v, context.get_value_type(types.uint32))
        return builder.bitcast(v, context.get_value_type(types.float32))
    return types.float32(x), codegen


@njit(inline="always")
def _mul(a, b):
    return a * b


@njit(inline="always")
def _sqrt(x):
    return math.sqrt(x)


_B = common.build(_pytypes.SimpleNamespace(jit=njit, f2i=_f2i, i2f=_i2f, mul=_mul,
                                                 sqrt=_sqrt, philox=philox4x32_10))
_enc_s, _enc_u, _amax, _inverse = _B["enc_s"], _B["enc_u"], _B["amax"], _B["inverse"]
_enc_s_finite, _enc_u_finite = _B["enc_s_finite"], _B["enc_u_finite"]
_amax_finite, _special_code = _B["amax_finite"], _B["special_code"]
_load_param, _load_grad, _store_param = _B["load_param"], _B["load_grad"], _B["store_param"]
_load_state, _load_state_finite = _B["load_state"], _B["load_state_finite"]
_store_state, _adam, _sgd, _rmsprop = _B["store_state"], _B["adam"], _B["sgd"], _B["rmsprop"]
_scale_of = _B["scale_of"]


@njit
def _has_special(sq, lo, n_blk, signed):
    """Whether the block's 8-bit codes hold an Inf or NaN (then pass A decodes them in full)."""
    found = False
    if sq is None:
        pass
    else:
        for j in range(n_blk):
            found |= _special_code(np.uint32(sq[np.uint64(lo + j)]), signed)
    return found


@njit
def _encode_slot(sq, scales, blk, buf, lo, n_blk, acc, signed):
    """Pass B for one 8-bit slot: the block's scale (acc: the max of |x|'s bits), its codes.
    acc < EXP means every value is finite: the codes need no Inf / NaN cases."""
    if sq is None:
        pass
    elif acc < _EXP:
        s, inv = _inverse(acc)
        scales[blk] = s
        for j in range(n_blk):
            y = buf[j] * inv
            sq[np.uint64(lo + j)] = np.uint8(_enc_s_finite(y) if signed else _enc_u_finite(y))
    else:  # a NaN or Inf in the block (rare): the scale is the largest finite |x|
        acc = np.uint32(0)
        for j in range(n_blk):
            acc = _amax_finite(acc, buf[j])
        s, inv = _inverse(acc)
        scales[blk] = s
        for j in range(n_blk):
            y = buf[j] * inv
            sq[np.uint64(lo + j)] = np.uint8(_enc_s(y) if signed else _enc_u(y))


@njit
def _store_or_keep(pf, pb, ph, w32, bw, rng, w, j, i):
    """Pass A's parameter write: at once, or into bw for pass C when rounding stochastically."""
    if rng is None:
        _store_param(pf, pb, ph, w32, w, np.uint32(0), False, i)
    else:
        bw[j] = w


@njit
def _write_rounded(pf, pb, ph, w32, bw, lo, n_blk, rng):
    """Pass C with stochastic rounding: one Philox block per 4 elements (blocks start at
    multiples of 256, so element lo + j takes word j % 4 of Philox block (lo + j) // 4)."""
    if rng is None:
        pass
    else:
        k0, k1, stream, o0, o1 = rng[0], rng[1], rng[2], rng[3], rng[4]
        for q in range((n_blk + 3) // 4):
            ws = philox4x32_10(np.uint64((lo >> 2) + q), stream, o0, o1, k0, k1)
            for e in range(min(4, n_blk - 4 * q)):
                j = 4 * q + e
                _store_param(pf, pb, ph, w32, bw[j], np.uint32(ws[e]), True, np.uint64(lo + j))


# Pass A of each optimizer, built twice: with load_state (every code) and with
# load_state_finite (blocks without Inf / NaN codes, almost all). Each returns the max bit
# patterns of its 8-bit slots' new values. Arguments: kernel arrays, block, buffers, scalars.

def _adam_pass(load):
    @njit
    def pass_a(pf, pb, ph, w32, mf, mb, mq, sm, vf, vb, vq, sv, gf, gb, gh, lo, n_blk, bw, bm, bv,
               step_size, b1, omb1, b2, omb2, inv_c2, eps_in, eps_out, decay, reg, rng):
        zero = np.float32(0.0)
        am, av = np.uint32(0), np.uint32(0)
        for j in range(n_blk):
            i = np.uint64(lo + j)
            w, m, v = _adam(_load_param(pf, pb, ph, w32, i), _load_grad(gf, gb, gh, i),
                            load(mf, mb, mq, sm, True, i), load(vf, vb, vq, sv, False, i),
                            step_size, b1, omb1, b2, omb2, inv_c2, eps_in, eps_out, decay, reg)
            _store_state(mf, mb, None, m, zero, True, i)
            _store_state(vf, vb, None, v, zero, False, i)
            _store_or_keep(pf, pb, ph, w32, bw, rng, w, j, i)
            bm[j], bv[j] = m, v
            am, av = _amax(am, m), _amax(av, v)
        return am, av
    return pass_a


def _sgd_pass(load):
    @njit
    def pass_a(pf, pb, ph, w32, hf, hb, hq, sh, gf, gb, gh, lo, n_blk, bw, bh, lr, beta, cg, ch,
               reg, rng, has_h):
        zero = np.float32(0.0)
        ah = np.uint32(0)
        for j in range(n_blk):
            i = np.uint64(lo + j)
            w, h = _sgd(_load_param(pf, pb, ph, w32, i), _load_grad(gf, gb, gh, i),
                        load(hf, hb, hq, sh, True, i), lr, beta, cg, ch, reg, has_h)
            _store_state(hf, hb, None, h, zero, True, i)
            _store_or_keep(pf, pb, ph, w32, bw, rng, w, j, i)
            bh[j] = h
            ah = _amax(ah, h)
        return ah
    return pass_a


def _rmsprop_pass(load):
    @njit
    def pass_a(pf, pb, ph, w32, sf, sb, sq, s_s, hf, hb, hq, s_h, af, ab, aq, s_a, gf, gb, gh, lo,
               n_blk, bw, bs, bh, ba, lr, alpha, oma, eps_in, eps_out, beta, reg, rng, has_h,
               has_a):
        zero = np.float32(0.0)
        m_s, m_h, m_a = np.uint32(0), np.uint32(0), np.uint32(0)
        for j in range(n_blk):
            i = np.uint64(lo + j)
            w, s, h, a = _rmsprop(
                _load_param(pf, pb, ph, w32, i), _load_grad(gf, gb, gh, i),
                load(sf, sb, sq, s_s, False, i), load(hf, hb, hq, s_h, True, i),
                load(af, ab, aq, s_a, True, i), lr, alpha, oma, eps_in, eps_out, beta, reg,
                has_h, has_a)
            _store_state(sf, sb, None, s, zero, False, i)
            _store_state(hf, hb, None, h, zero, True, i)
            _store_state(af, ab, None, a, zero, True, i)
            _store_or_keep(pf, pb, ph, w32, bw, rng, w, j, i)
            bs[j], bh[j], ba[j] = s, h, a
            m_s, m_h, m_a = _amax(m_s, s), _amax(m_h, h), _amax(m_a, a)
        return m_s, m_h, m_a
    return pass_a


_adam_full, _adam_fast = _adam_pass(_load_state), _adam_pass(_load_state_finite)
_sgd_full, _sgd_fast = _sgd_pass(_load_state), _sgd_pass(_load_state_finite)
_rmsprop_full, _rmsprop_fast = _rmsprop_pass(_load_state), _rmsprop_pass(_load_state_finite)


# Optional arguments are None or a value: reg = (l2, l1) or None; rng = the stochastic-rounding
# words (key lo, key hi, stream, step lo, step hi) as uint64 (5,), or None (round to nearest).
@kernel(**_JIT)
def _adam_kernel(pf, pb, ph, w32, mf, mb, mq, ms, vf, vb, vq, vs, gf, gb, gh, n, step_size,
                 b1, omb1, b2, omb2, inv_c2, eps_in, eps_out, decay, reg, rng):
    nb = (n + BLOCK - 1) // BLOCK
    for c in prange((nb + CHUNK_BLOCKS - 1) // CHUNK_BLOCKS):
        bw, bm, bv = np.empty(BLOCK, np.float32), np.empty(BLOCK, np.float32), np.empty(
            BLOCK, np.float32)
        for blk in range(c * CHUNK_BLOCKS, min(nb, (c + 1) * CHUNK_BLOCKS)):
            lo = blk * BLOCK
            n_blk = min(BLOCK, n - lo)
            args = (pf, pb, ph, w32, mf, mb, mq, _scale_of(ms, blk), vf, vb, vq,
                    _scale_of(vs, blk), gf, gb, gh, lo, n_blk, bw, bm, bv, step_size, b1, omb1,
                    b2, omb2, inv_c2, eps_in, eps_out, decay, reg, rng)
            if _has_special(mq, lo, n_blk, True) or _has_special(vq, lo, n_blk, False):
                am, av = _adam_full(*args)
            else:
                am, av = _adam_fast(*args)
            _encode_slot(mq, ms, blk, bm, lo, n_blk, am, True)
            _encode_slot(vq, vs, blk, bv, lo, n_blk, av, False)
            _write_rounded(pf, pb, ph, w32, bw, lo, n_blk, rng)


@kernel(**_JIT)
def _sgd_kernel(pf, pb, ph, w32, hf, hb, hq, hs, gf, gb, gh, n, lr, beta, cg, ch, reg, rng):
    has_h = not (hf is None and hb is None and hq is None)
    nb = (n + BLOCK - 1) // BLOCK
    for c in prange((nb + CHUNK_BLOCKS - 1) // CHUNK_BLOCKS):
        bw, bh = np.empty(BLOCK, np.float32), np.empty(BLOCK, np.float32)
        for blk in range(c * CHUNK_BLOCKS, min(nb, (c + 1) * CHUNK_BLOCKS)):
            lo = blk * BLOCK
            n_blk = min(BLOCK, n - lo)
            args = (pf, pb, ph, w32, hf, hb, hq, _scale_of(hs, blk), gf, gb, gh, lo, n_blk, bw,
                    bh, lr, beta, cg, ch, reg, rng, has_h)
            ah = _sgd_full(*args) if _has_special(hq, lo, n_blk, True) else _sgd_fast(*args)
            _encode_slot(hq, hs, blk, bh, lo, n_blk, ah, True)
            _write_rounded(pf, pb, ph, w32, bw, lo, n_blk, rng)


@kernel(**_JIT)
def _rmsprop_kernel(pf, pb, ph, w32, sf, sb, sq, ss, hf, hb, hq, hs, af, ab, aq, as_, gf, gb, gh,
                    n, lr, alpha, oma, eps_in, eps_out, beta, reg, rng):
    has_h = not (hf is None and hb is None and hq is None)
    has_a = not (af is None and ab is None and aq is None)
    nb = (n + BLOCK - 1) // BLOCK
    for c in prange((nb + CHUNK_BLOCKS - 1) // CHUNK_BLOCKS):
        bw, bs = np.empty(BLOCK, np.float32), np.empty(BLOCK, np.float32)
        bh, ba = np.empty(BLOCK, np.float32), np.empty(BLOCK, np.float32)
        for blk in range(c * CHUNK_BLOCKS, min(nb, (c + 1) * CHUNK_BLOCKS)):
            lo = blk * BLOCK
            n_blk = min(BLOCK, n - lo)
            args = (pf, pb, ph, w32, sf, sb, sq, _scale_of(ss, blk), hf, hb, hq,
                    _scale_of(hs, blk), af, ab, aq, _scale_of(as_, blk), gf, gb, gh, lo, n_blk, bw,
                    bs, bh, ba, lr, alpha, oma, eps_in, eps_out, beta, reg, rng, has_h, has_a)
            if (_has_special(sq, lo, n_blk, False) or _has_special(hq, lo, n_blk, True)
                    or _has_special(aq, lo, n_blk, True)):
                m_s, m_h, m_a = _rmsprop_full(*args)
            else:
                m_s, m_h, m_a = _rmsprop_fast(*args)
            _encode_slot(sq, ss, blk, bs, lo, n_blk, m_s, False)
            _encode_slot(hq, hs, blk, bh, lo, n_blk, m_h, True)
            _encode_slot(aq, as_, blk, ba, lo, n_blk, m_a, True)
            _write_rounded(pf, pb, ph, w32, bw, lo, n_blk, rng)


@kernel(**_JIT)
def _quantize_kernel(codes, scales, x, n, signed):
    nb = (n + BLOCK - 1) // BLOCK
    for blk in prange(nb):
        lo = blk * BLOCK
        n_blk = min(BLOCK, n - lo)
        acc = np.uint32(0)
        for j in range(n_blk):
            acc = _amax(acc, x[np.uint64(lo + j)])
        _encode_slot(codes, scales, blk, x[lo:lo + n_blk], lo, n_blk, acc, signed)


@kernel(**_JIT)
def _dequantize_kernel(out, codes, scales, n, signed):
    for i in prange(n):
        out[i] = _load_state(None, None, codes, scales[i // BLOCK], signed, np.uint64(i))


# --------------------------------------------------------------------------- launchers

param_slots, state_slots, rounding_words = (common.param_slots, common.state_slots,
                                            common.rounding_words)


def regularization(l2, l1):
    """(l2, l1) as float32, or None when both are 0 (the terms are skipped)."""
    return None if l2 == 0 and l1 == 0 else (np.float32(l2), np.float32(l1))


def _f32(*xs):
    return [np.float32(x) for x in xs]


def adam_lowbit(p, w32, m, ms, v, vs, g, step_size, b1, omb1, b2, omb2, inv_c2, eps_in, eps_out,
                decay, l2, l1, pfmt, sfmt, seed, step, stream, sr):
    """p, g (n,) float32 or uint16 bits (pfmt); w32 (n,) or None; m, v (n,) float32, uint16 or
    uint8 codes with ms, vs (ceil(n/256),) scales: one Adam step (reference.adam_lowbit)."""
    run(_adam_kernel, p.size, *param_slots(p, pfmt), w32, *state_slots(m), ms, *state_slots(v),
        vs, *param_slots(g, pfmt), p.size,
        *_f32(step_size, b1, omb1, b2, omb2, inv_c2, eps_in, eps_out, decay),
        regularization(l2, l1), rounding_words(seed, step, stream, sr))


def sgd_lowbit(p, w32, h, hs, g, lr, beta, cg, ch, l2, l1, pfmt, sfmt, seed, step, stream, sr):
    """One SGD step on low-bit state (reference.sgd_lowbit); h None without momentum."""
    run(_sgd_kernel, p.size, *param_slots(p, pfmt), w32, *state_slots(h), hs,
        *param_slots(g, pfmt), p.size, *_f32(lr, beta, cg, ch), regularization(l2, l1),
        rounding_words(seed, step, stream, sr))


def rmsprop_lowbit(p, w32, s, ss, h, hs, ga, gas, g, lr, alpha, oma, eps_in, eps_out, beta, l2,
                   l1, pfmt, sfmt, seed, step, stream, sr):
    """One RMSprop step on low-bit state (reference.rmsprop_lowbit)."""
    run(_rmsprop_kernel, p.size, *param_slots(p, pfmt), w32, *state_slots(s), ss,
        *state_slots(h), hs, *state_slots(ga), gas, *param_slots(g, pfmt), p.size,
        *_f32(lr, alpha, oma, eps_in, eps_out, beta), regularization(l2, l1),
        rounding_words(seed, step, stream, sr))


def quantize_blocks(codes, scales, x, signed):
    """codes (n,) uint8, scales (ceil(n/256),) float32 <- 8-bit blockwise codes of x (n,) float32."""
    run(_quantize_kernel, x.size, codes, scales, x, x.size, bool(signed))


def dequantize_blocks(out, codes, scales, signed):
    """out (n,) float32 <- values of codes (n,) with scales (ceil(n/256),)."""
    run(_dequantize_kernel, codes.size, out, codes, scales, codes.size, bool(signed))
