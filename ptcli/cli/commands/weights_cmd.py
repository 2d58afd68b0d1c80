"""`ptcli weights list|fetch|path`: the weights every installed recipe knows of."""

from typing import Annotated

import typer

from ptcli.errors import UsageError
from ptcli.cli.options import JsonOption
from ptcli.output import emit, emit_json

app = typer.Typer(help="List, download and locate model weights.", no_args_is_help=True, rich_markup_mode=None)


def _catalogue(recipe: str | None = None):
    """(recipe, model spec) for every listed model with weights."""
    from ptcli.plugins import get_plugins

    plugins = get_plugins()
    recipes = [plugins.recipe(recipe)] if recipe else list(plugins.recipes.values())
    for entry in recipes:
        registry = entry.model_registry
        for name in registry.names():
            spec = registry.find(name)
            if spec is not None and spec.weights is not None:
                yield entry.name, spec


def find_weights(name: str):
    """The WeightsSpec called ``name``, from any recipe's model registry."""
    from ptcli.plugins import get_plugins

    # Fixed entries first, then specific resolvers (timm/<name>), then catch-alls (any hub
    # org/name): a recipe that names a model outright beats another's resolver that takes anything.
    for resolvers, catch_all in ((False, False), (True, False), (True, True)):
        for recipe in get_plugins().recipes.values():
            spec = recipe.model_registry.find(name, resolvers=resolvers, catch_all=catch_all)
            if spec is not None and spec.weights is not None:
                return spec.weights
    raise UsageError(f"no weights called {name!r}; `ptcli weights list` shows the names")


@app.command("list")
def list_weights(
    recipe: Annotated[str | None, typer.Option(metavar="RECIPE", help="Only this recipe's weights.")] = None,
    json_output: JsonOption = False,
) -> None:
    """List known weights, where they come from and whether they are on this machine."""
    from ptcli.models import weights

    rows = []
    for recipe_name, spec in _catalogue(recipe):
        w = spec.weights
        local = weights.find_cached(w)
        rows.append({"name": w.name, "recipe": recipe_name, "source": w.source, "license": w.license,
                     "present": local is not None, "path": str(local or weights.cache_path(w))})
    if recipe and not rows:
        from ptcli.output import warn

        # Said on stderr, so that --json output stays an empty list of lines.
        warn(f"recipe {recipe} has no weights files: its models are trained from scratch or built from a checkpoint")
        return
    width = max((len(row["name"]) for row in rows), default=0)
    for row in rows:
        if json_output:
            emit_json(row)
        else:
            emit(f"{row['name']:<{width}}  {row['recipe']:<16} {'present' if row['present'] else 'missing':<8} {row['path']}")


@app.command("fetch")
def fetch(
    names: Annotated[list[str], typer.Argument(metavar="NAME...", help="Weights names, as `ptcli weights list` shows them.")],
    json_output: JsonOption = False,
) -> None:
    """Download weights into the cache (on a connected machine), checking their sha256."""
    from ptcli.models import weights

    for name in names:
        path = weights.resolve(find_weights(name))
        if json_output:
            emit_json({"name": name, "path": str(path)})
        else:
            emit(str(path))


@app.command("path")
def path(
    name: Annotated[str, typer.Argument(metavar="NAME", help="A weights name, as `ptcli weights list` shows it.")],
    json_output: JsonOption = False,
) -> None:
    """Print where a weights file is on this machine (exit 1 if it is not there yet)."""
    from ptcli.models import weights

    spec = find_weights(name)
    local = weights.find_cached(spec)
    if local is None:
        raise weights.unavailable(spec, "not downloaded yet")
    if json_output:
        emit_json({"name": name, "path": str(local)})
    else:
        emit(str(local))
