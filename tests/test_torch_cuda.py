"""fusedops.torch on the CUDA kernels.

On a machine with a GPU: CUDA tensors are stepped, dropped out and normalized in place by the
CUDA kernels (zero copy, on PyTorch's current stream), equal to the CPU results; dropout masks
equal fusedops.ops.dropout_mask. Without a GPU these skip; the CUDA kernels still run under
NUMBA_ENABLE_CUDASIM=1 through backend="cuda" on CPU tensors (staged copies)."""
import pytest

torch = pytest.importorskip("torch")

import fusedops.torch as ft  # noqa: E402
from fusedops import backends, ops  # noqa: E402
from torch_cases import batch, clone_model, loss_backward, make_model, split  # noqa: E402

pytestmark = pytest.mark.cuda
CUDA_REASON = backends.backend_unavailable_reason("cuda")
needs_cuda_backend = pytest.mark.skipif(CUDA_REASON is not None,
                                        reason=f"cuda unavailable: {CUDA_REASON}")
needs_gpu = pytest.mark.skipif(not torch.cuda.is_available() or CUDA_REASON is not None
                               or backends.cuda_simulator(),
                               reason="needs a GPU with torch CUDA and numba-cuda")


def _train(model, opt, steps, x, y):
    for _ in range(steps):
        opt.zero_grad()
        loss_backward(model, x, y)
        opt.step()


@needs_cuda_backend
def test_cuda_backend_on_cpu_tensors_equals_numba():
    """backend="cuda" runs the CUDA Adam kernel (on the simulator without a GPU)."""
    model = make_model(torch.float64)
    ref = clone_model(model)
    ft.flatten_parameters(model, split(model))
    x, y = batch(torch.float64)
    _train(model, ft.Adam(model.parameters(), lr=0.01, amsgrad=True, backend="cuda"), 3, x, y)
    _train(ref, ft.Adam(ref.parameters(), lr=0.01, amsgrad=True), 3, x, y)
    for p, q in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-14, atol=1e-16)


@needs_gpu
@pytest.mark.parametrize("flat", [False, True])
def test_optimizer_on_cuda_tensors_equals_cpu(flat):
    model = make_model(torch.float64)
    gpu = clone_model(model).cuda()
    if flat:
        ft.flatten_parameters(gpu, split(gpu))
    x, y = batch(torch.float64)
    _train(model, ft.AdamW(model.parameters(), lr=0.01), 4, x, y)
    opt = ft.AdamW(gpu.parameters(), lr=0.01)
    _train(gpu, opt, 4, x.cuda(), y.cuda())
    for p, q in zip(model.parameters(), gpu.parameters()):
        torch.testing.assert_close(q.cpu(), p, rtol=1e-12, atol=1e-14)
        st = opt.state[q]
        assert st["exp_avg"].is_cuda and st["step"].device.type == "cpu"
    assert len(opt._buckets) == (2 if flat else 0)


@needs_gpu
def test_dropout_mask_on_cuda_equals_dropout_mask():
    x = torch.randn(37, 129, device="cuda", dtype=torch.float64, requires_grad=True)
    y = ft.dropout(x, 0.3, seed=123, offset=4)
    keep = torch.from_numpy(ops.unpack_mask(ops.dropout_mask(x.shape, 0.3, seed=123, offset=4),
                                            tuple(x.shape))).cuda()
    assert torch.equal(y, torch.where(keep, x.detach(), 0.0) / 0.7)
    y.backward(torch.ones_like(y))
    assert torch.equal(x.grad, torch.where(keep, 1.0, 0.0).double() / 0.7)


@needs_gpu
def test_batchnorm_on_cuda_equals_cpu():
    cpu = ft.BatchNorm1d(6).double()
    gpu = ft.BatchNorm1d(6).double().cuda()
    x = torch.randn(64, 6, 5, dtype=torch.float64) * 2 + 3
    xs = [x.clone().requires_grad_(), x.cuda().requires_grad_()]
    for m, xi in zip((cpu, gpu), xs):
        m(xi).pow(2).sum().backward()
    torch.testing.assert_close(xs[1].grad.cpu(), xs[0].grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gpu.running_var.cpu(), cpu.running_var, rtol=1e-14, atol=0)


@needs_gpu
def test_kernels_run_on_the_current_stream():
    """Work queued on a side stream right before the fused op: the op must wait for it."""
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        for _ in range(3):
            x = torch.ones(1 << 22, device="cuda")
            for _ in range(20):
                x = x * 1.0 + 0.0  # a queue of kernels on s
            y = ft.dropout(x, 0.5, seed=1, offset=0)
            expect = torch.where(y != 0, 2.0, 0.0)
            assert torch.equal(y, expect) and int((y != 0).sum()) > 0
    torch.cuda.synchronize()
