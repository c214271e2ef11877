"""Autoencoder (optionally denoising) with a linear latent layer, latent sampling and
interpolation."""
from __future__ import annotations

import numpy as np

from .. import ops
from ..checks import check_int, check_real
from .activations import Sigmoid, make_activation
from .fused_layers import BatchNorm1d, Dropout
from .layers import Linear, Sequential
from .losses import BCEWithLogitsLoss, MSELoss
from .models import Model, _dtype, layer_seeds
from .parameter import to_host

__all__ = ["Autoencoder"]

OUTPUTS = ("sigmoid", "linear")


def _check_noise(noise):
    if noise is None:
        return None
    if not isinstance(noise, (tuple, list)) or len(noise) != 2 or noise[0] not in ("gaussian", "masking"):
        raise ValueError(f"noise must be None, ('gaussian', std) or ('masking', p); got {noise!r}")
    kind, level = noise
    if kind == "gaussian":
        return kind, check_real("noise std", level, lo=0.0)
    return kind, check_real("noise p", level, lo=0.0, hi=1.0, hi_open=True)


class Autoencoder(Model):
    """input -> hidden... -> latent (linear) -> reversed hidden... -> output.

    output="sigmoid" for data in [0, 1] (with loss "mse" a Sigmoid layer ends the decoder;
    with loss "bce" the decoder ends in logits and the fused BCE-with-logits loss is used),
    "linear" (loss "mse") for unbounded data. noise=("gaussian", std) or ("masking", p) makes
    it a denoising autoencoder (Vincent et al. 2008): each training batch is corrupted afresh
    (masking uses the fused dropout kernel, seeded and offset like a Dropout layer) while the
    target stays clean. `fit(X)` trains to reconstruct X; `fit(X_noisy, X_clean)` also works.
    """

    def __init__(self, input_dim: int, hidden=(128,), latent_dim: int = 16, *, activation: str = "relu",
                 output: str = "sigmoid", loss: str = "mse", dropout: float = 0.0, batchnorm: bool = False,
                 noise=None, seed: int = 0, backend=None, dtype=np.float32, init: str | None = None):
        input_dim = check_int("input_dim", input_dim, lo=1)
        latent_dim = check_int("latent_dim", latent_dim, lo=1)
        hidden = [check_int(f"hidden[{i}]", h, lo=1) for i, h in enumerate(hidden)]
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}; got {output!r}")
        if loss not in ("mse", "bce") or (loss == "bce" and output != "sigmoid"):
            raise ValueError(f"loss must be 'mse', or 'bce' with output='sigmoid'; got {loss!r}")
        self.noise = _check_noise(noise)
        dtype = _dtype(dtype)
        make_activation(activation)
        init = init or ("xavier" if activation in ("tanh", "sigmoid") else "he")
        enc_sizes = [input_dim, *hidden, latent_dim]
        dec_sizes = enc_sizes[::-1]
        seeds = iter(layer_seeds(seed, 4 * len(enc_sizes) + 1))

        def stack(sizes):
            layers = []
            for i in range(len(sizes) - 1):
                last = i == len(sizes) - 2
                layers.append(Linear(sizes[i], sizes[i + 1], bias=last or not batchnorm,
                                     init="xavier" if last else init, seed=next(seeds), dtype=dtype))
                if not last:
                    if batchnorm:
                        layers.append(BatchNorm1d(sizes[i + 1], dtype=dtype))
                    layers.append(make_activation(activation))
                    if dropout:
                        layers.append(Dropout(dropout, seed=next(seeds)))
            return layers

        self.encoder = Sequential(*stack(enc_sizes))
        dec = stack(dec_sizes)
        if output == "sigmoid" and loss == "mse":
            dec.append(Sigmoid())
        self.decoder = Sequential(*dec)
        self.net = Sequential(self.encoder, self.decoder)
        self.n_features = input_dim
        self.loss_fn = BCEWithLogitsLoss() if loss == "bce" else MSELoss()
        self.noise_seed = next(seeds)
        self.noise_step = 0
        self.latent_mean_, self.latent_chol_ = None, None
        config = dict(input_dim=input_dim, hidden=hidden, latent_dim=latent_dim,
                      activation=activation, output=output, loss=loss, dropout=float(dropout),
                      batchnorm=bool(batchnorm), noise=None if noise is None else list(self.noise),
                      seed=int(seed), dtype=dtype.name, init=init)
        self._setup(config, backend, dtype, int(seed))

    @staticmethod
    def param_count(config: dict) -> int:
        """The parameters Autoencoder(**config) allocates, from `config` alone (see MLP's)."""
        sizes = [config["input_dim"], *config.get("hidden", (128,)), config.get("latent_dim", 16)]
        bn = bool(config.get("batchnorm", False))

        def stack(s):  # Linear (bias on the last, or without BN), BN's gamma and beta
            inner = sum(a * b + (2 * b if bn else b) for a, b in zip(s[:-2], s[1:-1]))
            return inner + s[-2] * s[-1] + s[-1]
        return stack(sizes) + stack(sizes[::-1])

    def _check_y(self, y, X, name="y"):
        if y is None:
            return X
        y = self._check_X(y, name)
        if len(y) != len(X):
            raise ValueError(f"{name} has {len(y)} rows but X has {len(X)}")
        return y

    def _train_input(self, xb):
        if self.noise is None:
            return xb
        kind, level = self.noise
        step = self.noise_step
        self.noise_step += 1
        # a part of a batch split across processes draws the noise of its rows of the whole batch
        lo, total = self._batch_part or (0, xb.shape[0])
        if kind == "masking":
            y, _ = ops.dropout_forward(xb, level, seed=self.noise_seed, offset=step, mode="classic",
                                       training=True, out=self.xp.empty_like(xb), return_mask=False,
                                       backend=self.backend, start=lo * xb.shape[1])
            return self.xp.asarray(y)
        rng = np.random.default_rng([self.noise_seed, step])  # host RNG: the same noise on every backend
        noise = rng.standard_normal((total, xb.shape[1]), dtype=self.dtype)[lo:lo + xb.shape[0]]
        return xb + self.xp.asarray(noise * self.dtype.type(level))

    def _decode_out(self, z):
        out = self.decoder.forward(z)
        if isinstance(self.loss_fn, BCEWithLogitsLoss):
            half = out.dtype.type(0.5)
            out = half * (self.xp.tanh(half * out) + 1)
        return out

    def _after_fit(self, X):
        """Fit a Gaussian to the training codes, for `sample`."""
        z = self.encode(X).astype(np.float64)
        self.latent_mean_ = z.mean(axis=0)
        cov = np.atleast_2d(np.cov(z, rowvar=False)) + 1e-6 * np.eye(z.shape[1])
        self.latent_chol_ = np.linalg.cholesky(cov)

    def encode(self, X) -> np.ndarray:
        """Latent codes (n, latent_dim) of X, in eval mode."""
        return self._forward_eval(self._check_X(X, "X"), self.encoder.forward)

    def decode(self, Z) -> np.ndarray:
        """Reconstructions (n, input_dim) of latent codes Z, in eval mode."""
        Z = self._check_X(Z, "Z", n_features=self.config["latent_dim"])
        return self._forward_eval(Z, self._decode_out)

    def reconstruct(self, X) -> np.ndarray:
        """decode(encode(X))."""
        X = self._check_X(X, "X")
        return self._forward_eval(X, lambda xb: self._decode_out(self.encoder.forward(xb)))

    def predict(self, X) -> np.ndarray:
        return self.reconstruct(X)

    def reconstruction_error(self, X) -> np.ndarray:
        """Per-row mean squared reconstruction error (an anomaly score)."""
        X = self._check_X(X, "X")
        return ((self.reconstruct(X).astype(np.float64) - X) ** 2).mean(axis=1)

    def evaluate(self, X, y=None) -> dict:
        """Mean loss and reconstruction MSE (against y, default X), in eval mode."""
        X = self._check_X(X, "X")
        y = self._check_y(y, X, "y")
        logits = self._forward_eval(X).astype(np.float64)
        res = {"loss": float(self.loss_fn.value(logits, y))}
        rec = self.reconstruct(X) if isinstance(self.loss_fn, BCEWithLogitsLoss) else logits
        res["mse"] = float(((rec - y) ** 2).mean())
        return res

    def sample(self, n: int, *, seed: int = 0) -> np.ndarray:
        """n new rows decoded from codes drawn from a Gaussian fitted to the training codes."""
        n = check_int("n", n, lo=1)
        if self.latent_mean_ is None:
            raise RuntimeError("sample needs a fitted autoencoder (call fit first)")
        eps = np.random.default_rng(check_int("seed", seed, lo=0)).standard_normal((n, len(self.latent_mean_)))
        return self.decode(self.latent_mean_ + eps @ self.latent_chol_.T)

    def interpolate(self, x_a, x_b, steps: int = 8) -> np.ndarray:
        """Decodings of `steps` evenly spaced points on the line from code(x_a) to code(x_b)."""
        steps = check_int("steps", steps, lo=2)
        z = self.encode(np.stack([np.asarray(to_host(x_a)).reshape(-1), np.asarray(to_host(x_b)).reshape(-1)]))
        t = np.linspace(0.0, 1.0, steps)[:, None]
        return self.decode((1 - t) * z[0] + t * z[1])
