"""`ptcli plugins`: what is installed and whether it loaded."""

from typing import Annotated

import typer

from ptcli.cli.options import JsonOption
from ptcli.output import emit


def requirement_lines(infos) -> list[str]:
    """One pip requirement per distribution that brings plugins (``name==version``), sorted; a
    distribution installed from a local folder or a URL says so in a comment, since its version
    alone may not be on the package index."""
    import json
    from importlib import metadata

    lines = []
    for name in sorted({info.distribution for info in infos if info.distribution}, key=str.lower):
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        line = f"{dist.metadata['Name']}=={dist.version}"
        origin = json.loads(dist.read_text("direct_url.json") or "null")
        if origin:
            editable = " (editable)" if origin.get("dir_info", {}).get("editable") else ""
            line += f"  # installed from {origin.get('url', '?')}{editable}"
        lines.append(line)
    return lines


app = typer.Typer(help="List installed plugins; check one against the contract; start a new one.",
                  invoke_without_command=True, rich_markup_mode=None)


@app.callback()
def plugins(
    ctx: typer.Context,
    json_output: JsonOption = False,
    requirements: Annotated[bool, typer.Option("--requirements", help="Print the plugins' distributions as pip requirement lines (pip install -r on another machine gets the same set).")] = False,
) -> None:
    """List installed plugins: distribution, version, commands and load status."""
    if ctx.invoked_subcommand is not None:
        return
    from ptcli.plugins import get_plugins

    infos = get_plugins().infos
    if requirements:
        lines = requirement_lines([info for info in infos if info.status == "ok"])
        if json_output:
            import json

            emit(json.dumps(lines))
        else:
            emit("\n".join(lines) if lines else "# no plugins installed")
        return
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


@app.command("check")
def check(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The plugin's name, as `ptcli plugins` lists it.")],
    json_output: JsonOption = False,
) -> None:
    """Check an installed plugin against the contract: it imports no torch at start-up, every
    command answers --help, its config schemas validate their own defaults, each command runs
    its declared example on the CPU, and its exports (once ptcli has them). Exit 1 on a failure."""
    from ptcli.plugins.check import check_plugin, format_checks

    checks = check_plugin(name)
    if json_output:
        import json

        emit(json.dumps({"plugin": name, "ok": all(c["status"] != "failed" for c in checks), "checks": checks}))
    else:
        emit(format_checks(name, checks))
    if any(c["status"] == "failed" for c in checks):
        raise typer.Exit(1)


@app.command("new")
def new(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The recipe's and command's name, e.g. brightness.")],
    output: Annotated[str, typer.Option("--output", "-o", metavar="DIR", help="Where the folder ptcli-NAME goes.")] = ".",
    json_output: JsonOption = False,
) -> None:
    """Generate a working plugin: a command, a training task, a recipe YAML and tests that use
    ptcli.plugins.testing. Then install it into ptcli's own Python and run its tests (the
    command printed names that Python, not whichever `pip` comes first on PATH)."""
    import shlex
    import sys
    from pathlib import Path

    from ptcli.plugins.template import generate

    folder = generate(name, Path(output))
    python = shlex.quote(sys.executable)
    install = f"{python} -m pip install -e {shlex.quote(str(folder))}"
    test = f"{python} -m pytest {shlex.quote(str(folder / 'tests'))}"
    if json_output:
        from ptcli.output import emit_json

        emit_json({"folder": str(folder), "install": install, "test": test})
        return
    emit(f"{folder}: {install} && {test}")
