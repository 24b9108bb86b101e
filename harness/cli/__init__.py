"""The `harness` command. Thin: every verb delegates to one function elsewhere.

Exit codes: 0 all ok, 1 some trials failed (their rows are written), 2 bad input (nothing
written), 130 interrupted (finished trials kept), 143 terminated by SIGTERM (the same).

Each module of this package declares its verbs with `harness.cli.verbs.verb` (name, help,
options, handler in one place) and `ORDER`, where its verbs appear in `harness --help`;
`build_parser` finds the modules with pkgutil. Start-up is part of the interface: no verb module
imports torch, ray or pandas at its top, and each verb imports what it needs when it runs, so
`harness --help`, `status` and the analysis verbs answer at once (tests/test_imports.py blocks
torch and ray to prove it).
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import pkgutil
import sys

from harness.cli import verbs
from harness.errors import StudyError
from harness.version import version_line


def declared() -> list[verbs.Verb]:
    """Every verb of every module in this package, in `harness --help`'s order."""
    mods = [importlib.import_module(f"{__name__}.{m.name}") for m in pkgutil.iter_modules(__path__)]
    return [v for mod in sorted(mods, key=lambda m: getattr(m, "ORDER", 0)) for v in verbs.DECLARED.get(mod.__name__, [])]


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """`argv`: the command line about to be parsed; a verb's options are added only when it names the verb."""
    p = argparse.ArgumentParser(prog="harness", description="Architecture scaling studies: ResNet vs ViT vs Mixer vs ConvNeXt.")
    p.add_argument("--version", action=_Version, help="print the version and the checkout's git sha, and exit")
    sub = p.add_subparsers(dest="command", required=True)
    argv = sys.argv[1:] if argv is None else argv
    named = next((a for a in argv if not a.startswith("-")), None)  # top-level options take no values
    for v in declared():
        verbs.add(sub, v, full=v.name == named)
    return p


class _Version(argparse.Action):
    """argparse's version action, with the git sha asked for only when --version is given (not on every command)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)  # type: ignore[arg-type]

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        print(version_line())  # stdout, as argparse's own version action
        parser.exit()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(argv)
    args, extra = parser.parse_known_args(argv)
    # argparse takes the positionals before the first option in one go: `run s.yaml --dry-run a=1` leaves
    # a=1 over. Overrides after options are still overrides (in the order typed); anything else is an error.
    if extra and hasattr(args, "overrides") and not any(a.startswith("-") for a in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a full disk or a closed pipe shows here, not as a traceback at exit
        return code
    except StudyError as e:
        print(f"error: {e.line()}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `harness models --json | head -1`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a shell reports it
    except OSError as e:
        if e.errno != errno.ENOSPC:
            raise
        print(f"error: cannot write the output: {e.strerror} — free space on that disk or write elsewhere", file=sys.stderr)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 2


if __name__ == "__main__":
    sys.exit(main())
