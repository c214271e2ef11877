"""Command line: `fusedops info | profile | demo | train` (also `python -m fusedops ...`).

Each subcommand registers itself in COMMANDS as (add_arguments, run); `run(args)` returns the
exit code. Bad arguments give argparse's usage error (exit 2), not a traceback.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys


def _info_args(p):
    p.add_argument("--json", action="store_true", help="print the same as JSON")
    p.add_argument("--min-time", type=float, default=0.02, metavar="SECONDS",
                   help="each timed sample calls the op back to back for at least this long")
    p.add_argument("--no-probe", action="store_true", help="skip the bandwidth measurement")
    p.add_argument("--repeat", type=_positive_int, default=5, help="probe repetitions (median)")


def _info_run(args):
    from .sysinfo import format_info, info

    d = info(probe_bandwidth=not args.no_probe, repeat=args.repeat)
    print(json.dumps(d, indent=2) if args.json else format_info(d))
    return 0


def _positive_int(text):
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def _positive_size(text):
    """An element count: 10000, 1e6, 16M (k, M, G are powers of ten)."""
    t = text.strip()
    scale = {"k": 10**3, "K": 10**3, "m": 10**6, "M": 10**6, "g": 10**9, "G": 10**9}.get(t[-1:], 1)
    if scale != 1:
        t = t[:-1]
    try:
        v = float(t) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive size such as 10000, 1e6 or 16M; "
                                         f"got {text!r}") from None
    if not v >= 1 or v != int(v):
        raise argparse.ArgumentTypeError(f"sizes must be positive whole numbers of elements; "
                                         f"got {text!r}")
    return int(v)


def _list_of(item):
    def parse(text):
        parts = [s.strip() for s in text.split(",") if s.strip()]
        if not parts:
            raise argparse.ArgumentTypeError("expected a comma-separated list")
        return [item(s) for s in parts]
    return parse


def _profile_args(p):
    from . import profile

    p.add_argument("--ops", type=_list_of(str), metavar="OP,...",
                   help=f"ops to time (default: all in this build); from {', '.join(profile.OPS)}")
    p.add_argument("--sizes", type=_list_of(_positive_size), metavar="N,...",
                   help="elements per array (default: 10k,100k,1M,10M, in cache to beyond it); "
                        "batchnorm uses (N/F, F)")
    p.add_argument("--backends", type=_list_of(str), metavar="B,...",
                   help="numpy, numba, c, cuda (kernel only and with transfers), torch, "
                        "torch-cuda (default: all available)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--repeat", type=_positive_int, default=5, help="timed samples (median)")
    p.add_argument("--features", type=_positive_int, default=256, help="batchnorm columns F")
    p.add_argument("--threads", type=_positive_int, help="threads of the CPU backends and torch")
    p.add_argument("--json", metavar="FILE", help="write every result as JSON ('-': stdout)")
    p.add_argument("--csv", metavar="FILE", help="write one CSV row per (op, size, backend)")
    p.add_argument("--plot", metavar="FILE", help="PNG of GB/s against size per backend per op")
    p.add_argument("--min-time", type=float, default=0.02, metavar="SECONDS",
                   help="each timed sample calls the op back to back for at least this long")
    p.add_argument("--no-probe", action="store_true", help="skip the bandwidth probe (no %%probe)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _profile_run(args):
    from . import profile

    settings = profile.check_settings(args.ops, args.sizes, args.backends, args.dtype,
                                      args.features, plot=args.plot, threads=args.threads,
                                      outputs=(args.json, args.csv))
    if isinstance(settings, str):
        args._parser.error(settings)
    to_stdout = args.json == "-"
    warning = profile.load_warning(profile.describe_machine())
    if warning:
        print(warning, file=sys.stderr)
    show = None if to_stdout else (lambda res, op: print(profile.format_tables(res, [op]), flush=True))
    result = profile.run_profile(settings["ops"], settings["sizes"], settings["backends"],
                                 dtype=args.dtype, repeat=args.repeat, features=args.features,
                                 probe=not args.no_probe, progress=not args.no_progress,
                                 on_op_done=show, min_sample_s=args.min_time)
    return profile.emit(result, json_path=args.json, csv_path=args.csv, plot_path=args.plot)


def _set_threads(args):
    """--threads for both CPU backends (and PyTorch when installed): a usage error if too many."""
    from .. import set_num_threads

    try:
        set_num_threads(args.threads)
    except ValueError as exc:
        args._parser.error(f"--threads: {exc}")
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(args.threads)


def _demo_args(p):
    p.add_argument("--out", default="fusedops-report", metavar="DIR",
                   help="report folder for the figures and summary.json (default: %(default)s)")
    p.add_argument("--backend", choices=("numpy", "numba", "c", "cuda"),
                   help="backend the models train on (default: cuda with a GPU, else numba)")
    p.add_argument("--quick", action="store_true", help="a few epochs and tiny sizes (a smoke test)")
    p.add_argument("--seed", type=_nonnegative_int, default=0)
    p.add_argument("--threads", type=_positive_int,
                   help="threads of the CPU backends in the profile (default: all cores)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _demo_run(args):
    from ..backends import backend_unavailable_reason
    from .demo import run_demo

    missing = [name for name, mod in (("scikit-learn", "sklearn"), ("matplotlib", "matplotlib"))
               if importlib.util.find_spec(mod) is None]
    if missing:
        args._parser.error(f"the demo needs {' and '.join(missing)}: pip install "
                           "'fusedops[data,plot]'")
    if args.threads:
        _set_threads(args)
    if args.backend and backend_unavailable_reason(args.backend):
        args._parser.error(f"backend {args.backend!r} is not available: "
                           f"{backend_unavailable_reason(args.backend)}")
    run_demo(args.out, quick=args.quick, backend=args.backend, seed=args.seed,
             progress=not args.no_progress)
    return 0


def _noise(text):
    kind, _, level = text.partition(":")
    try:
        value = float(level)
    except ValueError:
        value = -1.0
    if kind not in ("gaussian", "masking") or not value >= 0 or (kind == "masking" and value >= 1):
        raise argparse.ArgumentTypeError(f"expected gaussian:STD or masking:P (0 <= P < 1); "
                                         f"got {text!r}")
    return (kind, value)


def _nonnegative_int(text):
    try:
        v = int(text)
    except ValueError:
        v = -1
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return v


def _fraction(text):
    try:
        v = float(text)
    except ValueError:
        v = -1.0
    if not 0 <= v < 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1); got {text!r}")
    return v


def _nonnegative_float(text):
    try:
        v = float(text)
    except ValueError:
        v = -1.0
    if not v >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0; got {text!r}")
    return v


def _train_args(p):
    p.add_argument("--model", choices=("mlp", "autoencoder"), default="mlp")
    p.add_argument("--data", default="digits", metavar="digits|FILE.npz",
                   help="the bundled digits, or a .npz with X (and y; X_test / y_test optional)")
    p.add_argument("--epochs", type=_positive_int, default=30)
    p.add_argument("--batch-size", type=_positive_int, default=64)
    p.add_argument("--optimizer", choices=("sgd", "adagrad", "rmsprop", "adam", "adamw"),
                   default="adam")
    p.add_argument("--lr", type=_nonnegative_float, help="learning rate (default: per optimizer)")
    p.add_argument("--hidden", type=_list_of(_positive_int), metavar="N,...",
                   help="hidden layer sizes (default: 256,128 for mlp, 128 for autoencoder)")
    p.add_argument("--latent-dim", type=_positive_int, default=16, help="autoencoder code size")
    p.add_argument("--dropout", type=_fraction, default=0.0)
    p.add_argument("--batchnorm", action="store_true")
    p.add_argument("--noise", type=_noise, metavar="gaussian:STD|masking:P",
                   help="train a denoising autoencoder with this corruption")
    p.add_argument("--l1", type=_nonnegative_float, default=0.0)
    p.add_argument("--l2", type=_nonnegative_float, default=0.0)
    p.add_argument("--validation-split", type=_fraction, default=0.1)
    p.add_argument("--early-stopping", type=_nonnegative_int, metavar="PATIENCE")
    p.add_argument("--backend", choices=("numpy", "numba", "c", "cuda"))
    p.add_argument("--seed", type=_nonnegative_int, default=0)
    p.add_argument("--threads", type=_positive_int, help="threads of the CPU backends")
    p.add_argument("--save", metavar="FILE.npz", help="save the trained model (fusedops.nn.load)")
    p.add_argument("--quiet", action="store_true", help="no line per epoch")
    p.add_argument("--shard-state", action="store_true",
                   help="under mpiexec -n N: shard the optimizer state across the processes "
                        "(ZeRO-1); training is data-parallel under mpiexec either way")


def _train_run(args):
    from ..backends import BackendUnavailableError
    from .train import train

    if args.threads:
        _set_threads(args)
    try:
        return train(args)
    except (ValueError, TypeError, BackendUnavailableError) as exc:
        args._parser.error(str(exc))


COMMANDS = {
    "info": ("versions, machine, backends and measured memory bandwidth", _info_args, _info_run),
    "profile": ("time every fused op on every backend across sizes (CPU against GPU)",
                _profile_args, _profile_run),
    "demo": ("the main job: info, digits MLP, denoising autoencoder, L1/L2, optimizer paths, "
             "a short profile; figures and summary.json in a report folder", _demo_args, _demo_run),
    "train": ("train an MLP or autoencoder on digits or a .npz file", _train_args, _train_run),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fusedops", description="fused training kernels")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, add_args, run) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_args(p)
        p.set_defaults(_run=run, _parser=p)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args._run(args)


if __name__ == "__main__":
    sys.exit(main())
