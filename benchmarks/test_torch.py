"""fusedops.torch against PyTorch's own modules and optimizers, in the same groups (fp32):

- optimizer step, Adam on a 25M-parameter model (6 x Linear(2048, 2048)): fusedops.torch.Adam
  on the flattened model (one kernel call; numba and c) and per tensor, vs
  torch.optim.Adam(fused=True) and (foreach=True); 28 bytes per parameter;
- Dropout forward + backward on 16M elements (p = 0.5): fusedops.torch.Dropout (mask saved, and
  regenerated) vs torch.nn.Dropout; 16.25 bytes per element;
- BatchNorm1d forward + backward in training on (65536, 256): fusedops.torch.BatchNorm1d vs
  torch.nn.BatchNorm1d; 32 bytes per element;
  both also as "fusedops-ops-preallocated": the same fusedops.ops calls the modules make, into
  preallocated outputs. A module returns fresh output tensors (y, then dx), and a fresh
  64 MB buffer costs page faults on first touch: the difference between the two rows
  (fusedops.torch takes its large outputs from NumPy's huge-page allocations; torch's modules
  pay 4 KiB faults);
- one training step (forward, loss, backward, Adam) of an MLP with BatchNorm1d and Dropout:
  fusedops.torch modules and Adam on the flattened model vs the torch modules and fused Adam.

CUDA variants join the groups when torch has a GPU. Correctness is checked once before timing.

    pytest benchmarks/test_torch.py --benchmark-only --benchmark-group-by=group
    FUSEDOPS_BENCH_SIZES=1000000 pytest benchmarks/test_torch.py --benchmark-only   # quick
"""
import numpy as np
import pytest
from conftest import TORCH_CUDA, bench_sizes, run_benchmark, torch

if torch is None:
    pytest.skip("torch is not installed", allow_module_level=True)

import fusedops.torch as ft  # noqa: E402
from fusedops import ops  # noqa: E402

ADAM_N = bench_sizes([25_000_000])[0]
DROPOUT_N = bench_sizes([16_777_216])[0]
BN_N = bench_sizes([65536 * 256])[0]
DEVICES = ["cpu"] + (["cuda"] if TORCH_CUDA else [])


def _sync(device):
    return torch.cuda.synchronize if device == "cuda" else None


def _params(device):
    """with_device(contender list): (name, device) params."""
    return lambda names: [pytest.param(n, d, id=f"{n}-{d}") for d in DEVICES for n in names]


# --------------------------------------------------------------------------- Adam 25M

def _adam_model(device):
    width = max(16, int((ADAM_N / 6) ** 0.5))
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = torch.nn.Sequential(*[torch.nn.Linear(width, width) for _ in range(6)])
    for p in model.parameters():
        p.grad = torch.randn(p.shape, generator=gen)
    return model.to(device)


ADAM = {"fusedops-flat-numba": ("flat", "numba"), "fusedops-flat-c": ("flat", "c"),
        "fusedops-tensors": ("tensors", None), "torch-fused": {"fused": True},
        "torch-foreach": {"foreach": True}}


@pytest.mark.parametrize("name, device", _params(None)(list(ADAM)))
def test_adam_step(benchmark, name, device):
    if device == "cuda" and name == "fusedops-flat-c":
        pytest.skip("the C backend runs on the host")
    model = _adam_model(device)
    n = sum(p.numel() for p in model.parameters())
    benchmark.group = f"torch adam step n={n}"
    ref = _adam_model(device)
    if name.startswith("fusedops"):
        layout, backend = ADAM[name]
        if layout == "flat":
            ft.flatten_parameters(model)
        backend = "cuda" if device == "cuda" else backend
        opt = ft.Adam(model.parameters(), lr=1e-3, backend=backend)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, **ADAM[name])
    opt.step()  # warm-up (JIT), checked against torch's for-loop Adam
    torch.optim.Adam(ref.parameters(), lr=1e-3, foreach=False).step()
    for p, q in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)
    run_benchmark(benchmark, opt.step, nbytes=28 * n, on_gpu=device == "cuda",
                  sync=_sync(device))


# --------------------------------------------------------------------------- Dropout 16M

def _fwd_bwd(module, x, dy):
    def step():
        x.grad = None
        module(x).backward(dy)
    return step


def _preallocated_dropout(x, dy):
    """ops.dropout_forward + dropout_backward into preallocated host outputs."""
    xn, dyn = x.detach().numpy(), dy.numpy()
    yn, dxn = np.empty_like(xn), np.empty_like(xn)

    def step():
        _, mask = ops.dropout_forward(xn, 0.5, seed=1, out=yn)
        ops.dropout_backward(dyn, p=0.5, mask=mask, out=dxn)
        x.grad = torch.from_numpy(dxn)
    return step


@pytest.mark.parametrize("name, device", _params(None)(["fusedops", "fusedops-regen", "torch"])
                         + [pytest.param("fusedops-ops-preallocated", "cpu")])
