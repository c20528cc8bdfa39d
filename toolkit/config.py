"""Config dataclasses and config keys: rebuild the dataclasses from the plain dicts stored in meta.json and
checkpoints, list the dotted keys a dataclass accepts, find the key a mistyped one most likely meant, and turn
jsonargparse's many-line report on `bilstm fit` arguments into one line (:func:`describe_parse_error`)."""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

from toolkit.errors import ConfigError

T = TypeVar("T")


def _dataclass_type(annotation: Any) -> type | None:
    """The dataclass inside ``X`` or ``X | None``, else None."""
    if dataclasses.is_dataclass(annotation):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            if dataclasses.is_dataclass(arg):
                return arg
    return None


def config_from_dict(cls: type[T], data: dict | T, where: str = "config") -> T:
    """Build ``cls`` from ``data``; unknown keys are an error naming them (no silent drops)."""
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping for {cls.__name__}, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {field.name for field in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        near = nearest_key(unknown[0], names)
        raise ConfigError(f"{where}: unknown option(s) {unknown} for {cls.__name__}; known: {sorted(names)}"
                          + (f"; did you mean {near!r}?" if near else ""))
    values = {}
    for name, value in data.items():
        nested = _dataclass_type(hints[name])
        if nested and isinstance(value, dict):
            values[name] = config_from_dict(nested, value, f"{where}.{name}")
        else:
            values[name] = value
    return cls(**values)


def config_to_dict(config: Any) -> dict:
    """A dataclass (nested ones included) as plain JSON-able dicts."""
    return dataclasses.asdict(config)


def dataclass_keys(annotation: Any, prefix: str) -> list[str]:
    """The dotted keys under ``prefix`` that the dataclass in ``annotation`` (``X`` or ``X | None``) accepts,
    nested dataclasses included (``network.encoder.hidden_size``); [] when ``annotation`` holds no dataclass."""
    cls = _dataclass_type(annotation)
    if cls is None:
        return []
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # an annotation that does not resolve: list the field names only
        hints = {}
    keys = []
    for field in dataclasses.fields(cls):
        key = f"{prefix}.{field.name}"
        keys += [key, *dataclass_keys(hints.get(field.name), key)]
    return keys


def nearest_key(key: str, known: Iterable[str]) -> str | None:
    """The known dotted key that a mistyped ``key`` most likely meant, or None when none is close.

    A key with the same parent whose last part is close wins (``trainer.max_epochz`` → ``trainer.max_epochs``);
    else a key close as a whole, for a typo in a parent (``trainr.accelerator`` → ``trainer.accelerator``).
    Comparing the last parts first keeps a long shared prefix from making any sibling look close.
    """
    known = sorted(set(known))
    parent, _, leaf = key.rpartition(".")
    siblings = {name.rpartition(".")[2]: name for name in known if name.rpartition(".")[0] == parent}
    close = difflib.get_close_matches(leaf, list(siblings), n=1, cutoff=0.6)
    if close:
        return siblings[close[0]]
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.8)
    return close[0] if close else None


# ---- naming a mistake on the `bilstm fit` command line or in its --config files ----------------------------

CLASS_KEYS = ("class_path", "init_args", "dict_kwargs")
"""What may follow a class-typed key (``model.class_path``); anything else is short for ``init_args.<it>``."""


@dataclasses.dataclass(frozen=True)
class Setting:
    """One key the user set: on the command line (``source`` empty) or in a --config file (its path)."""

    key: str
    value: Any
    source: str = ""

    def shown(self) -> str:
        """The key as the user wrote it: ``--trainer.max_epochs`` or ``trainer.max_epochs (in cfg.yaml)``."""
        return f"--{self.key}" if not self.source else f"{self.key} (in {self.source})"


def option_keys(parser: Any) -> set[str]:
    """The long options of a jsonargparse parser, without ``--`` and the ``+`` of appending forms."""
    return {option[2:].rstrip("+") for action in parser._actions for option in action.option_strings
            if option.startswith("--")}


def _abbreviates(name: str, options: set[str], parser: Any) -> list[str]:
    """The options ``--name`` is an abbreviation of, where the parser takes abbreviations (jsonargparse 4 does,
    with a deprecation warning; 5 will not)."""
    if name in options or not getattr(parser, "allow_abbrev", False):
        return []
    return [option for option in options if option.startswith(name)]


