"""The sections of `fusedops demo` (see demo.py). Each trains or measures, prints its results,
draws its figure and records the figure's numbers in the report's summary. The optimizer paths'
quadratic lives here too, so the sections need nothing from demo.py (which imports them)."""
from __future__ import annotations

import sys
import time

import numpy as np

from .. import ops
from . import plots

DEMO_OPS = ("copy", "sgd", "momentum", "adagrad", "rmsprop", "adam", "dropout", "dropout_backward",
            "batchnorm", "batchnorm_backward")
NOISE = ("gaussian", 0.3)
NEAR_ZERO = 1e-3  # |w| below this counts as zeroed in the L1 / L2 comparison
QUADRATIC = "0.1*w1^2 + 2*w2^2"


def _quadratic(w1, w2):
    return 0.1 * w1 ** 2 + 2 * w2 ** 2


def _grad(w):
    return np.array([0.2 * w[0], 4.0 * w[1]], dtype=w.dtype)


def optimizer_trajectories(steps: int = 40, lr: float = 0.4, start=(-5.0, -2.0), *,
                           backend=None) -> dict:
    """GD, momentum, AdaGrad, RMSprop and Adam with the same step size on 0.1*w1^2 + 2*w2^2
    (Dive into Deep Learning, ch. 12; the lecture's ill-conditioned example: curvature 0.2
    along w1, 4 along w2), every step a fusedops.ops kernel call on `backend`."""
    runs = {
        "GD": (ops.sgd_step, ("buf0",), {}),
        "momentum (beta 0.5)": (ops.sgd_step, ("buf0",), {"momentum": 0.5}),
        "AdaGrad": (ops.adagrad_step, ("buf1",), {}),
        "RMSprop (alpha 0.9)": (ops.rmsprop_step, ("buf1",), {"alpha": 0.9}),
        "Adam": (ops.adam_step, ("buf1", "buf2"), {}),
    }
    out = {}
    for name, (step_fn, buffers, hyper) in runs.items():
        w = np.array(start, dtype=np.float64)
        state = [np.zeros(2) for _ in buffers]
        if name == "GD":
            state = [None]
        path, loss = [w.tolist()], [float(_quadratic(*w))]
        for t in range(1, steps + 1):
            g = _grad(w)
            kw = dict(hyper, lr=lr, backend=backend)
            if step_fn is ops.adam_step:
                kw["step"] = t
            step_fn(w, g, *state, **kw)
            path.append(w.tolist())
            loss.append(float(_quadratic(*w)))
        out[name] = {"lr": lr, **hyper, "path": path, "loss": loss, "final_loss": loss[-1]}
    return out


def few_threads(nn_backend):
    """One CPU thread (fusedops kernels and BLAS) for the whole of a training section, the
    evaluation included: a digits batch is too small for a thread pool to pay (fusedops.nn's
    fit does the same inside fit; see fusedops.nn.threads)."""
    from ..nn.threads import limit_threads

    return limit_threads(None if nn_backend == "cuda" else 1)


def _verbose(progress):
    """nn's fit: a tqdm bar on a terminal, else silent (the section prints a summary)."""
    return 1 if progress and sys.stderr.isatty() else 0


def _host(a):
    from ..nn.parameter import to_host

    return np.asarray(to_host(a))


def machine(rep, *, quick, progress, **_):
    from .sysinfo import WRITE_ALLOCATE_FACTOR, format_info, info

    d = info(probe_bandwidth=not quick, repeat=3)
    print(format_info(d), flush=True)
    rep.summary["info"] = d
    # what the profile divides by: sysinfo.reference_bandwidth, from the figures just measured
    rep.probe = {}
    probe = d.get("probe", {})
    if "reference_gbps_cpu" in probe:
        rep.probe["cpu"] = probe["reference_gbps_cpu"]
    if "cuda" in probe.get("results", {}):
        rep.probe["gpu"] = probe["results"]["cuda"]["copy"] * WRITE_ALLOCATE_FACTOR["gpu"]


def _digits(seed):
    from ..data import load_digits

    return load_digits(test_size=0.2, seed=seed)


def digits_mlp(rep, *, nn_backend, quick, seed, progress):
    from ..nn import MLP

    Xtr, Xte, ytr, yte = _digits(seed)
    cfg = dict(sizes=[64, 256, 128, 10], dropout=0.2, batchnorm=True, seed=seed)
    fit = dict(epochs=4 if quick else 80, batch_size=64, optimizer="adam", lr=2e-3,
               validation_split=0.15, early_stopping=10)
    model = MLP(backend=nn_backend, **cfg)
    print(f"   MLP {cfg['sizes']}, dropout {cfg['dropout']}, batch norm, Adam lr {fit['lr']}, "
          f"{len(Xtr)} training digits (15% held out for validation), {model.n_params} parameters "
          f"on {nn_backend}", flush=True)
    t = time.perf_counter()
    hist = model.fit(Xtr, ytr, verbose=_verbose(progress), **fit).as_dict()
    seconds = time.perf_counter() - t
    ev = model.evaluate(Xte, yte)
    pred = model.predict(Xte)
    confusion = np.zeros((10, 10), int)
    np.add.at(confusion, (yte, pred), 1)
    stop = f", stopped at epoch {hist['stopped_epoch']}" if hist["stopped_epoch"] else ""
    print(f"   {len(hist['epoch'])} epochs in {seconds:.1f} s; best validation loss at epoch "
          f"{hist['best_epoch']}{stop}; test accuracy {ev['accuracy']:.4f} "
          f"({int((pred != yte).sum())} of {len(yte)} wrong), test loss {ev['loss']:.4f}", flush=True)
    numbers = {"model": cfg, "fit": fit, "history": hist, "train_seconds": seconds,
               "test_accuracy": ev["accuracy"], "test_loss": ev["loss"],
               "confusion_matrix": confusion.tolist(), "backend": nn_backend}
    rep.figure("learning_curves", numbers,
               lambda p: plots.learning_curves(hist, p, test_accuracy=ev["accuracy"]))


