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
    """Both optimizers read the CPU model's gradients, so only the kernels differ."""
    model = make_model(torch.float64)
    gpu = clone_model(model).cuda()
    if flat:
        ft.flatten_parameters(gpu, split(gpu))
    x, y = batch(torch.float64)
    cpu_opt, opt = ft.AdamW(model.parameters(), lr=0.01), ft.AdamW(gpu.parameters(), lr=0.01)
    for _ in range(4):
        for m, o, xb, yb in ((model, cpu_opt, x, y), (gpu, opt, x.cuda(), y.cuda())):
            o.zero_grad()
            loss_backward(m, xb, yb)  # on the GPU: puts the gradients in the flat buffer
        for p, q in zip(model.parameters(), gpu.parameters()):
            q.grad.copy_(p.grad)
        cpu_opt.step()
        opt.step()
    for p, q in zip(model.parameters(), gpu.parameters()):
        torch.testing.assert_close(q.cpu(), p, rtol=1e-13, atol=1e-15)
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
    """Work queued on a side stream right before the fused ops: they must wait for it, and the
    work queued after them must wait for them (fresh values each round: a kernel on another
    stream would read or leave stale memory)."""
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        for r in range(3):
            x = torch.full((1 << 22,), float(r), device="cuda")
            for _ in range(20):
                x = x + 1.0  # a queue of kernels on s; x ends at r + 20
            y = ft.dropout(x, 0.5, seed=1, offset=r)
            assert set(torch.unique(y).tolist()) == {0.0, 2.0 * (r + 20)}
            w = torch.nn.Parameter(torch.zeros(1 << 22, device="cuda"))
            w.grad = x.clone()
            ft.SGD([w], lr=1.0).step()
            assert torch.equal(w.detach(), -x)
    torch.cuda.synchronize()
