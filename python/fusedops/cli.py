"""Command line: `fusedops info | profile | demo | train` (also `python -m fusedops ...`).

Each subcommand registers itself in COMMANDS as (add_arguments, run); `run(args)` returns the
exit code. Bad arguments give argparse's usage error (exit 2), not a traceback.
"""
from __future__ import annotations

import argparse
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
                                      args.features, plot=args.plot, threads=args.threads)
    if isinstance(settings, str):
        args._parser.error(settings)
    to_stdout = args.json == "-"
    warning = profile.load_warning(profile._machine())
    if warning:
        print(warning, file=sys.stderr)
    show = None if to_stdout else (lambda res, op: print(profile.format_tables(res, [op]), flush=True))
    result = profile.run_profile(settings["ops"], settings["sizes"], settings["backends"],
                                 dtype=args.dtype, repeat=args.repeat, features=args.features,
                                 probe=not args.no_probe, progress=not args.no_progress,
                                 on_op_done=show, min_sample_s=args.min_time)
    return profile.emit(result, json_path=args.json, csv_path=args.csv, plot_path=args.plot)


COMMANDS = {
    "info": ("versions, machine, backends and measured memory bandwidth", _info_args, _info_run),
    "profile": ("time every fused op on every backend across sizes (CPU against GPU)",
                _profile_args, _profile_run),
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