def _autoencoder(nn_backend, seed, latent, hidden, quick, progress, Xtr, Xte):
    from ..nn import Autoencoder

    ae = Autoencoder(64, hidden=hidden, latent_dim=latent, noise=NOISE, seed=seed,
                     backend=nn_backend)
    fit = dict(epochs=3 if quick else 60, batch_size=32, lr=2e-3)
    t = time.perf_counter()
    hist = ae.fit(Xtr, validation_data=(Xte,), verbose=_verbose(progress), **fit).as_dict()
    return ae, fit, hist, time.perf_counter() - t


def denoising(rep, *, nn_backend, quick, seed, progress):
    from ..data import add_noise, psnr

    Xtr, Xte, ytr, yte = _digits(seed)
    ae, fit, hist, secs = _autoencoder(nn_backend, seed, 16, (128,), quick, progress, Xtr, Xte)
    noisy = add_noise(Xte, NOISE[0], NOISE[1], seed=seed + 1, clip=(0, 1))
    clean = ae.reconstruct(noisy)
    p_noisy, p_clean = psnr(Xte, noisy), psnr(Xte, clean)
    print(f"   autoencoder 64-128-16-128-64, trained on digits with {NOISE[0]} noise "
          f"(std {NOISE[1]}) for {len(hist['epoch'])} epochs in {secs:.1f} s: test PSNR "
          f"{p_noisy:.2f} dB noisy -> {p_clean:.2f} dB denoised ({p_clean - p_noisy:+.2f} dB)",
          flush=True)
    idx = [int(np.flatnonzero(yte == k)[0]) for k in range(10)]
    rows = {"original": Xte[idx], f"noisy\n{p_noisy:.1f} dB": noisy[idx],
            f"denoised\n{p_clean:.1f} dB": clean[idx]}
    numbers = {"model": {"hidden": [128], "latent_dim": 16, "noise": list(NOISE)}, "fit": fit,
               "history": hist, "psnr_noisy_db": p_noisy, "psnr_denoised_db": p_clean,
               "psnr_gain_db": p_clean - p_noisy, "test_indices": idx, "train_seconds": secs}
    rep.figure("denoising", numbers, lambda p: plots.digit_rows(
        rows, p, title=f"Denoising autoencoder on test digits ({NOISE[0]} noise, std {NOISE[1]}): "
                       f"PSNR {p_noisy:.1f} -> {p_clean:.1f} dB"))

    # a second denoising autoencoder with a 2-unit bottleneck, to draw its codes
    ae2, fit2, hist2, secs2 = _autoencoder(nn_backend, seed, 2, (128, 64), quick, progress, Xtr, Xte)
    Z = ae2.encode(np.concatenate([Xtr, Xte])).astype(np.float64)
    y = np.concatenate([ytr, yte])
    ztr, zte = Z[:len(Xtr)], Z[len(Xtr):]
    d = ((zte[:, None, :] - ztr[None, :, :]) ** 2).sum(-1)  # 1-NN in the plane: how separable
    knn = float(np.mean(ytr[d.argmin(1)] == yte))
    print(f"   2-D bottleneck (64-128-64-2-64-128-64), {len(hist2['epoch'])} epochs in {secs2:.1f} s: "
          f"test MSE {ae2.evaluate(Xte)['mse']:.4f}; 1-nearest-neighbour accuracy on the 2-D "
          f"codes {knn:.3f}", flush=True)
    numbers = {"model": {"hidden": [128, 64], "latent_dim": 2, "noise": list(NOISE)}, "fit": fit2,
               "history": hist2, "test_mse": ae2.evaluate(Xte)["mse"], "knn1_test_accuracy": knn,
               "codes": np.round(Z, 4).tolist(), "labels": y.tolist(), "n_train": len(Xtr),
               "class_medians": {int(k): np.median(Z[y == k], 0).round(4).tolist() for k in range(10)}}
    rep.figure("latent_space", numbers, lambda p: plots.latent_scatter(
        Z, y, p, title=f"2-D codes of all 1797 digits (denoising autoencoder; 1-NN test "
                       f"accuracy {knn:.2f})"))


