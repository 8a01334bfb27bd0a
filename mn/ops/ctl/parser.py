"""zstack-ctl's command line: the parser, assembled from the command modules, and main.

Each command module has `register(commands)`, which adds its subcommands with Commands.add; the
order of COMMAND_MODULES is the order of `zstack-ctl --help`. Adding a command is adding a module
here. main turns a CtlError into its message on stderr and its exit code (2 for usage errors).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from mn.ops.ctl import configure, daemon, database, diagnostics, status, upgrade
from mn.ops.ctl.settings import CtlError

COMMAND_MODULES = (daemon, status, configure, upgrade, database, diagnostics)


class Commands:
    """Adds zstack-ctl's subcommands; each also takes --home after its name."""

    def __init__(self, sub: argparse._SubParsersAction[argparse.ArgumentParser]):
        self._sub = sub
        self._common = argparse.ArgumentParser(add_help=False)
        self._common.add_argument("--home", default=argparse.SUPPRESS, help="MN home directory")

    def add(self, name: str, func: Callable[[argparse.Namespace], int], help_: str,
            parents: Sequence[argparse.ArgumentParser] = ()) -> argparse.ArgumentParser:
        """A subcommand `name` that runs func(args); `help_` is both its summary and description."""
        p = self._sub.add_parser(name, help=help_, description=help_, parents=[self._common, *parents])
        p.set_defaults(func=func)
        return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zstack-ctl", description="Manage the ZStack management node on "
                                     "this machine.")
    parser.add_argument("--home", help="MN home directory (default: $ZSTACK_HOME or ~/.zstack)")
    commands = Commands(parser.add_subparsers(dest="command", metavar="COMMAND"))
    for module in COMMAND_MODULES:
        module.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return args.func(args)
    except CtlError as exc:
        print(f"zstack-ctl {args.command}: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
