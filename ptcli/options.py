"""Options that many commands share, declared once so that they read the same everywhere."""

from typing import Annotated

import typer

from ptcli.devices import DEVICE_HELP

JsonOption = Annotated[bool, typer.Option("--json", help="Machine output: JSON on stdout, errors included.")]
DeviceOption = Annotated[str, typer.Option("--device", metavar="DEVICE", help=DEVICE_HELP)]
TrustRemoteCodeOption = Annotated[bool, typer.Option(
    "--trust-remote-code", help="Let a Hugging Face model folder run its own Python code (auto_map); off, such a "
    "model is refused. Read that code first.")]
