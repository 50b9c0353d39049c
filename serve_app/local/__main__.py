"""``python -m serve_app.local``: serve the whole graph on a local Ray (see :mod:`serve_app.local.cli`)."""

from serve_app.local.cli import main

main()
