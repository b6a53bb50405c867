"""One ``Registry`` class for every kind of pluggable unit.

A registry is a plain name -> object mapping with one lookup site (``get``). Names come from the
``@registry.register("name")`` decorator in flowkit, in a plugin, or in the user's own module, and
from installed packages through the entry-point group (``flowkit.paths`` etc.), loaded lazily on
the first lookup. A registry may hold its kind to a contract (``check(name, obj)``, run when a unit is
registered; e.g. methods must derive from ``flowkit.methods.Method`` and declare only known capabilities).
A third-party entry point that fails to import or to meet the contract warns once and is skipped; two
different objects under one name is an error that names both sources.
"""

from __future__ import annotations

import inspect
import math
import types
import typing
import warnings
from importlib.metadata import entry_points
from typing import Any, Callable, Generic, TypeVar

from flowkit.errors import ConfigError, ContractError, choices_hint

T = TypeVar("T")

# Names flowkit passes itself to units that ask for them; a recipe cannot set them.
INJECTABLE = frozenset({"path", "time_sampler", "data_shape", "coupling", "total_steps", "classes", "source_name"})


def summary(obj: Any) -> str:
    """The first paragraph of ``obj``'s own docstring on one line ('' without one; a class does not inherit
    its base's): what ``flowkit list`` shows."""
    doc = inspect.cleandoc(getattr(obj, "__doc__", None) or "")
    return " ".join(doc.split("\n\n")[0].split())


def _source(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}:{getattr(obj, '__qualname__', repr(obj))}"


