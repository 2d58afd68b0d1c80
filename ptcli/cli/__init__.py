"""The command line: the root command and its core commands (``app``), the options every
command shares (``options``), the command derived from a recipe's Predictor (``derived``) and
the core commands themselves (``commands``). ``ptcli.cli:main`` is the console script."""

from ptcli.cli.app import LazyCommand, PtcliGroup, app, crash_message, main, report_error  # noqa: F401
