"""`python -m sikap` runs the CLI."""

from sikap.cli import app

app(prog_name="sikap")
