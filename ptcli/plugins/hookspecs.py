"""The whole plugin surface. A new capability is a new hook; old plugins keep working."""

import pluggy

hookspec = pluggy.HookspecMarker("ptcli")
hookimpl = pluggy.HookimplMarker("ptcli")


@hookspec
def register_recipes(register):
    """Register recipes: call register(Recipe(...)) once for each recipe the plugin provides."""
