"""fusedops.torch.BatchNorm1d against torch.nn.BatchNorm1d: outputs, input and parameter
gradients, running statistics and num_batches_tracked over three training steps and eval, for
(N, C) and (N, C, L), float32 and float64, every configuration; torch checkpoints load;
gradcheck and opcheck pass.

Tolerance: float64 torch is the reference. Each output is compared per element against
BOUND * eps times the magnitude of what it is computed from (its condition scale, below,
from the reference's float64 values): a sum over the batch is compared on the sum of the
absolute terms, y on |gamma| * invstd * (|x| + |mean|) + |beta|, and so on. float32 must also
be within twice torch's own float32 error under the same rule when that is larger."""
import copy

import pytest

torch = pytest.importorskip("torch")

import fusedops  # noqa: E402
import fusedops.torch as ft  # noqa: E402
from fusedops.torch._custom_ops import batch_norm_backward_op, batch_norm_op  # noqa: E402
from torch_cases import one_thread  # noqa: E402,F401

pytestmark = pytest.mark.usefixtures("one_thread")
# measured <= 10 (float64, (N, C, L)): the kernels apply y = x*scale + shift with per-channel
# coefficients, torch (x - mean)*invstd*gamma + beta; a wrong variance, momentum or eps is off
# by 1e4 units or more
BOUND = 16
CONFIGS = {  # name: BatchNorm1d keyword arguments
    "default": {},
    "no-affine": dict(affine=False),
    "no-stats": dict(track_running_stats=False),
    "cumulative": dict(momentum=None, eps=1e-3),
}


def _pair(c, dtype, kwargs):
    torch.manual_seed(0)
    ref = torch.nn.BatchNorm1d(c, **kwargs).double()
    if ref.affine:
        with torch.no_grad():
            ref.weight.uniform_(0.5, 1.5)
            ref.bias.uniform_(-1, 1)
    tor = copy.deepcopy(ref).to(dtype)
    ours = ft.BatchNorm1d(c, **kwargs).to(dtype)
    ours.load_state_dict(tor.state_dict())  # a torch checkpoint, strict
    return ref, tor, ours


def _run(module, x, dy):
    x = x.clone().requires_grad_(True)
    y = module(x)
    y.backward(dy)
    out = {"y": y.detach(), "dx": x.grad}
    if module.affine:
        out.update(dweight=module.weight.grad.clone(), dbias=module.bias.grad.clone())
        module.weight.grad = module.bias.grad = None
    if module.track_running_stats:
        out.update(running_mean=module.running_mean.clone(),
                   running_var=module.running_var.clone())
    return out


@torch.no_grad()
def _scales(ref, x, dy, prev, training):
    """Condition scales of every output, from float64 reference values."""
    dims = (0, 2) if x.dim() == 3 else (0,)
    shape = (1, -1, 1) if x.dim() == 3 else (1, -1)
    if training or not ref.track_running_stats:
        mean, var = x.mean(dims), x.var(dims, unbiased=False)
    else:
        mean, var = ref.running_mean, ref.running_var
    invstd = (var + ref.eps).rsqrt()
    xhat = ((x - mean.view(shape)) * invstd.view(shape)).abs()
    g = ref.weight.abs() if ref.affine else torch.ones_like(mean)
    b = ref.bias.abs() if ref.affine else torch.zeros_like(mean)
    m = x.numel() // x.shape[1]
    s_dxhat, s_dy = (dy.abs() * xhat).sum(dims), dy.abs().sum(dims)
    out = {"y": (g * invstd).view(shape) * (x.abs() + mean.abs().view(shape)) + b.view(shape),
           "dx": (g * invstd).view(shape) * (dy.abs() + (s_dy / m).view(shape)
                                             + xhat * (s_dxhat / m).view(shape)),
           "dweight": s_dxhat, "dbias": s_dy}
    if "running_mean" in prev:
        out["running_mean"] = prev["running_mean"].abs() + x.abs().mean(dims)
        out["running_var"] = prev["running_var"].abs() + (x - mean.view(shape)).pow(2).mean(dims)
    return out


