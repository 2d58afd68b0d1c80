"""Options that many commands share, declared once so that they read the same everywhere."""

from typing import Annotated

import typer

from ptcli.devices import DEVICE_HELP

JsonOption = Annotated[bool, typer.Option("--json", help="Machine output: JSON on stdout, errors included.")]
DeviceOption = Annotated[str, typer.Option("--device", metavar="DEVICE", help=DEVICE_HELP)]
