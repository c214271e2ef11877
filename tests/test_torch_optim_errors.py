"""Bad input to fusedops.torch optimizers: a clear exception naming the argument, raised before
any parameter or state changes; options a fused step cannot honour are refused by name."""
import pytest

torch = pytest.importorskip("torch")

import fusedops.torch as ft  # noqa: E402
from fusedops import BackendUnavailableError, backends  # noqa: E402


def _params(*shapes, dtype=torch.float32):
    out = []
    for s in shapes:
        p = torch.nn.Parameter(torch.randn(s, dtype=dtype))
        p.grad = torch.randn(s, dtype=dtype)
        out.append(p)
    return out


def _snapshot(params):
    return [(p.detach().clone(), p.grad.clone()) for p in params]


def _unchanged(params, snap):
    return all(torch.equal(p, a) and torch.equal(p.grad, g) for p, (a, g) in zip(params, snap))


@pytest.mark.parametrize("cls, kwargs, match", [
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.1), "dampening"),
    ("SGD", dict(lr=0.1, differentiable=True), "differentiable"),
    ("Adam", dict(capturable=True), "capturable"),
    ("AdamW", dict(differentiable=True), "differentiable"),
    ("RMSprop", dict(capturable=True), "capturable"),
    ("Adagrad", dict(differentiable=True), "differentiable"),
    ("Adam", dict(lr=-1.0), "lr"),
    ("Adam", dict(betas=(0.9, 1.0)), "beta2"),
    ("Adam", dict(betas=(0.9,)), "betas"),
    ("SGD", dict(lr=0.1, nesterov=True), "nesterov"),
    ("RMSprop", dict(alpha=1.5), "alpha"),
    ("Adagrad", dict(lr_decay=-0.1), "lr_decay"),
    ("Adagrad", dict(initial_accumulator_value=-1.0), "initial_accumulator_value"),
    ("Adam", dict(l1=-1e-3), "l1"),
    ("Adam", dict(eps_inside_sqrt="yes"), "eps_inside_sqrt"),
    ("Adam", dict(lr=torch.tensor([0.1, 0.2])), "lr must be a number or a 1-element tensor"),
])
def test_refused_options(cls, kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        getattr(ft, cls)(_params(3), **kwargs)


def test_group_options_are_checked_and_a_bad_group_is_not_added():
    a, b = _params(3), _params(4)
    with pytest.raises(ValueError, match=r"param_groups\[1\]: weight_decay"):
        ft.Adam([{"params": a}, {"params": b, "weight_decay": -1}])
    opt = ft.Adam(a, lr=0.1)
    with pytest.raises(ValueError, match=r"param_groups\[1\]: lr must be >= 0"):
        opt.add_param_group({"params": b, "lr": -0.5})
    assert len(opt.param_groups) == 1
    opt.add_param_group({"params": b, "lr": 0.5})
    assert opt.param_groups[1]["lr"] == 0.5 and opt.param_groups[1]["l1"] == 0.0


def test_changed_hyperparameter_is_checked_before_any_group_steps():
    a, b = _params(3), _params(4)
    opt = ft.SGD([{"params": a}, {"params": b}], lr=0.1)
    opt.param_groups[1]["lr"] = float("nan")
    snap = _snapshot(a + b)
    with pytest.raises(ValueError, match=r"param_groups\[1\]: lr must be finite"):
        opt.step()
    assert _unchanged(a + b, snap)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.complex64])
def test_dtypes_the_kernels_do_not_serve(dtype):
    with pytest.raises(TypeError, match=r"param_groups\[0\]\['params'\]\[0\] must have dtype"):
        ft.Adam([torch.nn.Parameter(torch.zeros(3, dtype=dtype))])


def test_sparse_and_mismatched_gradients_change_nothing():
    a = _params(4, 5)
    opt = ft.Adam(a, lr=0.1)
    good = _snapshot(a)
    a[1].grad = torch.zeros(5).to_sparse()
    with pytest.raises(RuntimeError, match=r"\['params'\]\[1\]: sparse gradients"):
        opt.step()
    a[1].grad_dtype = None  # torch otherwise refuses the assignment itself
    a[1].grad = torch.zeros(5, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"\['params'\]\[1\]\.grad must match"):
        opt.step()
    assert torch.equal(a[0], good[0][0]) and a[0] not in opt.state


def test_param_whose_dtype_changed_after_construction():
    (p,) = _params(3)
    opt = ft.SGD([p], lr=0.1)
    p.data = p.data.half()
    p.grad = torch.zeros(3, dtype=torch.float16)
    with pytest.raises(TypeError, match="must have dtype"):
        opt.step()


def test_backend_is_checked():
    with pytest.raises(ValueError, match="backend must be one of"):
        ft.SGD(_params(3), lr=0.1, backend="gpu")
    if backends.backend_unavailable_reason("cuda") is not None:
        with pytest.raises(BackendUnavailableError, match="cuda"):
            ft.SGD(_params(3), lr=0.1, backend="cuda")