class Registry(Generic[T]):
    """Registered ``kind`` units, by name; ``group`` is the entry-point group third parties use."""

    def __init__(self, kind: str, group: str, check: Callable[[str, Any], None] | None = None,
                 injectable: frozenset[str] = INJECTABLE, base: type | None = None) -> None:
        self.kind = kind
        self.group = group
        self.check = check
        self.base = base  # units are subclasses of it, or functions whose products are checked to be instances
        self.injectable = injectable
        self._items: dict[str, T] = {}
        self._entry_points_loaded = False

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            self.add(name, obj)
            return obj

        return decorator

    def add(self, name: str, obj: T) -> None:
        old = self._items.get(name)
        # The same class re-registered (a module imported twice under one name) is not a clash.
        if old is not None and old is not obj and _source(old) != _source(obj):
            raise ConfigError(
                f"{self.kind} '{name}' is registered twice: by {_source(old)} and by {_source(obj)}"
            )
        if self.base is not None and not (inspect.isfunction(obj) or inspect.isclass(obj) and issubclass(obj, self.base)):
            raise ContractError(f"{self.kind} '{name}': {obj!r} does not derive from "
                                f"{self.base.__module__}.{self.base.__qualname__} (nor is it a function returning one)")
        if self.check is not None:
            self.check(name, obj)
        self._items[name] = obj

    def get(self, name: str) -> T:
        self._load_entry_points()
        try:
            return self._items[name]
        except KeyError:
            raise ConfigError(f"unknown {self.kind} '{name}'; {choices_hint(name, self._items)}") from None

    def names(self) -> list[str]:
        self._load_entry_points()
        return sorted(self._items)

    def items(self) -> list[tuple[str, T]]:
        return [(name, self._items[name]) for name in self.names()]

    def __contains__(self, name: str) -> bool:
        self._load_entry_points()
        return name in self._items

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        for ep in entry_points(group=self.group):
            try:
                obj = ep.load()
            except Exception as exc:  # a broken plugin must never break flowkit itself
                warnings.warn(
                    f"flowkit: skipped {self.group} entry point '{ep.name}' ({ep.value}): "
                    f"{type(exc).__name__}: {exc}",
                    RuntimeWarning,
                    stacklevel=2,
                )
                continue
            if self._items.get(ep.name) is obj:
                continue
            try:
                self.add(ep.name, obj)
            except (ContractError, ConfigError) as exc:  # a broken unit, or a name taken already (the first kept)
                warnings.warn(f"flowkit: skipped {self.group} entry point '{ep.name}' ({ep.value}): {exc}",
                              RuntimeWarning, stacklevel=2)

    def options(self, name: str) -> list[str]:
        """The options of unit ``name`` a recipe may set (its signature's named parameters, injected ones aside)."""
        named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        return [k for k, p in inspect.signature(self.get(name)).parameters.items()
                if p.kind in named and k not in self.injectable]

    def parse(self, text: str, key: str) -> dict[str, Any]:
        """The spec of ``name`` or ``name:ARG`` (a setting such as ``data.target=folder:PATH``, named ``key`` in
        errors): ARG is the unit's first option, read as its annotation says (``space-to-depth:4`` is an int)."""
        name, colon, argument = text.partition(":")
        if not colon:
            return {"name": name}
        options = self.options(name)
        if not options:
            raise ConfigError(f"{key}='{text}': {self.kind} '{name}' takes no argument after ':'")
        hint = _type_hints(self.get(name)).get(options[0])
        for kind in (int, float):
            if hint is kind or (typing.get_origin(hint) in (typing.Union, types.UnionType) and kind in typing.get_args(hint)):
                try:
                    return {"name": name, options[0]: kind(argument)}
                except ValueError:
                    raise ConfigError(f"{key}='{text}': {argument!r} is not a {kind.__name__} ({self.kind} '{name}' "
                                      f"takes {options[0]} after ':')") from None
        return {"name": name, options[0]: argument}

    def build(self, spec: dict[str, Any], **injected: Any) -> Any:
        """Construct ``spec['name']`` with the spec's other keys as checked keyword arguments.

        ``injected`` are objects flowkit supplies (a path, a data shape); they are passed only to
        units whose signature asks for them. An option annotated with a class that has a classmethod
        ``from_option(text, owner, injected)`` is built by it from the option's text (``flowkit.teacher.Teacher``).
        A key the unit does not take is an error listing the ones it does (options are never swallowed), and a
        value of the wrong type is an error.
        """
        spec = dict(spec)
        name = spec.pop("name", None)
        if name is None:
            raise ConfigError(f"{self.kind}: no 'name' given; {choices_hint('', self.names())}")
        factory = self.get(name)
        params = inspect.signature(factory).parameters
        named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        user = {k for k, p in params.items() if p.kind in named and k not in self.injectable}
        for key in spec:
            if key not in user:
                raise ConfigError(
                    f"{self.kind} '{name}' has no option '{key}'; {choices_hint(key, user)}"
                )
        hints = _type_hints(factory)
        kwargs = {key: _check_type(f"{self.kind}.{key}", value, hints.get(key)) for key, value in spec.items()}
        for key, value in kwargs.items():  # inf and nan are refused where the default is not itself inf
            if isinstance(value, float) and not math.isfinite(value) and value != params[key].default:
                raise ConfigError(f"{self.kind} '{name}': {key}={value}: expected a finite number")
        kwargs.update({k: v for k, v in injected.items() if k in params})
        for key, hint in hints.items():  # options whose type builds itself from the text (flowkit.teacher.Teacher)
            value = kwargs.get(key, params[key].default if key in params else None)
            builder = _builder(hint)
            if key in user and isinstance(value, str) and builder is not None:
                kwargs[key] = builder.from_option(value, f"{self.kind} '{name}'", injected)
        try:
            built = factory(**kwargs)
        except (ValueError, TypeError) as exc:
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(f"{self.kind} '{name}': {exc}") from None
        if self.base is not None and not isinstance(built, self.base):
            raise ContractError(f"{self.kind} '{name}' built a {type(built).__name__}, not a {self.base.__qualname__}")
        return built


def _builder(hint: Any) -> Any:
    """The class in ``hint`` (itself, or one of a union's) that builds itself from text (``from_option``)."""
    for arg in (hint, *typing.get_args(hint)):
        if inspect.isclass(arg) and callable(getattr(arg, "from_option", None)):
            return arg
    return None


def _type_hints(factory: Any) -> dict[str, Any]:
    target = factory.__init__ if inspect.isclass(factory) else factory
    try:
        return typing.get_type_hints(target)
    except Exception:
        return {}


def _check_type(where: str, value: Any, hint: Any) -> Any:
    """Coerce ``value`` to a simple annotation (int, float, bool, str, Optional[...]) or refuse it."""
    if hint is None or hint is Any:
        return value
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check_type(where, value, arg)
            except ConfigError:
                continue
        raise ConfigError(f"{where}={value!r}: expected {_hint_name(hint)}")
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint in (int, bool, str) and type(value) is hint:
        return value
    if hint in (int, float, bool, str):
        raise ConfigError(f"{where}={value!r}: expected {hint.__name__}")
    return value


def _hint_name(hint: Any) -> str:
    return " or ".join("None" if a is type(None) else getattr(a, "__name__", str(a)) for a in typing.get_args(hint))
