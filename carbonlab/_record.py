"""Plain record classes: what ``@dataclass`` gives the core, made without ``exec``.

``dataclasses`` compiles source text for every class it decorates (0.4-0.9 ms each, and importing
the module brings ``inspect``, ``ast`` and ``dis``): for the thirty records a first measured region
or a pytest session imports, that was a third of carbonlab's start-up. :func:`record` builds the
same ``__init__`` (fields in order, defaults, ``field(default_factory=...)``, ``__post_init__``),
``__repr__``, ``__eq__`` and, for frozen records, ``__hash__`` and read-only attributes, from the
class's annotations, with closures. ``fields()`` and ``replace()`` work as their ``dataclasses``
namesakes do on these records.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable
    from typing import Any, TypeVar

    T = TypeVar("T")


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


class FrozenInstanceError(AttributeError):
    """Assigning to a field of a frozen record."""


class Field:
    __slots__ = ("name", "default", "default_factory", "repr", "compare")

    def __init__(
        self,
        default: Any = MISSING,
        default_factory: Any = MISSING,
        repr: bool = True,  # noqa: A002 - dataclasses' name
        compare: bool = True,
    ) -> None:
        self.name = ""
        self.default = default
        self.default_factory = default_factory
        self.repr = repr
        self.compare = compare

    def __repr__(self) -> str:
        return f"Field({self.name!r})"


def field(
    *,
    default: Any = MISSING,
    default_factory: Callable[[], Any] | Any = MISSING,
    repr: bool = True,  # noqa: A002 - dataclasses' name
    compare: bool = True,
) -> Any:
    return Field(default, default_factory, repr, compare)


def fields(obj: Any) -> tuple[Field, ...]:
    """The fields of a record class or instance, in order."""
    try:
        return obj.__record_fields__
    except AttributeError:
        raise TypeError(f"{obj!r} is not a record") from None


def is_record(obj: Any) -> bool:
    return hasattr(obj, "__record_fields__")


def replace(obj: T, **changes: Any) -> T:
    """A new record with the given fields changed (``__init__`` and ``__post_init__`` run)."""
    kwargs = {f.name: getattr(obj, f.name) for f in fields(obj)}
    kwargs.update(changes)
    return obj.__class__(**kwargs)


_CLASSVAR = ("ClassVar", "typing.ClassVar")
_MUTABLE = (list, dict, set)


def _is_classvar(annotation: Any) -> bool:
    text = annotation if isinstance(annotation, str) else repr(annotation)
    return text.startswith(_CLASSVAR)


def _make_init(flds: tuple[Field, ...], post_init: bool) -> Callable[..., None]:
    # lists made into tuples, not generator expressions: a record class is made at every import
    names = tuple([f.name for f in flds])
    defaults = tuple([f.default for f in flds])
    factories = tuple([f.default_factory for f in flds])
    n = len(names)
    setter = object.__setattr__
    missing = MISSING

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        given = len(args)
        if given > n:
            raise TypeError(
                f"{type(self).__name__}() takes {n} positional arguments but {given} were given"
            )
        for i in range(n):
            name = names[i]
            if i < given:
                value = args[i]
                if kwargs and name in kwargs:
                    raise TypeError(f"{type(self).__name__}() got multiple values for {name!r}")
            elif name in kwargs:
                value = kwargs.pop(name)
            else:
                value = defaults[i]
                if value is missing:
                    factory = factories[i]
                    if factory is missing:
                        raise TypeError(
                            f"{type(self).__name__}() missing required argument: {name!r}"
                        )
                    value = factory()
            setter(self, name, value)
        if kwargs:
            raise TypeError(
                f"{type(self).__name__}() got an unexpected keyword argument {next(iter(kwargs))!r}"
            )
        if post_init:
            self.__post_init__()

    return __init__


def _frozen_setattr(self: Any, name: str, value: Any) -> None:
    if name in type(self).__record_names__:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")
    object.__setattr__(self, name, value)


def _frozen_delattr(self: Any, name: str) -> None:
    if name in type(self).__record_names__:
        raise FrozenInstanceError(f"cannot delete field {name!r}")
    object.__delattr__(self, name)


def record(cls: type[T] | None = None, *, frozen: bool = False) -> Any:
    """Decorate a class as ``@dataclass`` (or ``@dataclass(frozen=True)``) would."""

    def wrap(cls: type[T]) -> type[T]:
        # Runs for every record class at import (~30 on a pytest session's start): the class's
        # namespace is read once, and lists are made into tuples (not generator expressions).
        own = cls.__dict__
        by_name: dict[str, Field] = {}
        for base in reversed(cls.__mro__[1:]):
            for f in base.__dict__.get("__record_fields__", ()):
                by_name[f.name] = f
        for name, annotation in own.get("__annotations__", {}).items():
            if (
                annotation.startswith(_CLASSVAR)
                if annotation.__class__ is str
                else _is_classvar(annotation)
            ):
                continue
            value = own.get(name, MISSING)
            if isinstance(value, Field):
                f = value
                if f.default is MISSING:
                    delattr(cls, name)
                else:
                    setattr(cls, name, f.default)
            else:
                f = Field(value)
            if f.default.__class__ in _MUTABLE:
                raise ValueError(
                    f"mutable default {type(f.default).__name__} for field {name}: use "
                    "field(default_factory=...)"
                )
            f.name = name
            by_name[name] = f  # a field declared again keeps its base's place, as in dataclasses
        flds = tuple(by_name.values())
        cls.__record_fields__ = flds  # type: ignore[attr-defined]
        cls.__record_names__ = frozenset(by_name)  # type: ignore[attr-defined]
        shown = tuple([f.name for f in flds if f.repr])
        compared = tuple([f.name for f in flds if f.compare])
        if "__init__" not in own:
            cls.__init__ = _make_init(flds, hasattr(cls, "__post_init__"))  # type: ignore[misc]
        if "__repr__" not in own:

            def __repr__(self: Any) -> str:
                inner = ", ".join(f"{n}={getattr(self, n)!r}" for n in shown)
                return f"{type(self).__qualname__}({inner})"

            cls.__repr__ = __repr__  # type: ignore[assignment,method-assign]
        if "__eq__" not in own:

            def __eq__(self: Any, other: Any) -> Any:
                if other.__class__ is not self.__class__:
                    return NotImplemented
                mine = tuple([getattr(self, n) for n in compared])
                return mine == tuple([getattr(other, n) for n in compared])

            cls.__eq__ = __eq__  # type: ignore[assignment,method-assign]
        if frozen:
            cls.__setattr__ = _frozen_setattr  # type: ignore[assignment,method-assign]
            cls.__delattr__ = _frozen_delattr  # type: ignore[assignment,method-assign]
            if own.get("__hash__") is None:  # none, or None set by an __eq__ of the class

                def __hash__(self: Any) -> int:
                    return hash(tuple(getattr(self, n) for n in compared))

                cls.__hash__ = __hash__  # type: ignore[assignment,method-assign]
        elif "__hash__" not in own:
            cls.__hash__ = None  # type: ignore[assignment]  # as dataclass(eq=True): unhashable
        return cls

    return wrap if cls is None else wrap(cls)
