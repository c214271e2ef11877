"""Fit time and test accuracy of fusedops.sklearn.MLPClassifier against scikit-learn's own
MLPClassifier: same architecture, solver, hyperparameters, initialization and epochs (the
stopping rule is switched off: tol=0 with n_iter_no_change > max_iter, so every contender runs
exactly `epochs` epochs).

Cases: "digits" (scikit-learn's 1797 8x8 digits, 64-256-256-10, 60 epochs, batch 64) and
"synthetic" (make_classification 50,000 x 100, binary: 100-256-256-1, 8 epochs, batch 200; its rows
come from FUSEDOPS_BENCH_SIZES, e.g. FUSEDOPS_BENCH_SIZES=5000 for a quick run). Contenders:
scikit-learn (float64, as it computes for float64 data, every BLAS thread: its default),
scikit-learn-1thread (one BLAS thread, through threadpoolctl), fusedops (float32, its default)
and fusedops-f64 (dtype='float64', the same precision as scikit-learn). fusedops trains models
under 2^20 parameters on one thread by default (fusedops.nn.threads): on a busy or small
machine scikit-learn's spinning BLAS pool can cost it more than its second core gains.

Accuracy is checked once before timing (fusedops within 1.5 points of scikit-learn) and kept in
extra_info. `python benchmarks/test_sklearn.py` times the contenders round-robin instead and
prints the README table (min and median of the rounds, ratios of medians).
"""
from __future__ import annotations

import contextlib
import os
import sys
import time
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")
threadpool_limits = pytest.importorskip("threadpoolctl").threadpool_limits
from sklearn import neural_network as skn  # noqa: E402
from sklearn.datasets import load_digits, make_classification  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from conftest import bench_sizes  # noqa: E402

from fusedops.sklearn import MLPClassifier  # noqa: E402

CONTENDERS = ("scikit-learn", "scikit-learn-1thread", "fusedops", "fusedops-f64")
HYPER = dict(solver="adam", alpha=1e-4, learning_rate_init=1e-3, random_state=0, tol=0.0)


def _case(name, n_rows=None):
    """(X_train, X_test, y_train, y_test, hidden, epochs, batch)."""
    if name == "digits":
        X, y = load_digits(return_X_y=True)
        X = X / 16.0
        hidden, epochs, batch = (256, 256), 60, 64
    else:
        X, y = make_classification(n_samples=n_rows, n_features=100, n_informative=30, n_redundant=10,
                                   class_sep=0.8, random_state=0)
        X = StandardScaler().fit_transform(X)
        hidden, epochs, batch = (256, 256), 8, 200
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)
    return X_tr, X_te, y_tr, y_te, hidden, epochs, batch


def _estimator(contender, hidden, epochs, batch):
    kw = dict(HYPER, hidden_layer_sizes=hidden, max_iter=epochs, batch_size=batch, n_iter_no_change=epochs + 1)
    if contender.startswith("scikit-learn"):
        return skn.MLPClassifier(**kw)
    return MLPClassifier(**kw, dtype="float64" if contender == "fusedops-f64" else "float32")


def _fit(contender, data):
    X_tr, _, y_tr, _, hidden, epochs, batch = data
    limit = threadpool_limits(1, user_api="blas") if contender.endswith("1thread") else contextlib.nullcontext()
    with warnings.catch_warnings(), limit:
        warnings.simplefilter("ignore")
        return _estimator(contender, hidden, epochs, batch).fit(X_tr, y_tr)


def _accuracies(data):
    _, X_te, _, y_te, *_ = data
    return {c: float(_fit(c, data).score(X_te, y_te)) for c in CONTENDERS}


def _warm_up():
    """Compile fusedops' kernels (both dtypes) outside the timed region."""
    X, y = np.random.default_rng(0).standard_normal((64, 5)), np.arange(64) % 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for dtype in ("float32", "float64"):
            MLPClassifier(hidden_layer_sizes=(4,), max_iter=1, dtype=dtype).fit(X, y)


CASES = ["digits"] + [f"synthetic-{n}" for n in bench_sizes([50_000])]
_DATA, _ACC = {}, {}


def _data(case):
    if case not in _DATA:
        _DATA[case] = _case("digits") if case == "digits" else _case("synthetic", int(case.split("-")[1]))
        _ACC[case] = _accuracies(_DATA[case])
        acc = _ACC[case]
        for c in CONTENDERS[2:]:  # correctness, once: equal accuracy
            assert acc[c] >= acc["scikit-learn"] - 0.015, acc
    return _DATA[case]


@pytest.mark.parametrize("contender", CONTENDERS)
@pytest.mark.parametrize("case", CASES)
def test_fit(benchmark, case, contender):
    _warm_up()
    data = _data(case)
    X_tr, _, _, _, hidden, epochs, batch = data
    benchmark.group = f"sklearn-fit {case} {X_tr.shape[0]}x{X_tr.shape[1]} hidden={hidden} epochs={epochs}"
    benchmark.pedantic(_fit, args=(contender, data), rounds=3, iterations=1)
    benchmark.extra_info.update(test_accuracy=round(_ACC[case][contender], 4), epochs=epochs, batch=batch)


def round_robin(rounds=5):
    """Interleaved timings for the README: {case: {contender: (min, median, accuracy)}}."""
    _warm_up()
    table = {}
    for case in CASES:
        data = _data(case)
        times = {c: [] for c in CONTENDERS}
        for _ in range(rounds):
            for c in CONTENDERS:
                t0 = time.perf_counter()
                _fit(c, data)
                times[c].append(time.perf_counter() - t0)
        table[case] = {c: (min(t), float(np.median(t)), _ACC[case][c]) for c, t in times.items()}
    return table


if __name__ == "__main__":
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    print("| data | contender | fit min (s) | fit median (s) | test accuracy | vs scikit-learn | vs scikit-learn 1 thread |")
    print("|---|---|---|---|---|---|---|")
    for case, row in round_robin(rounds).items():
        base, one = row["scikit-learn"][1], row["scikit-learn-1thread"][1]
        for c, (lo, med, acc) in row.items():
            print(f"| {case} | {c} | {lo:.2f} | {med:.2f} | {acc:.4f} | {base / med:.2f}x | {one / med:.2f}x |")
