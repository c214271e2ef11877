"""nn on the GPU: parameters, activations and gradients as CuPy arrays, matrix products in
cuBLAS, dropout / batch norm / optimizer steps in the fused CUDA kernels. These tests need a
real GPU and CuPy and skip cleanly without them; without them `backend="cuda"` must raise a
clear error (tested in every run, the simulator's included)."""
import numpy as np
import pytest
from nn_helpers import set_offsets, single_threaded

from fusedops import BackendUnavailableError
from fusedops.nn import MLP, Autoencoder
from fusedops.nn.parameter import array_module, resolve_nn_backend

pytestmark = pytest.mark.cuda


def _gpu_reason():
    try:
        resolve_nn_backend("cuda")
    except BackendUnavailableError as exc:
        return str(exc)
    from fusedops.backends import cuda_simulator

    return "the CUDA simulator cannot run CuPy's cuBLAS products" if cuda_simulator() else None


REASON = _gpu_reason()
needs_gpu = pytest.mark.skipif(REASON is not None, reason=f"needs a GPU and CuPy: {REASON}")


@pytest.fixture(autouse=True, scope="module")
def _single_threaded():
    with single_threaded():
        yield


@pytest.mark.skipif(REASON is None, reason="a GPU and CuPy are present")
def test_cuda_without_gpu_or_cupy_is_a_clear_error():
    for make in (lambda: MLP([4, 3], backend="cuda"), lambda: Autoencoder(4, (3,), 2, backend="cuda")):
        with pytest.raises(BackendUnavailableError, match="cuda") as info:
            make()
        assert "CuPy" in str(info.value) or "CUDA" in str(info.value) or "device" in str(info.value)


@pytest.fixture(scope="module")
def digits():
    pytest.importorskip("sklearn")
    from fusedops.data import load_digits

    return load_digits()


@needs_gpu
def test_state_lives_on_the_device_and_matches_the_host(digits):
    cp = array_module("cuda")
    Xtr, Xte, ytr, yte = digits
    runs = {}
    for be in ("numpy", "cuda"):
        m = MLP([64, 48, 32, 10], dropout=0.3, batchnorm=True, seed=7, backend=be)
        runs[be] = (m.fit(Xtr[:500], ytr[:500], epochs=3, batch_size=50).loss, m)
    loss, m = runs["cuda"]
    assert isinstance(m.flat.data, cp.ndarray) and isinstance(m.flat.grad, cp.ndarray)
    assert all(isinstance(p.data, cp.ndarray) for p in m.parameters())
    assert isinstance(m._bn_layers()[0].running_mean, cp.ndarray)
    # same seeds, same dropout masks (Philox is identical on every backend), float32 rounding
    np.testing.assert_allclose(loss, runs["numpy"][0], rtol=2e-3)
    np.testing.assert_allclose(m.predict_proba(Xte), runs["numpy"][1].predict_proba(Xte), atol=2e-3)


@needs_gpu
def test_gradients_match_the_host_float64():
    cp = array_module("cuda")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(16, 5))
    y = rng.integers(0, 3, 16)
    grads = {}
    for be in ("numpy", "cuda"):
        m = MLP([5, 7, 6, 3], dropout=0.3, batchnorm=True, seed=5, backend=be, dtype=np.float64)
        set_offsets(m.net, 0)
        out = m.net.forward(m.xp.asarray(X))
        _, g = m.loss_fn.value_and_grad(out, m.xp.asarray(y))
        m.net.backward(g)
        grads[be] = cp.asnumpy(m.flat.grad) if be == "cuda" else m.flat.grad.copy()
    np.testing.assert_allclose(grads["cuda"], grads["numpy"], rtol=1e-9, atol=1e-12)


@needs_gpu
def test_digits_on_the_gpu(digits, tmp_path):
    Xtr, Xte, ytr, yte = digits
    m = MLP([64, 256, 256, 10], dropout=0.2, batchnorm=True, seed=0, backend="cuda")
    m.fit(Xtr, ytr, epochs=25, batch_size=64, lr=2e-3)
    assert m.score(Xte, yte) >= 0.97
    m.save(tmp_path / "gpu.npz")
    host = MLP.load(tmp_path / "gpu.npz", backend="numba")
    np.testing.assert_allclose(host.predict_proba(Xte), m.predict_proba(Xte), atol=1e-4)


@needs_gpu
@pytest.mark.parametrize("noise", [("gaussian", 0.3), ("masking", 0.3)])
def test_denoising_autoencoder_on_the_gpu(digits, noise):
    from fusedops.data import add_noise, psnr

    Xtr, Xte, _, _ = digits
    ae = Autoencoder(64, (128,), 32, noise=noise, seed=0, backend="cuda")
    ae.fit(Xtr, epochs=30, batch_size=32, lr=3e-3)
    noisy = add_noise(Xte, noise[0], noise[1], seed=1)
    assert psnr(Xte, ae.reconstruct(noisy)) >= psnr(Xte, noisy) + 3


@pytest.mark.skipif(not __import__("fusedops").backends.cuda_simulator(),
                    reason="the simulator variant: NumPy stands in for CuPy")
def test_cuda_path_under_the_simulator(monkeypatch):
    """backend='cuda' end to end with NumPy arrays standing in for CuPy's: every dropout, batch
    norm and optimizer call goes to the CUDA kernels (run by the simulator); gradients, a step
    and a short fit match the NumPy backend."""
    import fusedops.nn.models as models
    import fusedops.nn.parameter as parameter

    monkeypatch.setattr(parameter, "array_module", lambda backend: np)
    monkeypatch.setattr(models, "array_module", lambda backend: np)
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(12, 5)), rng.integers(0, 3, 12)
    ms = {be: MLP([5, 7, 6, 3], dropout=0.3, batchnorm=True, seed=5, backend=be, dtype=np.float64)
          for be in ("numpy", "cuda")}
    for m in ms.values():
        set_offsets(m.net, 0)
        _, g = m.loss_fn.value_and_grad(m.net.forward(X), y)
        m.net.backward(g)
        m.set_optimizer("adam", lr=1e-2, l2=1e-3)
        m.optimizer.step()
    assert ms["cuda"].optimizer._backend == "cuda"
    np.testing.assert_allclose(ms["cuda"].flat.grad, ms["numpy"].flat.grad, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ms["cuda"].flat.data, ms["numpy"].flat.data, rtol=1e-9, atol=1e-12)
    hist = {be: m.fit(X, y, epochs=1, batch_size=6).loss for be, m in ms.items()}
    np.testing.assert_allclose(hist["cuda"], hist["numpy"], rtol=1e-9)
