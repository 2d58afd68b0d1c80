"""`ptcli plugins`: what is installed and whether it loaded."""

from ptcli.options import JsonOption
from ptcli.output import emit


def plugins(json_output: JsonOption = False) -> None:
    """List installed plugins: distribution, version, commands and load status."""
    from ptcli.plugins import get_plugins

    infos = get_plugins().infos
    if json_output:
        import json

        emit(json.dumps([info.as_dict() for info in infos], indent=2))
        return
    if not infos:
        emit("no plugins installed")
        return
    width = max(len(info.name) for info in infos)
    for info in infos:
        origin = f"{info.distribution} {info.version}".strip()
        detail = f"commands: {', '.join(info.commands) or '-'}" if info.status == "ok" else info.error
        emit(f"{info.name:<{width}}  {info.status:<5}  {origin}  {detail}")
