"""flatten_parameters: parameters and gradients become views of one buffer per (device, dtype),
values and module behaviour unchanged, and the gradient views survive torch's training loop."""
import pytest

torch = pytest.importorskip("torch")

import fusedops.torch as ft  # noqa: E402
from torch_cases import batch, clone_model, loss_backward, make_model, split  # noqa: E402


def _inside(t, buf):
    start = buf.data_ptr()
    return start <= t.data_ptr() and t.data_ptr() + t.numel() * t.element_size() <= \
        start + buf.numel() * buf.element_size()


def test_parameters_become_views_and_values_are_kept():
    model = make_model(torch.float32)
    ref = clone_model(model)
    x, y = batch(torch.float32)
    loss_backward(model, x, y)
    grads = [p.grad.clone() for p in model.parameters()]
    ids = [id(p) for p in model.parameters()]
    (flat,) = ft.flatten_parameters(model)
    assert [id(p) for p in model.parameters()] == ids  # the same Parameter objects
    assert flat.params.numel() == sum(p.numel() for p in model.parameters())
    off = 0
    for p, q, g in zip(model.parameters(), ref.parameters(), grads):
        assert p.data_ptr() == flat.params.data_ptr() + off * 4
        assert p.grad.data_ptr() == flat.grads.data_ptr() + off * 4
        assert torch.equal(p, q) and torch.equal(p.grad, g)
        off += p.numel()
    assert torch.equal(model(x), ref(x))
    assert list(flat.members) == list(model.parameters())


def test_groups_are_contiguous_spans_in_the_given_order():
    model = make_model(torch.float32)
    ws, bs = split(model)
    (flat,) = ft.flatten_parameters(model, [{"params": bs}, ws])
    assert list(flat.members) == bs + ws
    end_of_biases = bs[-1].data_ptr() + bs[-1].numel() * 4
    assert ws[0].data_ptr() == end_of_biases


def test_one_buffer_per_dtype_and_frozen_parameters_stay():
    model = make_model(torch.float32)
    model[2].double()
    model[0].bias.requires_grad_(False)
    frozen = model[0].bias.data_ptr()
    bufs = ft.flatten_parameters(model)
    assert [b.params.dtype for b in bufs] == [torch.float32, torch.float64]
    f32 = next(b for b in bufs if b.params.dtype == torch.float32)
    assert list(f32.members) == [model[0].weight]
    assert model[0].bias.data_ptr() == frozen


@pytest.mark.parametrize("set_to_none", [True, False])
def test_gradients_stay_in_the_flat_buffer_through_training(set_to_none):
    """zero_grad either way, two backward calls (gradient accumulation): .grad is the view and
    holds what autograd computes without flattening."""
    model, ref = make_model(torch.float64), None
    ref = clone_model(model)
    (flat,) = ft.flatten_parameters(model)
    x, y = batch(torch.float64)
    for _ in range(2):
        for m in (model, ref):
            m.zero_grad(set_to_none=set_to_none)
            loss_backward(m, x, y)
            loss_backward(m, x[:7], y[:7])
        for p, q in zip(model.parameters(), ref.parameters()):
            assert _inside(p.grad, flat.grads)
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-14, atol=0)


@pytest.mark.filterwarnings(r"ignore:Using backward\(\) with create_graph=True")
def test_create_graph_keeps_the_autograd_gradient():
    model = make_model(torch.float64)
    ft.flatten_parameters(model)
    x, y = batch(torch.float64)
    loss = (model(x) - y).pow(2).mean()
    loss.backward(create_graph=True)
    w = model[0].weight
    assert w.grad.requires_grad  # not replaced by the (graph-less) flat view
    w.grad.sum().backward()  # second order still works


def test_bad_arguments():
    with pytest.raises(TypeError, match="module"):
        ft.flatten_parameters([torch.nn.Parameter(torch.zeros(3))])
    model = make_model(torch.float32)
    before = [p.data_ptr() for p in model.parameters()]
    with pytest.raises(ValueError, match=r"param_groups\[0\]"):
        ft.flatten_parameters(model, [[torch.nn.Parameter(torch.zeros(3))]])
    assert [p.data_ptr() for p in model.parameters()] == before
