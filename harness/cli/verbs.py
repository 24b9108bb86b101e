"""The one registration point of the `harness` verbs.

Each module of harness/cli/ declares its verbs with `@verb(name, help, options)` on the handler:
name, help, options and handler in one place. harness/cli/__init__.py finds the modules with
pkgutil, so no list of verbs is kept in step by hand anywhere.

Start-up is part of the interface: a verb module imports at its top only the standard library and
this package's light modules (errors, console, version); the options function and the handler
import what they need. `harness --help` lists every verb by name and help alone; a verb's options
are added only when the command line names it (profile's and plan's import torch for their
defaults), so `--help`, `status` and the analysis verbs import neither torch nor ray.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

Options = Callable[[argparse.ArgumentParser], None]
Handler = Callable[[argparse.Namespace], int]


@dataclass(frozen=True)
class Verb:
    name: str
    help: str  # the line in `harness --help`
    options: Options  # adds the verb's arguments (and any set_defaults) to its parser
    handler: Handler  # returns the exit code; raises StudyError for bad input (exit 2)
    description: str | None = None  # `harness VERB --help`'s paragraph, when it says more than `help`


DECLARED: dict[str, list[Verb]] = {}  # module name -> its verbs, in the order they are declared


def verb(name: str, help: str, options: Options, *, description: str | None = None) -> Callable[[Handler], Handler]:
    """Declare the decorated function as the handler of `harness NAME`."""

    def declare(handler: Handler) -> Handler:
        DECLARED.setdefault(handler.__module__, []).append(Verb(name, help, options, handler, description))
        return handler

    return declare


def add(subparsers: argparse._SubParsersAction, v: Verb, *, full: bool = True) -> None:
    """Add `v` to the `harness` parser; not `full`: listed in --help, its options come with its verb."""
    if not full:
        subparsers.add_parser(v.name, help=v.help, add_help=False)
        return
    p = subparsers.add_parser(v.name, help=v.help, **({"description": v.description} if v.description else {}))
    v.options(p)
    p.set_defaults(func=v.handler)


def register(subparsers: argparse._SubParsersAction, module: str) -> None:
    """Add every verb `module` declares, with its options (tests build one module's parser this way)."""
    for v in DECLARED.get(module, []):
        add(subparsers, v)
