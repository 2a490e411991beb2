"""PIN entry for commands: a hidden prompt, or stdin lines for automation; never argv."""

from __future__ import annotations

import sys

import click

from sscard import errors


def read_pins(from_stdin: bool, prompts: list[tuple[str, bool]]) -> list[str]:
    """PINs for ``prompts`` ((label, confirm)) from a hidden prompt or stdin lines."""
    out: list[str] = []
    for label, confirm in prompts:
        if from_stdin:
            first = sys.stdin.readline().rstrip("\r\n")
            second = sys.stdin.readline().rstrip("\r\n") if confirm else first
        else:
            first = click.prompt(label, hide_input=True, err=True)
            second = (
                click.prompt(f"{label} (again)", hide_input=True, err=True) if confirm else first
            )
        if first != second:
            raise errors.InvalidInput("PIN not confirmed", [("pin", "the two entries differ")])
        out.append(first)
    return out
