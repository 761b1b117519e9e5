"""The ``fluidrec`` command line: thin, one subcommand group per pipeline stage.

Every stage owns ``fluidrec/<stage>/cli.py`` with ``register(subparsers)``; this
module only assembles them, runs the chosen handler and turns user errors into a
one-line message with exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from fluidrec import __version__
from fluidrec.errors import FluidrecError
from fluidrec.utils.cli import fail

# Stage CLI modules, in pipeline order. Each exposes register(subparsers).
STAGE_CLIS = (
    "fluidrec.data.cli",
    "fluidrec.data.world.cli",
    "fluidrec.codes.cli",
    "fluidrec.encoder.cli",
    "fluidrec.ranker.cli",
    "fluidrec.experiments.cli",
    "fluidrec.simulate.cli",
    "fluidrec.serve.cli",
    "fluidrec.foresight.cli",
    "fluidrec.sequence.cli",
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse default prints usage too)
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="fluidrec",
        description="ID-free ranking for short-lived items: content codes instead of item IDs.",
    )
    parser.add_argument("--version", action="version", version=f"fluidrec {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in STAGE_CLIS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except FluidrecError as exc:
        return fail(str(exc))
    except KeyboardInterrupt:
        return fail("interrupted")


if __name__ == "__main__":
    sys.exit(main())
