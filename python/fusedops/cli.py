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


COMMANDS = {
    "info": ("versions, machine, backends and measured memory bandwidth", _info_args, _info_run),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fusedops", description="fused training kernels")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, add_args, run) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_args(p)
        p.set_defaults(_run=run)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args._run(args)


if __name__ == "__main__":
    sys.exit(main())
