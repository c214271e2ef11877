"""`fusedops train`: MLP and autoencoder on digits and on .npz files, --save round trip, and
usage errors for bad data or arguments."""
import numpy as np
import pytest

pytest.importorskip("fusedops.nn", reason="the nn API (issue 6) is not in this build")

from fusedops.apps.cli import main  # noqa: E402


def _blobs(path, n=240, features=6, classes=3, labels=True, test=False):
    rng = np.random.default_rng(0)
    y = rng.integers(0, classes, n)
    X = (rng.standard_normal((n, features)) + 3 * np.eye(classes, features)[y]).astype(np.float32)
    arrays = {"X": X}
    if labels:
        arrays["y"] = y
    if test:
        arrays.update(X_test=X[:50], y_test=y[:50])
    np.savez(path, **arrays)
    return X, y


def test_mlp_on_digits_saves_a_loadable_model(tmp_path, capsys):
    pytest.importorskip("sklearn")
    from fusedops.data import load_digits
    from fusedops.nn import load

    out = tmp_path / "mlp.npz"
    assert main(["train", "--epochs", "2", "--hidden", "32", "--quiet", "--save", str(out)]) == 0
    text = capsys.readouterr().out
    assert "MLP on numba" in text and "test loss" in text and "accuracy" in text
    model = load(out)
    _, Xte, _, yte = load_digits(test_size=0.2, seed=0)
    acc = float(text.split("accuracy ")[1].split()[0].rstrip(","))
    assert model.score(Xte, yte) == pytest.approx(acc, abs=1e-4)


def test_mlp_on_an_npz_file_with_a_test_set(tmp_path, capsys):
    f = tmp_path / "blobs.npz"
    _blobs(f, test=True)
    assert main(["train", "--data", str(f), "--epochs", "15", "--hidden", "16", "--lr", "0.01",
                 "--batchnorm", "--dropout", "0.1", "--backend", "numpy"]) == 0
    out = capsys.readouterr().out
    assert "50 test rows" in out and "epoch   15" in out  # a line per epoch without --quiet
    assert float(out.split("accuracy ")[-1].split()[0].rstrip(",")) > 0.9  # separable blobs


def test_autoencoder_without_labels(tmp_path, capsys):
    f = tmp_path / "x.npz"
    _blobs(f, labels=False)
    assert main(["train", "--model", "autoencoder", "--data", str(f), "--epochs", "3",
                 "--latent-dim", "2", "--noise", "gaussian:0.1", "--early-stopping", "2",
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "Autoencoder on numba" in out and "mse" in out and "48 test rows" in out


def test_regression_targets(tmp_path, capsys):
    f = tmp_path / "r.npz"
    rng = np.random.default_rng(1)
    X = rng.standard_normal((100, 4)).astype(np.float32)
    np.savez(f, X=X, y=X @ np.arange(4.0))
    assert main(["train", "--data", str(f), "--epochs", "2", "--quiet"]) == 0
    assert "accuracy" not in capsys.readouterr().out.split("test")[-1]


@pytest.mark.parametrize("argv,message", [
    (["--data", "missing.npz"], "no such file"),
    (["--data", "table.csv"], "'digits' or a .npz"),
    (["--epochs", "0"], "positive integer"),
    (["--noise", "pink:0.1"], "gaussian:STD"),
    (["--noise", "masking:1.5"], "gaussian:STD"),
    (["--dropout", "1"], "fraction"),
    (["--model", "cnn"], "invalid choice"),
    (["--backend", "tpu"], "invalid choice"),
    (["--hidden", "0"], "positive integer"),
])
def test_bad_arguments_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", *argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "usage: fusedops train" in err and message in err


@pytest.mark.parametrize("arrays,message", [
    ({"features": np.zeros((4, 2))}, "no array 'X'"),
    ({"X": np.zeros((10, 2))}, "no array 'y'"),
    ({"X": np.zeros(10), "y": np.zeros(10, int)}, "(n, features)"),
    ({"X": np.zeros((10, 2)), "y": np.zeros(7, int)}, "7 rows"),
    ({"X": np.full((10, 2), np.nan), "y": np.arange(10) % 2}, "NaN"),
])
def test_bad_data_files_are_usage_errors(tmp_path, arrays, message, capsys):
    f = tmp_path / "bad.npz"
    np.savez(f, **arrays)
    with pytest.raises(SystemExit) as exc:
        main(["train", "--data", str(f), "--epochs", "1", "--quiet"])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
