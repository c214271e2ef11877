"""The measurements behind the 8-bit state format (README, "Fewer bytes per parameter"):
quantization error of Adam's m and v and convergence on an ill-conditioned quadratic for
linear codes, Dettmers et al.'s dynamic map (as bitsandbytes builds it), E3M4 / E4M4, and
the chosen E4M3 / E5M3 (fusedops.reference.lowbit). NumPy only; about a minute.

    python tools/lowbit_formats.py
"""
import numpy as np

from fusedops import optim
from fusedops.ops import lowbit as L

B = 256


def dynamic_map(signed, max_exponent_bits=7):
    """The dynamic tree map (Dettmers et al. 2021): per decade 2^i values linearly spaced."""
    data = []
    for i in range(max_exponent_bits):
        items = 2 ** i + 1 if signed else 2 ** (i + 1) + 1
        edges = np.linspace(0.1, 1, items)
        means = (edges[:-1] + edges[1:]) / 2 * 10.0 ** (i - max_exponent_bits + 1)
        data += means.tolist() + ((-means).tolist() if signed else [])
    data += [0.0, 1.0]
    return np.array(sorted(data + [0.0] * (256 - len(data))), np.float32)


def _nearest(y, table):
    idx = np.clip(np.searchsorted(table, y), 1, len(table) - 1)
    lo, hi = table[idx - 1], table[idx]
    return np.where(np.abs(y - lo) <= np.abs(hi - y), lo, hi)


def _float_grid(y, mant, codes):
    """|y| <= 1 on a grid of `mant` mantissa bits and `codes` nonzero codes below 1.0."""
    a = np.abs(y).astype(np.float32).view(np.int32).astype(np.int64)
    top = 127 << mant
    c = np.clip(((a + (1 << (22 - mant))) >> (23 - mant)) - top + codes, 0, codes)
    val = np.where(c == 0, 0, ((c - codes + top) << (23 - mant)).astype(np.int32).view(np.float32))
    return np.copysign(val, y).astype(np.float32)


def _smallest_unsigned(kind) -> np.float32:
    """The smallest positive value of an unsigned code."""
    if kind == "linear":
        return np.float32(1 / 255)
    if kind == "dynamic":
        table = dynamic_map(False)
        return table[table > 0].min()
    return np.int32((1 - 253 + (127 << kind[1])) << (23 - kind[1])).view(np.float32)


def quantize(x, kind, signed, saturate):
    """Blockwise round trip of x (float32, size a multiple of 256). saturate: a positive v
    takes the smallest code instead of 0 (what fusedops does for second moments)."""
    xb = x.reshape(-1, B)
    s = np.abs(xb).max(1, keepdims=True)
    y = (xb / np.where(s > 0, s, 1)).astype(np.float32)
    if kind == "linear":
        q = np.round(y * (127 if signed else 255)) / (127 if signed else 255)
    elif kind == "dynamic":
        q = _nearest(y, dynamic_map(signed))
    else:  # (mantissa bits of m, of v)
        q = _float_grid(y, kind[0], 126) if signed else _float_grid(y, kind[1], 253)
    if saturate and not signed:
        q = np.where((q == 0) & (y > 0), _smallest_unsigned(kind), q)
    return (q * s).reshape(x.shape).astype(np.float32)


CODES = {"linear": "linear", "dynamic map": "dynamic", "E3M4 / E4M4": (4, 4),
         "E4M3 / E5M3": (3, 3)}


def errors():
    """Median and p99 relative error of m and sqrt(v) of Adam state built from gradients whose
    scales spread over three decades (200 steps, 1M elements)."""
    rng = np.random.default_rng(0)
    n = 1 << 20
    scale = 10 ** rng.uniform(-3, 0, n)
    m, v = np.zeros(n, np.float32), np.zeros(n, np.float32)
    for _ in range(200):
        g = (rng.standard_normal(n) * scale).astype(np.float32)
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
    m, v = m.astype(np.float32), v.astype(np.float32)
    print(f"{'code (m / v)':<16}{'m: median':>10}{'p99':>8}{'sqrt(v): median':>17}{'p99':>8}")
    rows = {name: (quantize(m, k, True, True), quantize(v, k, False, True)) for name, k in CODES.items()}
    rows["fusedops"] = tuple(L.dequantize(L.quantize(a, signed=sg, backend="numpy"), backend="numpy")
                             for a, sg in ((m, True), (v, False)))
    for name, (mq, vq) in rows.items():
        em = np.abs(mq - m) / np.abs(m)
        es = np.abs(np.sqrt(vq) - np.sqrt(v)) / np.sqrt(v)
        print(f"{name:<16}{np.median(em):10.4f}{np.quantile(em, .99):8.4f}"
              f"{np.median(es):17.4f}{np.quantile(es, .99):8.4f}")


def quadratic():
    """Adam (lr 1e-2, 1000 steps) on sum c_i w_i^2 / 2, curvatures over four decades, state
    round-tripped through each code after every step; and fusedops.optim's own int8 Adam."""
    rng = np.random.default_rng(0)
    n = 1 << 14
    c = (10 ** rng.uniform(-3, 1, n)).astype(np.float32)
    w0 = rng.standard_normal(n).astype(np.float32)

    def run(kind, saturate):
        f32 = np.float32
        w, m, v = w0.copy(), np.zeros(n, f32), np.zeros(n, f32)
        for t in range(1, 1001):
            g = c * w
            m, v = f32(0.9) * m + f32(0.1) * g, f32(0.999) * v + f32(0.001) * g * g
            w = w - f32(1e-2 / (1 - 0.9 ** t)) * m / (np.sqrt(v / f32(1 - 0.999 ** t)) + f32(1e-8))
            if kind is not None:
                m, v = quantize(m, kind, True, saturate), quantize(v, kind, False, saturate)
        return float(np.mean(0.5 * c * w.astype(np.float64) ** 2))

    print(f"float32: {run(None, False):.3g}")
    for name, k in CODES.items():
        print(f"{name:<16} v flushed {run(k, False):9.3g}   v saturating {run(k, True):9.3g}")
    w = w0.copy()
    opt = optim.Adam([w], lr=1e-2, state_dtype="int8", backend="numpy")
    for _ in range(1000):
        opt.step([c * w])
    print(f"fusedops int8 (E4M3 / E5M3): {float(np.mean(0.5 * c * w.astype(np.float64) ** 2)):.3g}")


if __name__ == "__main__":
    errors()
    quadratic()