def _flatten(data: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if not isinstance(data, dict) or not data:
        return [(prefix, data)] if prefix else []
    return [item for key, value in data.items() for item in _flatten(value, f"{prefix}{key}" if not prefix
                                                                       else f"{prefix}.{key}")]


def _config_file(path: str) -> list[tuple[str, Any]]:
    import yaml

    try:
        return _flatten(yaml.safe_load(Path(path).read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return []  # jsonargparse reports an unreadable config itself


def given_settings(argv: list[str], parser: Any) -> list[Setting]:
    """Every key set by ``argv`` (after the subcommand) and by the --config/-c files it names, in order.

    Abbreviations the (jsonargparse) ``parser`` takes are written out, such as ``--conf=x.yaml``.
    """
    options = option_keys(parser)
    settings = []
    tokens = list(argv)
    position = 0
    while position < len(tokens):
        token = tokens[position]
        position += 1
        if token == "-c":
            name, value = "config", tokens[position] if position < len(tokens) else None
            position += 1
        elif token.startswith("--") and len(token) > 2:
            name, equals, value = token[2:].partition("=")
            name = name.rstrip("+")
            if not equals:
                value = None
                if position < len(tokens) and not tokens[position].startswith("--"):
                    value = tokens[position]
                    position += 1
            matches = _abbreviates(name, options, parser)
            if len(matches) == 1:
                name = matches[0]
        else:
            continue
        settings.append(Setting(name, value))
        if name == "config" and isinstance(value, str) and Path(value).is_file():
            settings += [Setting(key, item, value) for key, item in _config_file(value)]
    return settings


def _class_named(name: Any, allowed: Iterable[str]) -> type | None:
    """The class a dotted ``name`` names, imported only inside the ``allowed`` packages (else None)."""
    import importlib

    if not isinstance(name, str) or "." not in name or name.endswith((".yaml", ".yml", ".json")):
        return None
    if not any(name.startswith(f"{package}.") for package in allowed):
        return None
    module, _, attribute = name.rpartition(".")
    try:
        found = getattr(importlib.import_module(module), attribute)
    except Exception:  # jsonargparse names a class that does not import
        return None
    return found if isinstance(found, type) else None


def class_keys(cls: type, prefix: str) -> set[str]:
    """The keys jsonargparse gives ``cls``'s parameters under ``prefix`` (dataclass parameters expanded)."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(cls, prefix, fail_untyped=False)
    keys = {action.dest for action in parser._actions if action.dest.startswith(f"{prefix}.")}
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:  # unresolvable annotations: the parameters themselves are listed
        hints = {}
    for name, hint in hints.items():
        keys.update(dataclass_keys(hint, f"{prefix}.{name}"))
    return keys


@dataclasses.dataclass
class KnownKeys:
    """The keys a subcommand parser accepts, with the classes the user chose expanded into their parameters."""

    parser: Any
    options: set[str]
    keys: set[str]
    groups: set[str]
    """Keys whose accepted sub-keys are all listed (``trainer``, ``model.init_args.network``): unlike a plain
    option, a group takes no sub-key of its own choosing."""
    classes: set[str]
    """Class-typed keys expanded here (``model`` when ``model.class_path`` names a class that imports)."""

    @classmethod
    def of(cls, parser: Any, settings: list[Setting], allowed: Iterable[str]) -> KnownKeys:
        options = option_keys(parser)
        keys, classes = set(options), set()
        chosen = {setting.key.removesuffix(".class_path") if setting.key.endswith(".class_path") else setting.key:
                  setting.value for setting in settings
                  if setting.key.endswith(".class_path") or setting.key in options}
        for root, name in chosen.items():
            found = _class_named(name, allowed) if root in options else None
            if found is None:
                continue
            try:
                keys.update(class_keys(found, f"{root}.init_args"))
            except Exception:  # a class jsonargparse cannot describe stays unchecked
                continue
            keys.update(f"{root}.{part}" for part in CLASS_KEYS)
            classes.add(root)
        listed = [key for key in keys if not key.endswith(".help")]
        groups = {key.rsplit(".", depth)[0] for key in listed for depth in range(1, key.count(".") + 1)}
        return cls(parser, options, keys, groups | {f"{root}.init_args" for root in classes}, classes)

    def normalise(self, key: str) -> str:
        """``model.network.x`` → ``model.init_args.network.x`` for an expanded class key (jsonargparse's short form)."""
        for root in self.classes:
            if key.startswith(f"{root}.") and key[len(root) + 1:].split(".")[0] not in CLASS_KEYS:
                return f"{root}.init_args.{key[len(root) + 1:]}"
        return key

    def accepts(self, setting: Setting) -> bool:
        key = self.normalise(setting.key)
        if key in self.keys or key.endswith(".help") or key == "help":
            return True
        if not setting.source and _abbreviates(key, self.options, self.parser):
            return True  # ambiguous: argparse says so itself
        parents = [key.rsplit(".", depth)[0] for depth in range(1, key.count(".") + 1)]
        # a plain option under which anything may follow (a dict, a class not expanded here, dict_kwargs)
        return any(parent in self.keys and parent not in self.groups for parent in parents)

    def nearest(self, key: str) -> str | None:
        return nearest_key(self.normalise(key), [name for name in self.keys if not name.endswith(".help")
                                                 and name not in self.groups and name != "help"])


_STRUCTURE = re.compile(r"^(Parser key \"|Does not validate against any of the Union subtypes|Subtypes:|Errors:|"
                        r"Given value|Problem with given class_path|Expected a <class 'NoneType'>$)")


def _literal_choices(typehint: Any) -> list[str]:
    """The values of every ``Literal`` in ``typehint`` (through unions), as strings, without repeats."""
    if typing.get_origin(typehint) is typing.Literal:
        return [str(value) for value in typing.get_args(typehint)]
    choices: list[str] = []
    for arg in typing.get_args(typehint):
        choices += [choice for choice in _literal_choices(arg) if choice not in choices]
    return choices


def _plain_value(text: str) -> str:
    import ast

    try:
        return str(ast.literal_eval(text))
    except (ValueError, SyntaxError):
        return text


def _invalid_value(message: str, parser: Any, known: KnownKeys, settings: list[Setting]) -> str | None:
    """``--trainer.max_epochs: invalid value 'abc' (expected int)`` from jsonargparse's nested report."""
    keys = re.findall(r'Parser key "([^"]+)"', message)
    if not keys:
        return None
    key = keys[0]
    nested = re.findall(r"NestedArg\(key='([^']*)', val=(.*)\)\s*$", message, re.MULTILINE)
    if nested:
        inner, value = nested[-1][0], _plain_value(nested[-1][1])  # the outermost report is the last one
        key += f".{inner}" if inner.split(".")[0] in CLASS_KEYS else f".init_args.{inner}"
    else:
        values = re.findall(r"(?:Given|Got) value: (.*)$", message, re.MULTILINE)
        value = values[0] if values else "?"
        for inner in keys[1:]:
            key += f".init_args.{inner}" if key in known.classes else f".{inner}"
    bare = key.replace(".init_args", "")
    same = [setting for setting in settings if known.normalise(setting.key).replace(".init_args", "") == bare]
    # the setting that gave the rejected value (a config file's, when the command line overrides it later)
    same = [setting for setting in same if str(setting.value) == str(value)] or same
    shown = same[-1].shown() if same else key
    action = next((action for action in parser._actions if action.dest == key), None)
    choices = _literal_choices(getattr(action, "_typehint", None))  # jsonargparse's type of the option
    if choices:
        near = difflib.get_close_matches(str(value), choices, n=1)
        return (f"{shown}: invalid value {value!r}" + (f" (did you mean {near[0]!r}?)" if near else "")
                + f"; choose one of {', '.join(choices)}")
    reasons = []
    for line in message.splitlines():
        line = line.strip().removeprefix("- ").strip()
        if not line or _STRUCTURE.match(line):
            continue
        line = re.sub(r"^Expected a <class '([\w.]+)'>", r"expected \1", line.split(". Got value:")[0])
        line = re.sub(r"<class '([\w.]+)'>", r"\1", line).replace("Expected a ", "expected a ")
        if line not in reasons:
            reasons.append(line)
    reason = "; ".join(reasons)
    return f"{shown}: invalid value {value!r}" + (f" ({reason[:300]})" if reason else "")


def describe_parse_error(message: str, parser: Any, argv: list[str], allowed: Iterable[str]) -> str:
    """One line for jsonargparse's (many-line) report that ``argv`` does not parse.

    An unknown key, on the command line or in a --config file, is named with the nearest key the parser
    accepts; an invalid value with the option, the value and the reason (or the choices, for a ``Literal``).

    Args:
        message: the parser's error message.
        parser: the subcommand's jsonargparse parser (``fit``).
        argv: the arguments after the subcommand.
        allowed: packages whose classes may be imported to list a chosen class's parameters.
    """
    settings = given_settings(argv, parser)
    known = KnownKeys.of(parser, settings, allowed)
    unknown = [setting for setting in settings if not known.accepts(setting)]
    if unknown:
        first = unknown[0]
        near = known.nearest(first.key)
        what = f"unknown option --{first.key}" if not first.source else f"unknown key {first.key} in {first.source}"
        hint = (f"; did you mean {'--' if not first.source else ''}{near}?" if near
                else "; `--help` lists the options, `--print_config` every key")
        more = f" ({len(unknown) - 1} more unknown: {', '.join(s.key for s in unknown[1:4])})" if unknown[1:] else ""
        return what + hint + more
    described = _invalid_value(message, parser, known, settings)
    if described:
        return described
    return " ".join(line.strip() for line in message.splitlines() if line.strip())[:500]
