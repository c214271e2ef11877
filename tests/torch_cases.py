"""Shared pieces of the fusedops.torch optimizer tests: a small real torch.nn model, its two
parameter groups, the torch.optim equivalents of every option, and the tolerance rule.

Tolerance rule (per element, after several steps): a parameter or state element is a running
sum, so its rounding error is bounded by a few eps times the sum of the magnitudes of what was
added into it: scale = |x_0| + sum_t |x_t - x_(t-1)| along the float64 torch.optim trajectory.
fusedops must be within BOUND * eps * scale of that trajectory (float64 and float32 alike), or
within twice the error torch.optim's own float32 run has under the same rule (in units of the
dtype's eps) when that is larger: RMSprop's sqrt of a tiny average, momentum with weight decay
amplify any rounding difference, and fusedops rounds in another order than torch does. Bugs in the adapter (a swapped key, a wrong option, an off-by-one step) move
elements by many thousands of these units.
"""
import copy

import pytest
import torch

import fusedops

BOUND = 8  # measured: <= 5.2 units in the cases without amplification (float64 and float32)
STEPS = 20

# (name, fusedops.torch class name, torch.optim class, keyword arguments)
CASES = [
    ("sgd", "SGD", torch.optim.SGD, dict(lr=0.05)),
    ("sgd-wd-momentum", "SGD", torch.optim.SGD, dict(lr=0.05, momentum=0.9, weight_decay=0.01)),
    ("sgd-nesterov-maximize", "SGD", torch.optim.SGD,
     dict(lr=0.05, momentum=0.8, nesterov=True, maximize=True)),
    ("adagrad", "Adagrad", torch.optim.Adagrad, dict(lr=0.05)),
    ("adagrad-decay-init-wd-maximize", "Adagrad", torch.optim.Adagrad,
     dict(lr=0.05, lr_decay=0.05, initial_accumulator_value=0.1, weight_decay=0.01, eps=1e-6,
          maximize=True)),
    ("rmsprop", "RMSprop", torch.optim.RMSprop, dict(lr=0.01)),
    ("rmsprop-momentum-wd", "RMSprop", torch.optim.RMSprop,
     dict(lr=0.01, alpha=0.9, momentum=0.5, weight_decay=0.01)),
    ("rmsprop-centered-maximize", "RMSprop", torch.optim.RMSprop,
     dict(lr=0.01, centered=True, momentum=0.9, eps=1e-6, maximize=True)),
    ("adam", "Adam", torch.optim.Adam, dict(lr=0.01)),
    ("adam-betas-wd-amsgrad", "Adam", torch.optim.Adam,
     dict(lr=0.01, betas=(0.8, 0.99), weight_decay=0.01, amsgrad=True, eps=1e-6)),
    ("adam-decoupled-maximize", "Adam", torch.optim.Adam,
     dict(lr=0.01, weight_decay=0.05, decoupled_weight_decay=True, maximize=True)),
    ("adamw", "AdamW", torch.optim.AdamW, dict(lr=0.01)),
    ("adamw-amsgrad-maximize", "AdamW", torch.optim.AdamW,
     dict(lr=0.01, betas=(0.5, 0.9), weight_decay=0.1, amsgrad=True, maximize=True)),
]


def make_model(dtype, seed=0):
    """Linear(12, 24) -> Tanh -> Linear(24, 5), initialized from `seed`."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(12, 24), torch.nn.Tanh(),
                               torch.nn.Linear(24, 5)).to(dtype)


def split(model):
    """(weights, biases): the usual decay / no-decay split."""
    ws = [p for n, p in model.named_parameters() if n.endswith("weight")]
    return ws, [p for n, p in model.named_parameters() if n.endswith("bias")]


def groups(model, kwargs):
    """Two groups with their own options: weights (weight decay 0.02 unless the case sets
    one), biases at half the learning rate."""
    ws, bs = split(model)
    first = {"params": ws} if "weight_decay" in kwargs else {"params": ws, "weight_decay": 0.02}
    return [first, {"params": bs, "lr": kwargs.get("lr", 1e-3) / 2}]


def batch(dtype, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(48, 12, generator=gen).to(dtype), torch.randn(48, 5, generator=gen).to(dtype)


def loss_backward(model, x, y):
    loss = (model(x) - y).pow(2).mean()
    loss.backward()
    return loss


def clone_model(model, dtype=None):
    m = copy.deepcopy(model)
    return m if dtype is None else m.to(dtype)


def units(got, ref, scale, dtype):
    """max |got - ref| / (eps * scale) over the elements (0 for identical tensors)."""
    eps = torch.finfo(dtype).eps
    err = (got.detach().double() - ref.detach().double()).abs()
    ratio = torch.where(err == 0, 0.0, err / (eps * scale))  # scale 0: only exact passes
    return float(ratio.max()) if err.numel() else 0.0


class Trajectory:
    """Running scale = |x_0| + sum_t |x_t - x_(t-1)| of named float64 reference tensors."""

    def __init__(self):
        self.last, self.scale = {}, {}

    def update(self, name, t):
        t = t.detach().double().clone()
        if name not in self.last:
            self.scale[name] = t.abs()
        else:
            self.scale[name] = self.scale[name] + (t - self.last[name]).abs()
        self.last[name] = t
        return self.scale[name]


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread and one fusedops thread: these tests time nothing, and on a small model
    two OpenMP pools (torch's and the kernels') spinning against each other on a busy machine
    cost seconds per test."""
    before = torch.get_num_threads(), fusedops.get_num_threads()
    torch.set_num_threads(1)
    fusedops.set_num_threads(1)
    yield
    torch.set_num_threads(before[0])
    fusedops.set_num_threads(before[1])
