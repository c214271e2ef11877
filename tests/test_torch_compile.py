"""torch.compile(model, backend="aot_eager") of a model with fusedops Dropout and BatchNorm1d
equals eager mode: outputs, gradients, running statistics, num_batches_tracked and the dropout
offsets, over training steps and an eval call (the custom ops run the same kernels in both)."""
import copy

import pytest

torch = pytest.importorskip("torch")

import fusedops.torch as ft  # noqa: E402
from torch_cases import one_thread  # noqa: E402,F401

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(10, 16), ft.BatchNorm1d(16), torch.nn.ReLU(),
                               ft.Dropout(0.3, seed=7), torch.nn.Linear(16, 8),
                               ft.BatchNorm1d(4), ft.Dropout(0.2, seed=9, save_mask=False))


class _Reshape(torch.nn.Module):
    def forward(self, x):
        return x.view(x.shape[0], 4, 2)  # (N, C, L) for the second BatchNorm1d


def test_aot_eager_equals_eager():
    eager = _model()
    eager.insert(5, _Reshape())
    compiled_module = copy.deepcopy(eager)
    compiled = torch.compile(compiled_module, backend="aot_eager", fullgraph=True)
    gen = torch.Generator().manual_seed(1)
    for step in range(3):
        training = step < 2
        eager.train(training)
        compiled_module.train(training)
        x = torch.randn(32, 10, generator=gen)
        outs = []
        for m in (eager, compiled):
            m.zero_grad()
            y = m(x)
            if training:
                (y * torch.arange(y.numel()).view(y.shape)).sum().backward()
            outs.append(y)
        assert torch.equal(outs[0], outs[1])
        for p, q in zip(eager.parameters(), compiled_module.parameters()):
            assert (p.grad is None and q.grad is None) or torch.equal(p.grad, q.grad)
        for (name, a), (_, b) in zip(eager.named_buffers(), compiled_module.named_buffers()):
            assert torch.equal(a, b), name
    assert int(eager[3].offset) == 2 and int(eager[1].num_batches_tracked) == 2
