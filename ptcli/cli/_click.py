"""The click that typer runs on. Typer 0.29 vendors click as ``typer._click``; its classes and
exceptions are not the standalone ``click`` package's, so the CLI must use these."""

from typer._click.core import Context
from typer._click.exceptions import ClickException, UsageError
from typer.exceptions import Abort, Exit
from typer._click.formatting import HelpFormatter

__all__ = ["Abort", "ClickException", "Context", "Exit", "HelpFormatter", "UsageError"]
