"""How every `diskport` sub-command is declared: a help line, a description, and an example of its use."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any


def add_command(commands: Any, name: str, *, help: str, example: str, parents: Sequence[Any] = ()) -> Any:
    """A sub-command (of `diskport`, or of a command group) whose help ends with an example of its use."""
    return commands.add_parser(
        name,
        parents=list(parents),
        help=help,
        description=help[0].upper() + help[1:] + ".",
        epilog=f"example:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
