"""State shared by every command: global options and the output helpers."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any

import click


@dataclass
class CliState:
    """Global options of one ``sscard`` invocation."""

    reader: str | None = None
    json: bool = False
    log_level: str = "warning"

    def emit(self, data: Any, human: str | None = None) -> None:
        """Print ``data`` as JSON with ``--json``, else the human text (default: ``str(data)``)."""
        if self.json:
            click.echo(json.dumps(data, ensure_ascii=False, indent=2, sort_keys=False))
        else:
            click.echo(human if human is not None else str(data))

    def error(self, kind: str, message: str, code: int, **extra: Any) -> None:
        """Report an error on stderr (JSON with ``--json``)."""
        if self.json:
            payload = {"error": kind, "message": message, "exit_code": code, **extra}
            sys.stderr.write(json.dumps(payload, ensure_ascii=False) + "\n")
        else:
            click.echo(f"Error: {message}", err=True)


def state() -> CliState:
    """The :class:`CliState` of the running command."""
    ctx = click.get_current_context()
    obj = ctx.find_object(CliState)
    if obj is None:  # a command invoked on its own, e.g. in a test
        obj = ctx.ensure_object(CliState)
    return obj


pass_state = click.make_pass_decorator(CliState, ensure=True)