def l1_l2(rep, *, nn_backend, quick, seed, progress):
    """The same MLP trained with an L1 and with an L2 penalty. Plain SGD, not Adam: Adam's
    normalized step moves a weight with only the penalty's gradient (the weights of the pixels
    that are blank in every digit) by ~lr per step under either penalty, which hides the
    difference the course is about: L1's constant pull reaches zero, L2's proportional pull
    only shrinks. The strengths give both runs the same test accuracy here."""
    from ..nn import MLP

    Xtr, Xte, ytr, yte = _digits(seed)
    penalties = {"L1": {"l1": 1e-3}, "L2": {"l2": 1e-2}}
    weights, numbers = {}, {"threshold": NEAR_ZERO, "runs": {}}
    for name, pen in penalties.items():
        model = MLP([64, 128, 10], seed=seed, backend=nn_backend)
        fit = dict(epochs=3 if quick else 40, batch_size=64, optimizer="sgd", lr=0.1, **pen)
        model.fit(Xtr, ytr, verbose=0, **fit)
        w = _host(model.net.layers[0].weight.data).astype(np.float64)
        weights[name] = w
        acc = model.score(Xte, yte)
        near = float(np.mean(np.abs(w) < NEAR_ZERO))
        counts, edges = np.histogram(w, bins=80)
        numbers["runs"][name] = {"fit": fit, "test_accuracy": acc, "share_near_zero": near,
                                 "mean_abs": float(np.abs(w).mean()), "max_abs": float(np.abs(w).max()),
                                 "histogram": {"counts": counts.tolist(), "edges": edges.tolist()}}
        print(f"   {name} {pen}, SGD lr 0.1: test accuracy {acc:.4f}; {100 * near:.1f}% of the "
              f"{w.size} first-layer weights have |w| < {NEAR_ZERO:g}, mean |w| "
              f"{np.abs(w).mean():.4f}", flush=True)
    acc = ", ".join(f"{k} {v['test_accuracy']:.3f}" for k, v in numbers["runs"].items())
    note = f"SGD lr 0.1, l1 {penalties['L1']['l1']:g} / l2 {penalties['L2']['l2']:g}; test accuracy {acc}"
    rep.figure("weights_l1_l2", numbers,
               lambda p: plots.weight_histograms(weights, p, threshold=NEAR_ZERO, note=note))


def trajectories(rep, *, nn_backend, quick, seed, progress):
    be = nn_backend if nn_backend != "cuda" else "numba"  # 2-element arrays: host kernels
    runs = optimizer_trajectories(backend=be)
    for name, r in runs.items():
        print(f"   {name:<22} lr {r['lr']}: loss {r['loss'][0]:.2f} -> {r['final_loss']:.3g} after "
              f"{len(r['loss']) - 1} steps, w = ({r['path'][-1][0]:.3g}, {r['path'][-1][1]:.3g})",
              flush=True)
    rep.figure("optimizer_trajectories", {"loss": QUADRATIC, "backend": be, "runs": runs},
               lambda p: plots.trajectories(runs, p, loss=_quadratic, title=(
                   f"{QUADRATIC}: the same step size 0.4, {len(runs['GD']['loss']) - 1} steps "
                   f"(fusedops.ops on {be})")))


def profile_section(rep, *, nn_backend, quick, seed, progress):
    from . import profile

    ops = [o for o in DEMO_OPS if o in profile.available_ops()]
    targets = profile.available_backends()
    if quick:  # a smoke test: fusedops' own backends only, no optional peers
        targets = [t for t in targets if t not in profile.PEERS]
    gpu = "cuda" in targets  # sizes up to where a GPU pays off, with transfers
    sizes = (1000, 10_000) if quick else (10_000, 100_000, 1_000_000, 4_000_000) + (
        (16_000_000,) if gpu else ())
    warning = profile.load_warning(profile.describe_machine())
    if warning:
        print("   " + warning, flush=True)
    res = profile.run_profile(ops, sizes, targets, repeat=2 if quick else 5,
                              probe=getattr(rep, "probe", {}) or False, progress=progress,
                              min_sample_s=0.002 if quick else 0.02)
    (rep.dir / "profile.txt").write_text(profile.format_tables(res))
    big = max(sizes)
    for op in ops:
        rows = [r for r in res["results"] if r["op"] == op and r["size"] == big]
        cells = [f"{r['backend']} {r['gbps']:.1f} GB/s"
                 + (f" ({r['speedup_vs_numpy']:.1f}x numpy)" if r["speedup_vs_numpy"] else "")
                 for r in rows if r["backend"] != "numpy"]
        print(f"   {op:<18} n={profile.format_size(big)}: " + "; ".join(cells), flush=True)
    for op, cross in res["crossover"].items():
        if gpu:
            text = {t: profile.format_size(n) if n else "never here" for t, n in cross.items()}
            print(f"   {op:<18} GPU beats the fastest CPU backend from: kernel only "
                  f"{text['cuda']}, with transfers {text['cuda+transfer']}", flush=True)
    print(f"   full tables: {rep.dir / 'profile.txt'}", flush=True)
    for r in res["results"]:
        r.pop("samples_s", None)
    rep.figure("throughput", res, lambda p: plots.throughput_plot(res, p))
