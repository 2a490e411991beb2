"""``python -m sscard`` runs the command line."""

from sscard.cli.main import main

main()
