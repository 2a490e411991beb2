"""``python -m sscard`` runs the command line."""

from sscard.cli.entry import main

main()
