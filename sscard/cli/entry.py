"""The ``sscard`` console script: the command line with Python's start-up and exit kept short.

A command loads some 200 modules. While they load, Python's cyclic garbage
collector keeps walking every object created so far (functions, classes, code),
though none of them is garbage: about 15 ms of ``sscard read`` (issue 19,
bench/startup.py). So the collector is off while the command line loads; when
the command starts, everything loaded so far is frozen (:func:`gc.freeze`: kept
out of every later collection, as the gc documentation advises for a process's
start-up objects) and the collector runs again for the command's own objects,
so a long-running command (``agent serve``, ``sync run``) collects as usual.
At exit the remaining objects are frozen too: shutdown still flushes the
output, runs the atexit handlers and frees every module, without the
collector's passes over them. Importing :mod:`sscard.cli.main` (tests, other
programs) changes nothing of this.
"""

from __future__ import annotations

import gc
import sys


def main() -> None:
    """Run ``sscard`` (the console script and ``python -m sscard``): in the command
    server when one runs and takes it (:mod:`sscard.cli.cmdclient`), else here."""
    from sscard.cli.cmdclient import forward

    code = forward(sys.argv[1:])
    if code is not None:
        sys.exit(code)
    gc.disable()
    try:
        from sscard.cli.main import main as run

        run()
    finally:
        gc.freeze()


def command_starts() -> None:
    """The command is about to run: freeze what loading left, collect again from here on.

    A no-op unless :func:`main` turned the collector off (CliRunner in tests,
    another program calling the CLI).
    """
    if not gc.isenabled():
        gc.freeze()
        gc.enable()
