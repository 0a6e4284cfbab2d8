"""How every `diskport` sub-command is declared: its help and its example come from the docstring of its function.

A command is the function that runs it; the docstring says, once and beside the code, what the command does
(its first paragraph, a sentence) and how it is used (what follows `Example:`):

    def run_jobs(arguments: argparse.Namespace) -> int:
        \"""List the project's jobs, newest first.

        Example: diskport jobs
        \"""

    add_command(commands, "jobs", run_jobs, parents=[remote, printed])
"""

from __future__ import annotations

import argparse
import inspect
from collections.abc import Callable, Sequence
from typing import Any

Run = Callable[[argparse.Namespace], int]


def add_command(commands: Any, name: str, run: Run, *, parents: Sequence[Any] = ()) -> Any:
    """A sub-command (of `diskport`, or of a command group) running `run`, helped and exemplified by its docstring."""
    what, example = described(run)
    parser = _add_parser(commands, name, what, example, parents)
    parser.set_defaults(run=run)
    return parser


def add_command_group(commands: Any, name: str, *, help: str, example: str, actions: str) -> Any:
    """A command of several actions (`diskport image update|tags|delete`): the parser its actions are added to."""
    group = _add_parser(commands, name, help[0].upper() + help[1:] + ".", example, ())
    return group.add_subparsers(dest=f"{name.replace('-', '_')}_command", required=True, metavar="ACTION", help=actions)


def described(run: Run) -> tuple[str, str]:
    """What the command does (the docstring's first paragraph) and its example (what follows `Example:`)."""
    documented = getattr(run, "func", run)  # a functools.partial runs its function
    text = inspect.getdoc(documented) or ""
    what = " ".join(text.split("\n\n", 1)[0].split())
    _, found, example = text.partition("Example:")
    if not what or not found:
        raise ValueError(f"{documented.__name__} needs a docstring: a sentence, then 'Example: diskport ...'")
    return what, " ".join(example.split())


def _add_parser(commands: Any, name: str, what: str, example: str, parents: Sequence[Any]) -> Any:
    return commands.add_parser(
        name,
        parents=list(parents),
        help=(what[0].lower() + what[1:] if what[1:2].islower() else what).rstrip("."),
        description=what,
        epilog=f"example:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