def test_dropout_forward_backward(benchmark, name, device):
    benchmark.group = f"torch dropout fwd+bwd n={DROPOUT_N}"
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(DROPOUT_N // 1024, 1024, generator=gen).to(device).requires_grad_()
    dy = torch.randn(x.shape, generator=gen).to(device)
    if name == "fusedops-ops-preallocated":
        step = _preallocated_dropout(x, dy)
    elif name == "torch":
        module = torch.nn.Dropout(0.5)
    else:
        module = ft.Dropout(0.5, seed=1, save_mask=name == "fusedops")
    if name != "fusedops-ops-preallocated":
        step = _fwd_bwd(module, x, dy)
    step()
    kept = x.grad != 0  # checked: dx = dy * keep / (1 - p), about half kept
    assert abs(float(kept.float().mean()) - 0.5) < 0.01
    assert torch.equal(x.grad[kept], dy[kept] * 2)
    run_benchmark(benchmark, step, nbytes=int(16.25 * x.numel()), on_gpu=device == "cuda",
                  sync=_sync(device))


# --------------------------------------------------------------------------- BatchNorm1d

def _preallocated_batchnorm(x, dy):
    """ops.batchnorm_forward + batchnorm_backward into preallocated host outputs."""
    xn, dyn = x.detach().numpy(), dy.numpy()
    yn, dxn = np.empty_like(xn), np.empty_like(xn)
    gamma, beta = np.ones(256, np.float32), np.zeros(256, np.float32)
    rm, rv = np.zeros(256, np.float32), np.ones(256, np.float32)

    def step():
        _, mean, invstd = ops.batchnorm_forward(xn, gamma, beta, rm, rv, training=True, out=yn)
        ops.batchnorm_backward(dyn, xn, gamma, mean, invstd, out=dxn)
        x.grad = torch.from_numpy(dxn)
    return step


@pytest.mark.parametrize("name, device", _params(None)(["fusedops", "torch"])
                         + [pytest.param("fusedops-ops-preallocated", "cpu")])
def test_batchnorm_forward_backward(benchmark, name, device):
    rows = max(2, BN_N // 256)
    benchmark.group = f"torch batchnorm1d fwd+bwd ({rows}, 256)"
    gen = torch.Generator().manual_seed(0)
    x = (torch.randn(rows, 256, generator=gen) * 2 + 3).to(device).requires_grad_()
    dy = torch.randn(x.shape, generator=gen).to(device)
    if name == "fusedops-ops-preallocated":
        step = _preallocated_batchnorm(x, dy)
    else:
        module = (ft.BatchNorm1d if name == "fusedops" else torch.nn.BatchNorm1d)(256)
        step = _fwd_bwd(module.to(device), x, dy)
    step()
    ref = torch.nn.BatchNorm1d(256).to(device)
    xr = x.detach().clone().requires_grad_()
    ref(xr).backward(dy)
    torch.testing.assert_close(x.grad, xr.grad, rtol=1e-4, atol=1e-5)
    run_benchmark(benchmark, step, nbytes=32 * x.numel(), on_gpu=device == "cuda",
                  sync=_sync(device))


# --------------------------------------------------------------------------- MLP step

MLP = {"small": ([64, 256, 256, 10], 128), "large": ([1024, 4096, 4096, 1024], 512)}


def _mlp(kind, sizes, device):
    torch.manual_seed(0)
    bn, drop = (ft.BatchNorm1d, ft.Dropout) if kind == "fusedops" else \
        (torch.nn.BatchNorm1d, torch.nn.Dropout)
    layers = []
    for i in range(len(sizes) - 2):
        layers += [torch.nn.Linear(sizes[i], sizes[i + 1], bias=False), bn(sizes[i + 1]),
                   torch.nn.ReLU(), drop(0.1)]
    model = torch.nn.Sequential(*layers, torch.nn.Linear(sizes[-2], sizes[-1])).to(device)
    if kind == "fusedops":
        ft.flatten_parameters(model)
        return model, ft.Adam(model.parameters(), lr=1e-3)
    return model, torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)


@pytest.mark.parametrize("case", list(MLP))
@pytest.mark.parametrize("name, device", _params(None)(["fusedops", "torch"]))
def test_mlp_training_step(benchmark, name, device, case):
    sizes, batch = MLP[case]
    benchmark.group = f"torch mlp step {'-'.join(map(str, sizes))} batch={batch}"
    model, opt = _mlp(name, sizes, device)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(batch, sizes[0], generator=gen).to(device)
    y = torch.randint(0, sizes[-1], (batch,), generator=gen).to(device)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss

    first = float(step().detach())
    for _ in range(3):
        last = float(step().detach())
    assert last < first  # it trains
    sync = _sync(device)
    benchmark(lambda: (step(), sync()) if sync else step())
