"""fusedops.torch dropout: the mask is fusedops.ops.dropout_mask(shape, p, seed=, offset=) bit for
bit, forward and backward apply it exactly, gradcheck and opcheck pass, and the module's
(seed, offset) advance and resume through state_dict."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import fusedops.torch as ft  # noqa: E402
from fusedops import ops  # noqa: E402
from fusedops.torch._custom_ops import (dropout_backward_op, dropout_op,  # noqa: E402
                                        rng_tensor)

SEEDS = [(0, 0), (42, 7), ((1 << 64) - 1, (1 << 63) + 5)]  # incl. seeds past int64


def _keep(shape, p, seed, offset):
    mask = ops.dropout_mask(shape, p, seed=seed, offset=offset)
    return torch.from_numpy(ops.unpack_mask(mask, shape)), mask


@pytest.mark.parametrize("seed, offset", SEEDS)
@pytest.mark.parametrize("shape, p", [((1,), 0.5), ((7, 13), 0.3), ((3, 5, 11), 0.9),
                                      ((64, 33), 0.0), ((9,), 1.0)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_forward_and_backward_apply_the_fusedops_mask(shape, p, seed, offset, dtype):
    x = torch.randn(shape, dtype=dtype, requires_grad=True)
    keep, packed = _keep(shape, p, seed, offset)
    y, mask = dropout_op(x, rng_tensor(seed, offset), p, True, True)
    assert np.array_equal(mask.numpy(), packed)
    scale = 1.0 - p if p < 1 else 1.0
    expect = torch.where(keep, x.detach(), 0.0) / scale  # x*keep/(1-p) as NumPy rounds it
    assert torch.equal(y, expect)
    for save_mask in (True, False):
        x.grad = None
        dy = torch.randn(shape, dtype=dtype)
        ft.dropout(x, p, seed=seed, offset=offset, save_mask=save_mask).backward(dy)
        assert torch.equal(x.grad, torch.where(keep, dy, 0.0) / scale)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_large_outputs_from_the_huge_page_allocator(dtype):
    """Outputs of 4 MiB and more come from NumPy's allocator (fusedops.torch._tensors.empty_like):
    still fresh, contiguous, of x's dtype, and equal to the mask; opcheck's schema and aliasing
    checks pass on them."""
    shape, p = (1024, 1025), 0.5
    x = torch.randn(shape, dtype=dtype, requires_grad=True)
    keep, _ = _keep(shape, p, 4, 9)
    y = ft.dropout(x, p, seed=4, offset=9)
    assert y.dtype == dtype and y.is_contiguous() and y.data_ptr() != x.data_ptr()
    assert torch.equal(y, torch.where(keep, x.detach(), 0.0) / (1 - p))
    dy = torch.randn(shape, dtype=dtype)
    y.backward(dy)
    assert x.grad.data_ptr() not in (dy.data_ptr(), y.data_ptr())
    assert torch.equal(x.grad, torch.where(keep, dy, 0.0) / (1 - p))
    torch.library.opcheck(dropout_op, (x, rng_tensor(4, 9), p, True, True),
                          test_utils=("test_schema", "test_autograd_registration"))


def test_classic_mode_and_eval():
    x = torch.randn(40, 9, dtype=torch.float64)
    keep, _ = _keep(x.shape, 0.25, 3, 1)
    y = ft.dropout(x, 0.25, seed=3, offset=1, mode="classic")
    assert torch.equal(y, torch.where(keep, x, 0.0))
    assert ft.dropout(x, 0.25, training=False, seed=3) is x
    assert torch.equal(ft.dropout(x, 0.25, False, seed=3, mode="classic"), x * 0.75)


def test_noncontiguous_input_uses_c_order():
    base = torch.randn(12, 10, dtype=torch.float64)
    x = base.t()  # (10, 12), not contiguous
    keep, _ = _keep((10, 12), 0.5, 9, 4)
    assert torch.equal(ft.dropout(x, 0.5, seed=9, offset=4), torch.where(keep, x, 0.0) / 0.5)


@pytest.mark.parametrize("save_mask", [True, False])
def test_gradcheck_float64(save_mask):
    x = torch.randn(5, 7, dtype=torch.float64, requires_grad=True)

    def f(t):
        return ft.dropout(t, 0.4, seed=11, offset=2, save_mask=save_mask)

    assert torch.autograd.gradcheck(f, (x,))
    assert torch.autograd.gradgradcheck(f, (x,))


def test_opcheck():
    x = torch.randn(6, 11, requires_grad=True)
    rng = rng_tensor(5, 3)
    for save in (True, False):
        torch.library.opcheck(dropout_op, (x, rng, 0.3, True, save))
    _, mask = dropout_op(x, rng, 0.3, False, True)
    dy = torch.randn(6, 11, requires_grad=True)
    torch.library.opcheck(dropout_backward_op, (dy, mask, rng, 0.3, False, True))
    torch.library.opcheck(dropout_backward_op, (dy, mask[:0], rng, 0.3, False, False))


def test_module_offset_advances_and_resumes():
    torch.manual_seed(0)
    d = ft.Dropout(0.5)
    torch.manual_seed(0)
    assert ft.Dropout(0.5).seed == d.seed  # seed=None follows torch's generator
    assert isinstance(d, torch.nn.Dropout) and d.seed.dtype == torch.int64
    x = torch.ones(8, 16)
    seed = int(d.seed)
    for k in range(3):
        keep, _ = _keep(x.shape, 0.5, seed, k)
        assert torch.equal(d(x), torch.where(keep, x, 0.0) / 0.5)
    assert int(d.offset) == 3
    resumed = ft.Dropout(0.5, seed=1)
    resumed.load_state_dict(d.state_dict())
    assert torch.equal(resumed(x), d(x))
    d.eval()
    assert d(x) is x and int(d.offset) == 4


def test_module_loads_a_torch_dropout_checkpoint_and_keeps_buffers_on_host():
    torch_model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout(0.2))
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), ft.Dropout(0.2, seed=5))
    model.load_state_dict(torch_model.state_dict())  # strict: no seed/offset there, kept
    assert int(model[1].seed) == 5
    model.to(torch.float64).to("meta")
    assert model[1].seed.device.type == "cpu" and model[1].offset.device.type == "cpu"
    assert model[0].weight.device.type == "meta"


def test_bad_arguments():
    x = torch.randn(4, 4)
    with pytest.raises(ValueError, match="p must be"):
        ft.dropout(x, 1.5, seed=0)
    with pytest.raises(ValueError, match="mode"):
        ft.dropout(x, 0.5, seed=0, mode="scaled")
    with pytest.raises(ValueError, match="seed"):
        ft.dropout(x, 0.5, seed=-1)
    with pytest.raises(ValueError, match="offset"):
        ft.dropout(x, 0.5, seed=0, offset=1 << 64)
    with pytest.raises(TypeError, match="x must have dtype"):
        ft.dropout(x.half(), 0.5, seed=0)
    with pytest.raises(ValueError, match="inplace"):
        ft.Dropout(0.5, inplace=True)
    with pytest.raises(ValueError, match="p must be"):
        ft.Dropout(-0.1)
