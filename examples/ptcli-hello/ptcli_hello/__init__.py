"""A minimal ptcli plugin. This module is imported by `ptcli --help`: declarations only."""

from ptcli import hookimpl
from ptcli.plugins.recipe import Command, DeviceSupport, Recipe

RECIPE = Recipe(
    name="hello",
    help="A tiny example recipe.",
    commands=(Command(name="hello", help="Greet someone, using a tiny model on the chosen device.", target="ptcli_hello.command:hello"),),
    models="ptcli_hello.command:make_registry",
    devices=DeviceSupport(devices=("cuda", "cpu")),
)


@hookimpl
def register_recipes(register):
    register(RECIPE)
