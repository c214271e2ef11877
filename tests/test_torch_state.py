"""Checkpoints in torch's format: a torch.optim checkpoint resumes in fusedops.torch and back,
bit for bit on what the next step reads (parameters, every state tensor, step counts,
hyperparameters), through torch.save / torch.load, with and without flatten_parameters."""
import io

import pytest

torch = pytest.importorskip("torch")

import fusedops.torch as ft  # noqa: E402
from torch_cases import (batch, clone_model, groups, loss_backward, make_model,  # noqa: E402
                         one_thread, split)

pytestmark = pytest.mark.usefixtures("one_thread")
KINDS = {  # fusedops.torch class name -> (torch class, options that create every state key)
    "SGD": (torch.optim.SGD, dict(lr=0.05, momentum=0.9)),
    "Adagrad": (torch.optim.Adagrad, dict(lr=0.05, initial_accumulator_value=0.1)),
    "RMSprop": (torch.optim.RMSprop, dict(lr=0.01, momentum=0.5, centered=True)),
    "Adam": (torch.optim.Adam, dict(lr=0.01, amsgrad=True)),
    "AdamW": (torch.optim.AdamW, dict(lr=0.01, weight_decay=0.1)),
}


def _roundtrip(state_dict):
    buf = io.BytesIO()
    torch.save(state_dict, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def _steps(model, opt, n, x, y):
    for _ in range(n):
        opt.zero_grad()
        loss_backward(model, x, y)
        opt.step()


def _assert_same_state(a, b, pa, pb):
    """Optimizers a and b hold bit-identical state for parameter lists pa, pb."""
    for p, q in zip(pa, pb):
        assert set(a.state[p]) == set(b.state[q])
        for key, value in a.state[p].items():
            other = b.state[q][key]
            assert value.dtype == other.dtype and torch.equal(value, other), key
            if key == "step":
                assert value.device.type == "cpu"
    for ga, gb in zip(a.param_groups, b.param_groups):
        assert {k: v for k, v in ga.items() if k not in ("params", "l1", "eps_inside_sqrt")} \
            == {k: v for k, v in gb.items() if k not in ("params", "l1", "eps_inside_sqrt")}


def _next_step_close(m1, o1, m2, o2, x, y):
    """One more step with the same gradients: the resumed optimizer uses the loaded state
    (a fresh state would move the parameters by far more than this tolerance)."""
    for m, o in ((m1, o1), (m2, o2)):
        o.zero_grad()
        loss_backward(m, x, y)
    for p, q in zip(m1.parameters(), m2.parameters()):
        q.grad.copy_(p.grad)
    o1.step()
    o2.step()
    for p, q in zip(m1.parameters(), m2.parameters()):
        torch.testing.assert_close(p, q, rtol=4e-15, atol=1e-16)


@pytest.mark.parametrize("flat", [False, True], ids=["tensors", "flat"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_torch_checkpoint_resumes_in_fusedops_and_back(kind, flat):
    tcls, kwargs = KINDS[kind]
    x, y = batch(torch.float64)
    tmodel = make_model(torch.float64)
    topt = tcls(groups(tmodel, kwargs), **kwargs)
    _steps(tmodel, topt, 3, x, y)
    # torch -> fusedops
    fmodel = clone_model(tmodel)
    if flat:
        ft.flatten_parameters(fmodel, split(fmodel))
    fopt = getattr(ft, kind)(groups(fmodel, kwargs), **kwargs)
    fopt.load_state_dict(_roundtrip(topt.state_dict()))
    _assert_same_state(topt, fopt, list(tmodel.parameters()), list(fmodel.parameters()))
    _next_step_close(tmodel, topt, fmodel, fopt, x, y)
    assert len(fopt._buckets) == (2 if flat else 0)
    # fusedops -> torch
    back_model = clone_model(fmodel)
    back = tcls(groups(back_model, kwargs), **kwargs)
    back.load_state_dict(_roundtrip(fopt.state_dict()))
    _assert_same_state(fopt, back, list(fmodel.parameters()), list(back_model.parameters()))
    _next_step_close(fmodel, fopt, back_model, back, x, y)


def test_loaded_state_is_owned_not_shared():
    """Loading a live torch optimizer's state_dict copies it: stepping one leaves the other."""
    model = make_model(torch.float64)
    topt = torch.optim.Adam(model.parameters(), lr=0.01)
    _steps(model, topt, 1, *batch(torch.float64))
    before = {k: v.clone() for k, v in topt.state[next(model.parameters())].items()}
    fmodel = clone_model(model)
    fopt = ft.Adam(fmodel.parameters(), lr=0.01)
    fopt.load_state_dict(topt.state_dict())
    _steps(fmodel, fopt, 1, *batch(torch.float64))
    for key, value in topt.state[next(model.parameters())].items():
        assert torch.equal(value, before[key]), key


def test_fusedops_options_survive_a_torch_checkpoint():
    model = make_model(torch.float64)
    topt = torch.optim.Adam(model.parameters(), lr=0.01)
    fopt = ft.Adam(model.parameters(), lr=0.5, l1=1e-3, eps_inside_sqrt=True)
    fopt.load_state_dict(topt.state_dict())
    group = fopt.param_groups[0]
    assert group["lr"] == 0.01 and group["l1"] == 1e-3 and group["eps_inside_sqrt"] is True


def test_capturable_checkpoint_loads_and_differentiable_is_refused():
    model = make_model(torch.float64)
    fopt = ft.Adam(model.parameters(), lr=0.01)
    sd = torch.optim.Adam(model.parameters(), lr=0.02, capturable=True).state_dict()
    fopt.load_state_dict(sd)
    assert fopt.param_groups[0]["capturable"] is False and fopt.param_groups[0]["lr"] == 0.02
    sd["param_groups"][0]["differentiable"] = True
    sd["param_groups"][0]["lr"] = 0.03
    with pytest.raises(ValueError, match="differentiable"):
        fopt.load_state_dict(sd)
    assert fopt.param_groups[0]["lr"] == 0.02  # unchanged


def test_pickle_keeps_backend():
    import pickle

    model = make_model(torch.float64)
    opt = ft.SGD(model.parameters(), lr=0.1, backend="numpy")
    again = pickle.loads(pickle.dumps(opt))
    assert again.backend == "numpy" and again.param_groups[0]["lr"] == 0.1
