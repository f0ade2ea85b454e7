"""Option dataclasses: the one place that turns them into command-line flags and reads them from JSON.

Every option set of the toolkit (distillation, teacher, evaluation, experiment) is a dataclass
whose fields carry their unit and help text (``option(...)``). From such a class this module
makes the argparse flags (``add_options``) and builds validated instances from parsed flags
(``from_args``) or from JSON (``from_json`` / ``load_json``). Values are type-checked here, in
one place, before any command creates an output: a JSON ``"steps": "6"`` or ``2.5``, a ``null``
learning rate or a non-finite float is a one-line ``ValueError``, never a traceback deep in a run.

A field whose type is itself an option dataclass is *flattened*: its fields appear as
``--{name}-{sub}`` flags and ``"{name}_{sub}"`` JSON keys (``DistillConfig.aria`` gives
``--aria-beta`` and ``"aria_beta"``), so a nested option set keeps flat, stable names.
Domain checks (ranges, cross-field rules) stay in each class's ``validate()``, which the
builders call.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
import types
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

T = TypeVar("T")


def option(default: Any = dataclasses.MISSING, unit: str = "", help: str = "", *,
           default_factory: Any = dataclasses.MISSING, required: bool = False) -> Any:
    """A dataclass field with its unit and help text (shown by ``--help``). ``required``: a
    command needs it given (its default is only a placeholder, e.g. an empty path)."""
    metadata = {"unit": unit, "help": help, "required": required}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _is_options(hint: Any) -> bool:
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


def _union_args(hint: Any) -> tuple | None:
    if get_origin(hint) in (Union, types.UnionType):
        return get_args(hint)
    return None


def _default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def flat_fields(cls: type) -> list[tuple[str, tuple[str, ...], Any, dataclasses.Field]]:
    """(flat name, attribute path, type hint, field) of every leaf option of ``cls``."""
    out = []
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name.startswith("_"):
            continue
        hint = hints[f.name]
        if _is_options(hint):
            for name, path, sub_hint, sub_field in flat_fields(hint):
                out.append((f"{f.name}_{name}", (f.name, *path), sub_hint, sub_field))
        else:
            out.append((f.name, (f.name,), hint, f))
    return out


def _describe(hint: Any) -> str:
    if get_origin(hint) is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(hint))
    union = _union_args(hint)
    if union:
        return " or ".join(_describe(a) for a in union)
    if hint is type(None):
        return "null"
    if get_origin(hint) is list:
        return f"a list, each item {_describe(get_args(hint)[0])}" if get_args(hint) else "a list"
    if get_origin(hint) is dict or hint is dict:
        return "an object"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(hint, str(hint))


def _check(value: Any, hint: Any) -> tuple[bool, Any]:
    """(ok, value converted to the field's type). Booleans are never numbers; an integral
    float is not an integer; floats must be finite."""
    if get_origin(hint) is Literal:
        return (value in get_args(hint) and type(value) in {type(a) for a in get_args(hint)}), value
    union = _union_args(hint)
    if union:
        for arg in union:
            ok, converted = _check(value, arg)
            if ok:
                return True, converted
        return False, value
    if hint is type(None):
        return value is None, value
    if hint is bool:
        return isinstance(value, bool), value
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        return ok, float(value) if ok else value
    if hint is str:
        return isinstance(value, str), value
    if get_origin(hint) is list:
        if not isinstance(value, list):
            return False, value
        (item,) = get_args(hint) or (Any,)
        converted = []
        for v in value:
            ok, c = _check(v, item) if item is not Any else (True, v)
            if not ok:
                return False, value
            converted.append(c)
        return True, converted
    if get_origin(hint) is dict or hint is dict:
        return isinstance(value, dict), value
    return True, value


def check_value(name: str, value: Any, hint: Any) -> Any:
    """``value`` converted to ``hint``'s type, or ValueError naming the option and the expected type."""
    ok, converted = _check(value, hint)
    if not ok:
        shown = json.dumps(value) if _jsonable(value) else repr(value)
        raise ValueError(f"{name} must be {_describe(hint)}, got {shown}")
    return converted


def check_fields(instance: Any, what: str) -> None:
    """Check (and convert in place) every field of a dataclass instance against its type hint with
    ``check_value``; one ValueError line "WHAT: FIELD must be ..." for the first that fails. For
    dataclasses that are not ``Options`` (the world configs, whose JSON format is their own)."""
    hints = get_type_hints(type(instance))
    for f in dataclasses.fields(instance):
        try:
            setattr(instance, f.name, check_value(f.name, getattr(instance, f.name), hints[f.name]))
        except ValueError as err:
            raise ValueError(f"{what}: {err}") from None


def check_types(options: Any) -> None:
    """ValueError naming the first leaf option of ``options`` whose value does not have its
    field's type (``check_value``: a non-finite float included). ``from_json`` checks the values
    it is given before building; this is the same check for an instance built in code (e.g.
    ``DistillConfig(lr=math.inf)`` passed to ``train``), made first by the ``validate`` of the
    configs that commands run from (DistillConfig, EvalConfig)."""
    hints = {name: hint for name, _, hint, _ in flat_fields(type(options))}
    for name, value in to_dict(options).items():
        check_value(name, value, hints[name])


SEED_LIMIT = 2**63  # torch.manual_seed takes seeds below 2^64; runs add ranks and row numbers to theirs


def check_seed(name: str, value: int) -> None:
    """ValueError unless ``value`` is a seed every generator of the toolkit accepts (numpy's
    SeedSequence refuses negative ones only deep inside a run, with a message naming no option)."""
    if not 0 <= value < SEED_LIMIT:
        raise ValueError(f"{name} must be in [0, 2^63), got {value}")


def path_options(cls: type) -> list[str]:
    """Flat names of the options of ``cls`` that hold a file or folder path (unit "path")."""
    return [name for name, _, _, f in flat_fields(cls) if f.metadata.get("unit") == "path"]


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
        return True
    except (TypeError, ValueError):
        return False


def _build(cls: type[T], values: dict[str, Any]) -> T:
    """An instance of ``cls`` from flat, already type-checked values (defaults elsewhere)."""
    kwargs: dict[str, Any] = {}
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if _is_options(hint):
            prefix = f.name + "_"
            kwargs[f.name] = _build(hint, {k[len(prefix):]: v for k, v in values.items() if k.startswith(prefix)})
        elif f.name in values:
            kwargs[f.name] = values[f.name]
    return cls(**kwargs)


def to_dict(options: Any) -> dict[str, Any]:
    """Flat JSON-ready dict of an option dataclass (nested option sets flattened with a prefix)."""
    out = {}
    for name, path, _, _ in flat_fields(type(options)):
        value = options
        for attribute in path:
            value = getattr(value, attribute)
        out[name] = value
    return out


def from_json(cls: type[T], data: Any, where: str, validate: bool = True) -> T:
    """A validated ``cls`` from a JSON object: unknown keys, wrong types and bad values are one
    line naming ``where``. Missing keys take their defaults."""
    if not isinstance(data, dict):
        raise ValueError(f"{where or 'options'} must hold a JSON object")
    fields = {name: hint for name, _, hint, _ in flat_fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(_at(where, f"unknown fields {', '.join(unknown)} (known: {', '.join(fields)})"))
    values = {}
    for key, value in data.items():
        try:
            values[key] = check_value(key, value, fields[key])
        except ValueError as err:
            raise ValueError(_at(where, str(err))) from None
    missing = [name for name, _, _, f in flat_fields(cls)
               if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and name not in values]
    if missing:
        raise ValueError(_at(where, f"missing {', '.join(missing)}"))
    instance = _build(cls, values)
    return _validated(instance, where) if validate else instance


def _validated(instance: T, where: str) -> T:
    check = getattr(instance, "validate", None)
    if check is not None:
        try:
            check()
        except ValueError as err:
            raise ValueError(_at(where, str(err))) from None
    return instance


def _at(where: str, message: str) -> str:
    return f"{where}: {message}" if where else message


def read_json_object(path: str | Path, what: str) -> dict:
    """The JSON object in ``path`` (ValueError naming ``what`` if missing, unreadable or not an object)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{what} {path} does not exist")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{what} {path} is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{what} {path} must hold a JSON object")
    return data


def load_json(cls: type[T], path: str | Path, what: str, validate: bool = True) -> T:
    """``from_json`` of the file ``path`` (types always checked; domains unless ``validate`` is off)."""
    return from_json(cls, read_json_object(path, what), f"{what} {path}", validate)


def save_json(options: Any, path: str | Path) -> None:
    Path(path).write_text(json.dumps(to_dict(options), indent=2) + "\n")


def _parse_number_or(words: tuple[str, ...]):
    def parse(text: str):
        if text in words:
            return text
        try:
            return float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number or {' / '.join(words)}, got {text!r}") from None
    return parse


def add_options(parser: argparse.ArgumentParser, cls: type, *, skip: tuple[str, ...] = ()) -> None:
    """One ``--flag`` per leaf option of ``cls`` (default None = not given), with its unit and
    default in the help text."""
    for name, _, hint, f in flat_fields(cls):
        if name in skip:
            continue
        unit = f.metadata.get("unit", "")
        unit_text = f" [{unit}]" if unit and unit not in ("path", "choice", "flag") else ""
        default = _default(f)
        default_text = "required" if default is dataclasses.MISSING or f.metadata.get("required") \
            else f"default: {default if default not in (None, '') else 'none'}"
        text = f.metadata.get("help", "")
        if "(default" in text and default_text != "required":  # the help says what the default means
            help_text = f"{text}{unit_text}".replace("%", "%%")
        else:
            help_text = f"{text}{unit_text} ({default_text})".replace("%", "%%")
        kwargs: dict[str, Any] = {"default": None, "help": help_text}
        union = _union_args(hint)
        plain = [a for a in union if a is not type(None)] if union else [hint]
        literal_words = tuple(w for a in plain if get_origin(a) is Literal for w in get_args(a))
        if get_origin(hint) is Literal:
            kwargs["choices"] = get_args(hint)
        elif hint is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif float in plain and literal_words:
            kwargs["type"], kwargs["metavar"] = _parse_number_or(literal_words), "X|" + "|".join(literal_words)
        elif get_origin(plain[0]) is list:
            item = get_args(plain[0])[0]
            kwargs.update(nargs="+", type=item, metavar="N" if item is int else "X" if item is float else "VALUE")
        elif plain[0] in (int, float):
            kwargs["type"], kwargs["metavar"] = plain[0], "N" if plain[0] is int else "X"
        else:
            kwargs["metavar"] = "PATH" if unit == "path" else "VALUE"
        parser.add_argument("--" + name.replace("_", "-"), **kwargs)


def given_options(cls: type, args: argparse.Namespace) -> dict[str, Any]:
    """The options of ``cls`` given on the command line (flat names), type-checked."""
    fields = {name: hint for name, _, hint, _ in flat_fields(cls)}
    return {name: check_value("--" + name.replace("_", "-"), getattr(args, name), fields[name])
            for name in fields if getattr(args, name, None) is not None}


def from_args(cls: type[T], args: argparse.Namespace, base: T | None = None) -> T:
    """Defaults < ``base`` < the options given on the command line; validated. Its messages name
    the flags a user typed (``--null-prob``) where ``validate`` names fields (``null_prob``, the
    JSON key): ``_as_flags``."""
    values = to_dict(base) if base is not None else {}
    values.update(given_options(cls, args))
    try:
        return from_json(cls, values, "")
    except ValueError as err:
        raise ValueError(_as_flags(cls, str(err))) from None


def _as_flags(cls: type, message: str) -> str:
    """``message`` with every field name of ``cls`` that holds an underscore written as its flag.
    One-word names are left alone: they read the same either way, and as ordinary words ("steps",
    "pool", "teacher") they may be prose."""
    names = sorted((name for name, *_ in flat_fields(cls) if "_" in name), key=len, reverse=True)
    if not names:
        return message
    pattern = re.compile(r"(?<![\w-])(" + "|".join(map(re.escape, names)) + r")(?!\w)")
    return pattern.sub(lambda m: "--" + m.group(1).replace("_", "-"), message)


def replace(options: T, **changes: Any) -> T:
    """A validated copy of ``options`` with flat-named fields changed."""
    return from_json(type(options), {**to_dict(options), **changes}, "")


class Options:
    """Base of the option dataclasses: JSON round trips through this module's helpers.

    A subclass names what it is in ``WHAT`` (used in messages) and checks its domains in
    ``validate`` (return self)."""

    WHAT = "options"

    def validate(self):
        return self

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    @classmethod
    def from_dict(cls: type[T], data: Any, where: str | None = None) -> T:
        return from_json(cls, data, where if where is not None else cls.WHAT)

    @classmethod
    def load(cls: type[T], path: str | Path) -> T:
        return load_json(cls, path, cls.WHAT)

    def save(self, path: str | Path) -> None:
        save_json(self, path)
