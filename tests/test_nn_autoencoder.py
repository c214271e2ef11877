"""Autoencoders on the digits: reconstruction against PCA, denoising, latent sampling and
interpolation, save/load."""
import numpy as np
import pytest
from nn_helpers import single_threaded

import fusedops.nn
from fusedops.data import add_noise, load_digits, psnr
from fusedops.nn import MLP, Autoencoder

pytest.importorskip("sklearn")


@pytest.fixture(autouse=True, scope="module")
def _single_threaded():
    with single_threaded():
        yield


X_TR, X_TE, Y_TR, Y_TE = load_digits(test_size=0.2, seed=0)


def _pca_mse(k):
    mu = X_TR.astype(np.float64).mean(0)
    _, _, vt = np.linalg.svd(X_TR - mu, full_matrices=False)
    v = vt[:k].T
    return float((((X_TE - mu) @ v @ v.T + mu - X_TE) ** 2).mean())


def test_autoencoder_beats_pca_and_samples():
    ae = Autoencoder(64, (128,), 16, seed=0)
    ae.fit(X_TR, epochs=40, batch_size=32, lr=3e-3)
    mse, pca = ae.evaluate(X_TE)["mse"], _pca_mse(16)
    assert mse <= 1.1 * pca, (mse, pca)
    np.testing.assert_allclose(mse, ((ae.reconstruct(X_TE) - X_TE) ** 2).mean(), rtol=1e-5)
    z = ae.encode(X_TE)
    assert z.shape == (len(X_TE), 16)
    np.testing.assert_allclose(ae.decode(z), ae.reconstruct(X_TE), rtol=1e-5, atol=1e-6)
    s = ae.sample(5, seed=1)
    assert s.shape == (5, 64) and s.min() >= 0 and s.max() <= 1
    path = ae.interpolate(X_TE[0], X_TE[1], steps=5)
    assert path.shape == (5, 64)
    np.testing.assert_allclose(path[0], ae.reconstruct(X_TE[:1])[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("noise", [("gaussian", 0.3), ("masking", 0.3)])
def test_denoising_autoencoder_raises_psnr(noise):
    kind, level = noise
    ae = Autoencoder(64, (128,), 32, noise=noise, seed=0)
    ae.fit(X_TR, epochs=30, batch_size=32, lr=3e-3)
    noisy = add_noise(X_TE, kind, level, seed=1)
    before, after = psnr(X_TE, noisy), psnr(X_TE, ae.reconstruct(noisy))
    assert after >= before + 3, (before, after)


def test_autoencoder_save_load(tmp_path):
    ae = Autoencoder(64, (32,), 8, noise=("masking", 0.2), dropout=0.1, seed=1)
    ae.fit(X_TR[:300], epochs=2, batch_size=32)
    ae.save(tmp_path / "ae")
    ae2 = Autoencoder.load(tmp_path / "ae")
    assert ae2.noise_step == ae.noise_step > 0
    np.testing.assert_array_equal(ae2.sample(3, seed=2), ae.sample(3, seed=2))
    ae.fit(X_TR[:300], epochs=1, batch_size=32)
    ae2.fit(X_TR[:300], epochs=1, batch_size=32)
    np.testing.assert_array_equal(ae.flat.data, ae2.flat.data)
    with pytest.raises(TypeError, match="Autoencoder"):
        MLP.load(tmp_path / "ae.npz")
    assert isinstance(fusedops.nn.load(tmp_path / "ae.npz", backend="numpy"), Autoencoder)
