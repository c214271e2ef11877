"""`fusedops demo --quick`: every figure written and non-empty, summary.json complete; and the
optimizer trajectories checked against the update formulas written out here."""
import json

import numpy as np
import pytest

from fusedops.apps.cli import main
from fusedops.apps.demo import FIGURES, optimizer_trajectories

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    pytest.importorskip("fusedops.nn", reason="the nn API (issue 6) is not in this build")
    pytest.importorskip("sklearn", reason="the digits data ship with scikit-learn")
    pytest.importorskip("matplotlib")
    out = tmp_path_factory.mktemp("report")
    assert main(["demo", "--quick", "--out", str(out), "--no-progress"]) == 0
    return out


def test_every_figure_is_a_non_empty_png(report):
    for name in FIGURES.values():
        data = (report / name).read_bytes()
        assert data[:8] == PNG and len(data) > 10_000, name
    assert (report / "profile.txt").read_text().count("vs numpy") >= 1


def test_summary_holds_every_figures_numbers(report):
    s = json.loads((report / "summary.json").read_text())
    assert set(s["figures"]) == set(FIGURES)
    for key, fig in s["figures"].items():
        assert fig["file"] == FIGURES[key]
    assert s["info"]["backends"]["numpy"] == "available" and s["seconds"]["total"] > 0

    mlp = s["figures"]["learning_curves"]
    h = mlp["history"]
    n = len(h["epoch"])
    assert n >= 1 and len(h["loss"]) == len(h["val_loss"]) == len(h["val_accuracy"]) == n
    assert h["best_epoch"] in h["epoch"]
    # 4 quick epochs reach 0.95 (seeded); chance is 0.1, and a broken optimizer or backward
    # that still lowers the loss a little lands far below 0.85
    assert 0.85 < mlp["test_accuracy"] <= 1
    from fusedops.data import load_digits

    y_test = load_digits(test_size=0.2, seed=0)[3]
    cm = np.array(mlp["confusion_matrix"])
    np.testing.assert_array_equal(cm.sum(axis=1), np.bincount(y_test, minlength=10))
    assert np.trace(cm) / cm.sum() == pytest.approx(mlp["test_accuracy"])

    den = s["figures"]["denoising"]
    assert den["psnr_denoised_db"] - den["psnr_noisy_db"] == pytest.approx(den["psnr_gain_db"])
    assert den["psnr_gain_db"] > 1.0  # denoising must denoise: 2.0 dB measured in quick mode
    assert len(den["test_indices"]) == 10

    lat = s["figures"]["latent_space"]
    codes = np.array(lat["codes"])
    assert codes.shape == (1797, 2) and np.isfinite(codes).all()
    assert len(lat["labels"]) == 1797 and 0.3 < lat["knn1_test_accuracy"] <= 1  # 0.54; chance 0.1

    w = s["figures"]["weights_l1_l2"]["runs"]
    assert set(w) == {"L1", "L2"}
    for run in w.values():
        assert sum(run["histogram"]["counts"]) == 64 * 128  # every first-layer weight
        assert 0 <= run["share_near_zero"] <= 1
    assert w["L1"]["share_near_zero"] > w["L2"]["share_near_zero"]  # the figure's point (0.026 vs 0.006)

    traj = s["figures"]["optimizer_trajectories"]["runs"]
    assert set(traj) == {"GD", "momentum (beta 0.5)", "AdaGrad", "RMSprop (alpha 0.9)", "Adam"}
    assert all(len(r["path"]) == len(r["loss"]) == 41 for r in traj.values())

    prof = s["figures"]["throughput"]
    assert {r["op"] for r in prof["results"]} >= {"copy", "adam", "dropout", "batchnorm"}
    from fusedops.apps.profile_ops import OPS

    for r in prof["results"]:  # each figure from its own bytes and time, not merely positive
        assert 0 < r["median_s"] < 10 and np.isfinite(r["median_s"])
        assert r["bytes"] == pytest.approx(OPS[r["op"]].bytes_per_element(r["dtype"]) * r["n"])
        assert r["gbps"] == pytest.approx(r["bytes"] / r["median_s"] / 1e9)


def _reference_paths(steps=40, lr=0.4):
    """The update rules of DESIGN.md written out for 0.1*w1^2 + 2*w2^2 (gradient (0.2 w1, 4 w2))."""
    out = {}
    for name in ("GD", "momentum", "AdaGrad", "RMSprop", "Adam"):
        w, h, s, m, v = np.array([-5.0, -2.0]), np.zeros(2), np.zeros(2), np.zeros(2), np.zeros(2)
        path = [w.copy()]
        for t in range(1, steps + 1):
            g = np.array([0.2, 4.0]) * w
            if name == "GD":
                w = w - lr * g
            elif name == "momentum":
                h = 0.5 * h + g
                w = w - lr * h
            elif name == "AdaGrad":
                s = s + g * g
                w = w - lr * g / (np.sqrt(s) + 1e-10)
            elif name == "RMSprop":
                s = 0.9 * s + 0.1 * g * g
                w = w - lr * g / (np.sqrt(s) + 1e-8)
            else:
                m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
                w = w - lr * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
            path.append(w.copy())
        out[name] = np.array(path)
    return out


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_trajectories_follow_the_update_rules(backend):
    runs = optimizer_trajectories(backend=backend)
    ref = _reference_paths()
    for name, r in runs.items():
        np.testing.assert_allclose(np.array(r["path"]), ref[name.split(" ")[0]], rtol=1e-9,
                                   atol=1e-12, err_msg=name)
    # the lecture's point: same step size, GD crawls along w1, momentum and RMSprop arrive
    assert runs["GD"]["final_loss"] > 1e-3
    assert runs["momentum (beta 0.5)"]["final_loss"] < 1e-6
    assert runs["RMSprop (alpha 0.9)"]["final_loss"] < 1e-6


def test_demo_rejects_an_unavailable_backend(capsys, tmp_path):
    from fusedops import backends

    if backends.backend_unavailable_reason("cuda") is None:
        pytest.skip("cuda is available here")
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--quick", "--backend", "cuda", "--out", str(tmp_path)])
    assert exc.value.code == 2 and "not available" in capsys.readouterr().err


def test_low_precision_figure_numbers(report):
    """The five Adam variants of apps/demo_lowbit.py: learning curves of the requested length,
    and the optimizer's bytes per parameter measured from its arrays."""
    pytest.importorskip("ml_dtypes")
    fig = json.loads((report / "summary.json").read_text())["figures"]["low_precision"]
    runs = fig["runs"]
    assert len(runs) == 5
    for label, r in runs.items():
        assert len(r["val_loss"]) == fig["epochs"] and len(r["quadratic_loss"]) == fig["quadratic_steps"]
        assert r["quadratic_loss"][-1] < r["quadratic_loss"][0], label
        assert 0.1 < r["test_accuracy"] <= 1, label
    b = {k: r["optimizer_bytes_per_param"] for k, r in runs.items()}
    assert b["float32"] == 8.0 and 2.03 <= b["8-bit state"] < 2.5  # small tensors keep float32
    assert 4 + 2 + 8 / 256 <= b["bf16 params + fp32 master, 8-bit state"] < 4 + 2 + 9 / 256
    assert b["pure bf16, round to nearest"] == b["pure bf16, stochastic rounding"] == 4.0
