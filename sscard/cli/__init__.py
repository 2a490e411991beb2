"""The ``sscard`` command line: Click commands only (parse, prompt, print, exit code).

No card logic lives here; every command calls the library. The library never
imports this package.
"""
