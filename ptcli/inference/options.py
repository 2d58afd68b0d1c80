"""A recipe's options, declared once on its Predictor (``options = (Option(...), ...)``), from
which the core derives the command's flags and --help, a served model's ``options:`` in
models.yaml, what a request may set (/predict's "options", an upload's query parameters, an
OIP v2 request's "parameters"), the OpenAPI schema and `ptcli plugins check`'s listing.

The values reach the predictor twice: as keyword arguments of ``load`` (so that a Core v3
predictor's ``load(source, device, *, top_k=5)`` keeps working) and as ``predictor.option_values``,
an ``Options`` whose attributes are the options' names. A request's own values are applied to
a shallow copy of the predictor (``with_values``) that runs that request's inputs: a
predictor reads ``self.option_values`` in ``forward`` and ``postprocess`` for what a request may
change. Like LitServe's ``LitAPI`` arguments and Hugging Face pipelines' ``_sanitize_parameters``,
but typed and checked before any work: a wrong value is one line naming the option.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: The option types a declaration may use: what a flag, a YAML value and a JSON value share.
TYPES = (int, float, str, bool)


class OptionError(ValueError):
    """A value an option refuses, or an option that does not exist: one line naming it."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


@dataclass(frozen=True)
class Option:
    """One option of a recipe."""

    name: str
    type: type
    default: Any
    help: str
    #: Smallest and largest value (numbers).
    min: float | None = None
    max: float | None = None
    #: The values allowed (str options).
    choices: tuple | None = None
    #: Whether a request to a served model may set it (what only changes a result's fields or
    #: a threshold, never what the model loaded).
    request: bool = False
    #: The command's flag, when not ``--name-with-dashes``; a one-letter alias ("-k").
    flag: str | None = None
    short: str | None = None
    metavar: str | None = None
    #: None allowed (an option whose default is "the recipe decides").
    optional: bool = False
    #: An option of the command alone (a video's tracker, a side file, a data-set run's
    #: settings): never in models.yaml, a request or the served model's schema.
    command_only: bool = False

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            raise TypeError(f"option {self.name}: type {self.type!r} is not one of int, float, str, bool")
        if not self.name.isidentifier():
            raise TypeError(f"option {self.name!r} is not an identifier")

    @property
    def cli_flag(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")

    def check(self, value: Any, where: str = "") -> Any:
        """``value`` (from a flag, YAML, JSON or a query string) as the option's type, checked."""
        def refuse(what: str) -> OptionError:
            return OptionError(self.name, f"{where}option {self.name!r}: {what}")

        if value is None:
            if self.optional:
                return None
            raise refuse("needs a value")
        if isinstance(value, str) and self.type is not str:
            value = self._from_text(value, refuse)
        if self.type is bool:
            if not isinstance(value, bool):
                raise refuse(f"{value!r} is not true or false")
        elif self.type is int:
            if isinstance(value, bool) or not isinstance(value, int):
                if isinstance(value, float) and value.is_integer():
                    value = int(value)
                else:
                    raise refuse(f"{value!r} is not a whole number")
        elif self.type is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise refuse(f"{value!r} is not a number")
            value = float(value)
            if value != value:
                raise refuse("NaN is not a value")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)  # YAML's 256 for a text option ("N|auto")
        elif not isinstance(value, str):
            raise refuse(f"{value!r} is not a string")
        if self.min is not None and value < self.min or self.max is not None and value > self.max:
            low = "" if self.min is None else f"{self.min:g}"
            high = "" if self.max is None else f"{self.max:g}"
            raise refuse(f"{value!r} is outside {low}..{high}")
        if self.choices is not None and value not in self.choices:
            raise refuse(f"{value!r} is not one of {', '.join(map(str, self.choices))}")
        return value

    def _from_text(self, text: str, refuse):
        if self.type is bool:
            lowered = text.strip().lower()
            if lowered in ("true", "1", "yes", "on"):
                return True
            if lowered in ("false", "0", "no", "off"):
                return False
            raise refuse(f"{text[:40]!r} is not true or false")
        try:
            return self.type(text.strip())
        except ValueError:
            kind = "a whole number" if self.type is int else "a number"
            raise refuse(f"{text[:40]!r} is not {kind}") from None

    def describe(self) -> dict:
        """The declaration as JSON (`ptcli plugins check --json`, the OpenAPI schema)."""
        out: dict[str, Any] = {"name": self.name, "type": self.type.__name__, "default": self.default,
                               "help": self.help, "request": self.request}
        if self.command_only:
            out["command_only"] = True
        for key in ("min", "max", "choices"):
            if getattr(self, key) is not None:
                out[key] = list(getattr(self, key)) if key == "choices" else getattr(self, key)
        return out

    def json_schema(self) -> dict:
        kind = {int: "integer", float: "number", str: "string", bool: "boolean"}[self.type]
        schema: dict[str, Any] = {"type": kind, "description": self.help}
        if self.default is not None:
            schema["default"] = self.default
        if self.min is not None:
            schema["minimum"] = self.min
        if self.max is not None:
            schema["maximum"] = self.max
        if self.choices is not None:
            schema["enum"] = list(self.choices)
        return schema


class Options:
    """The values of a predictor's options, by name (``option_values.top_k``)."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self.__dict__.update(values)

    def as_dict(self) -> dict:
        return dict(self.__dict__)

    def __repr__(self) -> str:
        return f"Options({self.__dict__!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Options) and self.__dict__ == other.__dict__


def declared(predictor_class, *, served: bool = False) -> tuple[Option, ...]:
    """The predictor's options; ``served``: those a served model has (not the command's own)."""
    options = tuple(getattr(predictor_class, "options", ()) or ())
    return tuple(o for o in options if not o.command_only) if served else options


def settle(declaration: tuple[Option, ...], values: Mapping[str, Any] | None, *, where: str = "",
           requested: bool = False) -> dict:
    """``values`` checked against the declaration: every value typed, and (unless
    ``requested``, a request's own few) the defaults filled in. An unknown name, or (for a
    request) one a request may not set, is an OptionError naming the options there are."""
    by_name = {option.name: option for option in declaration}
    if values is not None and not isinstance(values, Mapping):
        raise OptionError("", f"{where}options must be a mapping of names to values")
    values = dict(values or {})
    settled: dict[str, Any] = {}
    for name, value in values.items():
        option = by_name.get(name)
        if option is None or requested and not option.request:
            allowed = [o.name for o in declaration if o.request or not requested]
            known = f"the options are {', '.join(allowed)}" if allowed else \
                "a request may set none of its options" if declaration else "it has no options"
            what = "may not be set by a request" if option is not None else "is not an option of this model"
            raise OptionError(str(name), f"{where}{str(name)[:60]!r} {what}; {known}")
        settled[name] = option.check(value, where)
    if not requested:
        for option in declaration:
            settled.setdefault(option.name, option.default)
    return settled


def with_values(predictor, values: Mapping[str, Any] | None):
    """The predictor with a request's option values: itself when they change nothing, else a
    shallow copy (the model and everything loaded shared) with its ``option_values`` updated."""
    if not values:
        return predictor
    current = getattr(predictor, "option_values", None)
    merged = {**(current.as_dict() if current is not None else {}), **values}
    if current is not None and merged == current.as_dict():
        return predictor
    view = copy.copy(predictor)
    view.option_values = Options(merged)
    return view
