"""Declared parameter constraints, checked in one place before any work starts.

A function or class declares what each parameter takes; :func:`check_params` refuses a wrong value
with an :class:`InvalidParameterError` (both a ``ValueError`` and a ``TypeError``, as scikit-learn's
is) that names the caller, the parameter, the value and what is allowed, the way scikit-learn's
``_parameter_constraints`` do::

    TRAINER = {"max_epochs": Interval(int, 1, None), "lr": Interval(float, 0, None, closed="neither"),
               "optimizer": Options("adam", "adamw", "sgd"), "patience": [None, Interval(int, 1, None)]}
    check_params("Trainer", {"max_epochs": "3", "lr": 1e-3, ...}, TRAINER)
    # InvalidParameterError: Trainer: max_epochs='3' is not valid: it must be an integer >= 1

A constraint is an :class:`Interval`, :class:`Options`, a type (``bool``, ``str``, ``dict``,
``callable``), ``None`` (the value ``None``), or a list of these (any one may hold).
"""
from __future__ import annotations

import functools
import inspect
import numbers
import os
from dataclasses import dataclass


class InvalidParameterError(ValueError, TypeError):
    """A parameter's value is not one it takes (the message names the parameter and what it takes)."""


@dataclass(frozen=True)
class Interval:
    """A number of ``kind`` (``int`` or ``float``; an int is a float too, a bool is neither) in a range."""

    kind: type
    low: float | None = None
    high: float | None = None
    closed: str = "both"          # "both", "left", "right" or "neither"

    def holds(self, value) -> bool:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return False
        if self.kind is int and not isinstance(value, numbers.Integral):
            return False
        if value != value:        # NaN
            return False
        low_ok = self.low is None or (value >= self.low if self.closed in ("both", "left") else value > self.low)
        high_ok = self.high is None or (value <= self.high if self.closed in ("both", "right") else value < self.high)
        return low_ok and high_ok


    def describe(self) -> str:
        what = "an integer" if self.kind is int else "a number"
        low, high = _number(self.low), _number(self.high)
        if self.low is not None and self.high is not None:
            left = "[" if self.closed in ("both", "left") else "("
            right = "]" if self.closed in ("both", "right") else ")"
            return f"{what} in {left}{low}, {high}{right}"
        if self.low is not None:
            return f"{what} {'>=' if self.closed in ('both', 'left') else '>'} {low}"
        if self.high is not None:
            return f"{what} {'<=' if self.closed in ('both', 'right') else '<'} {high}"
        return what


def _number(x) -> str:
    return str(int(x)) if x is not None and float(x).is_integer() else f"{x}"


class Options:
    """One of a fixed set of values."""

    def __init__(self, *values):
        self.values = values

    def holds(self, value) -> bool:
        return any(value is v or (_kind(value) == _kind(v) and value == v) for v in self.values)

    def describe(self) -> str:
        return "one of " + ", ".join(repr(v) for v in self.values)


def _kind(value):
    """What an option is compared as: a NumPy string or bool equals the Python one, ``1`` is not ``True``."""
    if isinstance(value, bool) or type(value).__name__ in ("bool_", "bool"):
        return "bool"
    if isinstance(value, str):
        return "text"
    if isinstance(value, numbers.Number):
        return "number"
    return type(value)


_TYPE_NAMES = {bool: "True or False", str: "text", dict: "a dict", list: "a list", callable: "a callable"}


def _holds(constraint, value) -> bool:
    if constraint is None:
        return value is None
    if constraint is callable:
        return callable(value)
    if isinstance(constraint, type):
        return isinstance(value, constraint)
    return constraint.holds(value)


def _describe(constraint) -> str:
    if constraint is None:
        return "None"
    if constraint in _TYPE_NAMES:
        return _TYPE_NAMES[constraint]
    if isinstance(constraint, type):
        return "a path" if constraint.__name__ == "PathLike" else f"a {constraint.__name__}"
    return constraint.describe()


def check_params(where: str, values: dict, constraints: dict) -> None:
    """Check each ``values[name]`` against ``constraints[name]``; the first wrong one raises.

    The error reads ``"{where}: {name}={value!r} is not valid: it must be ..."``.
    """
    for name, constraint in constraints.items():
        if name not in values:
            continue
        value = values[name]
        options = constraint if isinstance(constraint, list) else [constraint]
        if any(_holds(c, value) for c in options):
            continue
        allowed = " or ".join(_describe(c) for c in options)
        raise InvalidParameterError(f"{where}: {name}={value!r} is not valid: it must be {allowed}")


#: Shared constraints: a seed NumPy and torch both take, a path, a path or None.
SEED = Interval(int, 0, 2 ** 32, closed="left")
PATH = [str, os.PathLike]
OPTIONAL_PATH = [None, str, os.PathLike]


#: Every function declared with :func:`validate_params`, by qualified name (the property tests walk it).
DECLARED: dict[str, object] = {}


def validate_params(constraints: dict):
    """Declare a function's parameter constraints; a call with a wrong value is refused before it runs.

    ``@validate_params({"n_top": Interval(int, 1, None), "method": Options("a", "b")})`` checks the arguments
    given (defaults are trusted) with :func:`check_params` under the function's name, and records the
    constraints on ``fn._parameter_constraints`` and in :data:`DECLARED`.
    """
    def decorate(fn):
        signature = inspect.signature(fn)
        unknown = set(constraints) - set(signature.parameters)
        if unknown:
            raise TypeError(f"validate_params: {fn.__qualname__} has no parameter(s) {sorted(unknown)}")

        @functools.wraps(fn)
        def checked(*args, **kwargs):
            try:
                bound = signature.bind(*args, **kwargs)
            except TypeError as err:
                raise InvalidParameterError(f"{fn.__name__}: {err}") from None
            check_params(fn.__name__, bound.arguments, constraints)
            return fn(*args, **kwargs)

        checked._parameter_constraints = constraints
        DECLARED[f"{fn.__module__}.{fn.__qualname__}"] = checked
        return checked

    return decorate
