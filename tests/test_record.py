"""carbonlab._record: the records that replace dataclasses on the start-up path behave like them."""

from __future__ import annotations

import subprocess
import sys
from typing import ClassVar

import pytest

from carbonlab._record import FrozenInstanceError, field, fields, is_record, record, replace


@record
class Point:
    x: float
    y: float = 0.0
    tags: list[str] = field(default_factory=list)
    secret: str | None = field(default=None, repr=False)
    seen: int = field(default=0, compare=False)


@record(frozen=True)
class Key:
    name: str
    size: int = 1


@record
class Base:
    a: int
    b: int = 2

    def __post_init__(self) -> None:
        self.total = self.a + self.b


@record
class Child(Base):
    c: int = 3


def test_init_takes_fields_in_order_with_defaults_and_fresh_factories():
    p = Point(1.0)
    assert (p.x, p.y, p.tags, p.secret, p.seen) == (1.0, 0.0, [], None, 0)
    q = Point(1.0, 2.0, secret="s")
    q.tags.append("t")
    assert p.tags == [] and q.tags == ["t"] and q.y == 2.0
    assert Point(x=3.0, y=4.0).x == 3.0


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: Point(), "missing required argument: 'x'"),
        (lambda: Point(1.0, nope=1), "unexpected keyword argument 'nope'"),
        (lambda: Point(1, 2, [], None, 0, 9), "takes 5 positional arguments but 6 were given"),
        (lambda: Point(1.0, x=2.0), "multiple values for 'x'"),
    ],
)
def test_bad_arguments_are_type_errors_as_with_dataclasses(call, message):
    with pytest.raises(TypeError, match=message):
        call()


def test_repr_eq_and_hash_follow_the_field_options():
    p = Point(1.0, secret="hunter2", seen=5)
    assert repr(p) == "Point(x=1.0, y=0.0, tags=[], seen=5)"  # repr=False hides the secret
    assert p == Point(1.0, secret="hunter2", seen=7)  # compare=False: seen is not compared
    assert p != Point(1.0, secret="other")
    assert p.__eq__(Key("x")) is NotImplemented
    nan = float("nan")
    assert Point(nan) == Point(nan)  # the same object compares equal, as in dataclasses' tuples
    with pytest.raises(TypeError):
        hash(p)  # mutable and comparable: unhashable, as dataclass(eq=True)


def test_frozen_records_are_hashable_and_read_only():
    k = Key("gpu", 2)
    assert {k: 1}[Key("gpu", 2)] == 1
    with pytest.raises(FrozenInstanceError):
        k.size = 3  # type: ignore[misc]
    with pytest.raises(AttributeError):  # FrozenInstanceError is an AttributeError
        del k.name  # type: ignore[misc]


def test_a_mutable_default_is_refused_and_a_field_declared_again_keeps_its_place():
    with pytest.raises(ValueError, match="mutable default list for field xs"):

        @record
        class Bad:
            xs: list = []  # noqa: RUF012 - the point of the test

    @record
    class Again(Base):
        a: int = 5
        d: int = 4

    assert [f.name for f in fields(Again)] == ["a", "b", "d"]  # "a" keeps its place
    assert (Again().a, Again(1).a) == (5, 1)


def test_a_frozen_record_with_its_own_eq_is_hashable():
    @record(frozen=True)
    class Named:
        name: str

        def __eq__(self, other: object) -> bool:
            return isinstance(other, Named) and other.name.lower() == self.name.lower()

    assert hash(Named("x")) == hash(Named("x"))


def test_inherited_fields_come_first_and_post_init_runs():
    c = Child(1)
    assert [f.name for f in fields(Child)] == ["a", "b", "c"]
    assert (c.a, c.b, c.c, c.total) == (1, 2, 3, 3)
    assert repr(c) == "Child(a=1, b=2, c=3)"


def test_fields_and_replace_work_as_the_dataclasses_functions():
    p = Point(1.0, tags=["a"])
    r = replace(p, y=5.0)
    assert r == Point(1.0, 5.0, ["a"]) and p.y == 0.0
    assert is_record(p) and is_record(Point) and not is_record(object())
    with pytest.raises(TypeError):
        fields(object())
    k = Key("a")
    assert replace(k, size=4) == Key("a", 4)


def test_settings_are_a_record_and_the_scrubber_still_cleans_records():
    from carbonlab.config import FIELD_NAMES, Settings
    from carbonlab.footprint.providers.scrub import scrub

    assert "zone" in FIELD_NAMES and "sources" not in FIELD_NAMES
    assert {f.name for f in fields(Settings)} == set(FIELD_NAMES) | {"sources", "problems"}
    p = Point(1.0, tags=["token abcdef123456 leaked"])
    clean = scrub(p, ("abcdef123456",))
    assert clean is not p and clean.tags == ["token *** leaked"]
    assert scrub(Point(2.0), ("abcdef123456",)) == Point(2.0)


def test_a_first_measured_region_imports_neither_dataclasses_nor_inspect():
    # dataclasses compiles source for every class and brings inspect, ast and dis: the start-up
    # cost this module removed. A fresh interpreter shows whether anything brought it back.
    code = (
        "import sys\nimport carbonlab\nwith carbonlab.track(): pass\n"
        "print(sorted(m for m in ('dataclasses', 'inspect', 'ast', 'dis', 'socket') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/"
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_class_variables_are_not_fields_whatever_the_annotation_is():
    """A ClassVar annotation, as text (``from __future__ import annotations``), as a typing object
    or as text of a str subclass, is left out of the fields, as dataclasses leaves it out."""
    import typing

    class Text(str):
        pass

    @record
    class R:
        a: int
        b: ClassVar[int] = 3  # text here (this module's annotations are postponed)
        c: str = "c"

    assert R.__annotations__["b"] == "ClassVar[int]"
    assert [f.name for f in fields(R)] == ["a", "c"] and R.b == 3

    ns = {"__annotations__": {"a": int, "k": typing.ClassVar[int], "t": Text("ClassVar[str]")}}
    S = record(type("S", (), {**ns, "k": 1, "t": "x"}))
    assert [f.name for f in fields(S)] == ["a"]
    assert S(1) == S(1) and repr(S(2)) == "S(a=2)"