def _units(got, ref, scale, dtype):
    err = (got.detach().double() - ref.detach()).abs()
    return float(torch.where(err == 0, 0.0, err / (torch.finfo(dtype).eps * scale)).max())


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("shape", [(200, 6), (33, 5, 17)], ids=["NC", "NCL"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_matches_torch_batchnorm1d(dtype, shape, config):
    ref, tor, ours = _pair(shape[1], dtype, CONFIGS[config])
    gen = torch.Generator().manual_seed(1)
    worst = {"ours": 0.0, "torch": 0.0}
    for step in range(4):
        training = step < 3
        for mod in (ref, tor, ours):
            mod.train(training)
        x = torch.randn(shape, generator=gen, dtype=torch.float64) * 3 + 5  # mean >> std
        dy = torch.randn(shape, generator=gen, dtype=torch.float64)
        prev = {k: getattr(ref, k).clone() for k in ("running_mean", "running_var")
                if getattr(ref, k, None) is not None}
        scales = _scales(ref, x, dy, prev, training)
        r = _run(ref, x, dy)
        t, o = _run(tor, x.to(dtype), dy.to(dtype)), _run(ours, x.to(dtype), dy.to(dtype))
        assert set(o) == set(r)
        for key in r:
            worst["ours"] = max(worst["ours"], _units(o[key], r[key], scales[key], dtype))
            worst["torch"] = max(worst["torch"], _units(t[key], r[key], scales[key], dtype))
        if ref.track_running_stats:
            assert int(ours.num_batches_tracked) == int(ref.num_batches_tracked)
    allowed = BOUND if dtype == torch.float64 else max(BOUND, 2 * worst["torch"])
    assert worst["ours"] <= allowed, (worst, allowed)
    assert set(ours.state_dict()) == set(tor.state_dict())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_large_outputs_from_the_huge_page_allocator(dtype):
    """y and dx of 4 MiB and more come from NumPy's allocator (fusedops.torch._tensors.
    empty_like): fresh contiguous tensors of x's dtype, equal to torch's within float rounding
    (the ulp bounds over 4097 rows are those of test_matches_torch_batchnorm1d in float32)."""
    if dtype == torch.float32:
        test_matches_torch_batchnorm1d(dtype, (4097, 257), "default")
    outs = []
    for mod in (torch.nn.BatchNorm1d(257), ft.BatchNorm1d(257)):
        x = torch.randn(4097, 257, dtype=dtype, generator=torch.Generator().manual_seed(0),
                        requires_grad=True)
        y = mod.to(dtype)(x)
        y.backward(torch.linspace(-1, 1, y.numel(), dtype=dtype).view_as(y))
        assert y.dtype == x.grad.dtype == dtype and y.is_contiguous() and x.grad.is_contiguous()
        assert len({x.data_ptr(), y.data_ptr(), x.grad.data_ptr()}) == 3
        outs.append((y, x.grad))
    for ours, theirs in zip(outs[1], outs[0]):
        torch.testing.assert_close(ours, theirs)


def test_eval_loads_a_trained_torch_checkpoint():
    torch.manual_seed(0)
    tor = torch.nn.BatchNorm1d(7).double()
    for _ in range(3):
        tor(torch.randn(50, 7, dtype=torch.float64) * 2 + 1)
    ours = ft.BatchNorm1d(7).double()
    ours.load_state_dict(tor.state_dict())
    tor.eval(), ours.eval()
    x = torch.randn(20, 7, dtype=torch.float64)
    torch.testing.assert_close(ours(x), tor(x), rtol=4e-16, atol=4e-16)
    assert isinstance(ours, torch.nn.BatchNorm1d)


@pytest.mark.parametrize("training", [True, False])
def test_gradcheck_float64(training):
    bn = ft.BatchNorm1d(3).double().train(training)
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.weight.uniform_(0.5, 1.5)
    x = torch.randn(6, 3, 4, dtype=torch.float64, requires_grad=True)
    f = (lambda t, w, b: ft.batch_norm(t, None, None, w, b, training=True)) if training else \
        (lambda t, w, b: ft.batch_norm(t, bn.running_mean, bn.running_var, w, b))
    w, b = bn.weight.detach().requires_grad_(), bn.bias.detach().requires_grad_()
    assert torch.autograd.gradcheck(f, (x, w, b))


def test_opcheck():
    x = torch.randn(10, 4, 3, requires_grad=True)
    w, b = torch.rand(4, requires_grad=True), torch.randn(4, requires_grad=True)
    rm, rv = torch.randn(4), torch.rand(4) + 0.5
    for args in ((x, w, b, rm, rv, True, 0.1, 1e-5), (x, w, b, rm, rv, False, 0.1, 1e-5),
                 (x, None, None, None, None, True, 0.1, 1e-5)):
        torch.library.opcheck(batch_norm_op, args)
    _, mean, invstd, _, _ = batch_norm_op(x, w, b, rm, rv, True, 0.1, 1e-5)
    dy = torch.randn(10, 4, 3)
    x, w = x.detach(), w.detach()  # the backward has no derivative of its own (see README)
    torch.library.opcheck(batch_norm_backward_op, (dy, x, w, mean, invstd, True))
    torch.library.opcheck(batch_norm_backward_op, (dy, x, None, mean, invstd, False))


def test_same_bits_at_any_thread_count():
    x = torch.randn(4096, 32) * 10 + 100
    outs = []
    for n in (1, 2):
        fusedops.set_num_threads(n)
        bn = ft.BatchNorm1d(32)
        xi = x.clone().requires_grad_(True)
        bn(xi).sum().backward()
        outs.append((bn.running_var.clone(), xi.grad))
    fusedops.set_num_threads(1)
    assert all(torch.equal(a, b) for a, b in zip(*outs))


def test_bad_input():
    bn = ft.BatchNorm1d(4)
    with pytest.raises(ValueError, match="2D or 3D"):
        bn(torch.randn(2, 4, 3, 3))
    before = bn.running_mean.clone()
    with pytest.raises(ValueError, match="more than one value per channel"):
        bn(torch.randn(1, 4))
    assert torch.equal(bn.running_mean, before)
    with pytest.raises(TypeError, match="weight must have input's dtype"):
        bn(torch.randn(3, 4, dtype=torch.float64))
    with pytest.raises(TypeError, match="input must have dtype"):
        ft.batch_norm(torch.randn(3, 4).half(), None, None, training=True)
