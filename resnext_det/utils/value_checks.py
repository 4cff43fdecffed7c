"""Config values checked against what they mean, before a run spends anything on them.

A rule pairs a config key with what its value must be. :func:`check_values` refuses the
first value that breaks its rule in one line naming the key, the value, its type when
that is what is wrong, and what is expected:
``SOLVER.WEIGHT_DECAY=-1.0 is invalid; expected a number >= 0``. Without such checks a
negative weight decay trains, a crop size of 0 makes every image fail as if it were
corrupt, and a negative worker count ends in a traceback from PyTorch's loader.
"""

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Callable, Optional

from .errors import ConfigError

__all__ = [
    "Expect",
    "boolean",
    "check_values",
    "choice",
    "integer",
    "integers",
    "lookup",
    "number",
    "numbers",
    "optional",
    "require",
    "type_name",
]


@dataclass(frozen=True)
class Expect:
    """What a value must be.

    Attributes:
        text: what is expected, as the message says it ("an integer >= 0").
        has_type: whether the value is of a type the rule accepts at all.
        holds: whether a value of an accepted type is valid.
    """

    text: str
    has_type: Callable[[Any], bool]
    holds: Callable[[Any], bool]

    def problem(self, key: str, value: Any) -> Optional[str]:
        """The one-line message for ``value`` under ``key``, or None if it is valid."""
        if not self.has_type(value):
            return f"{key}={value!r} is {type_name(value)}; expected {self.text}"
        if not self.holds(value):
            return f"{key}={value!r} is invalid; expected {self.text}"
        return None


def type_name(value: Any) -> str:
    """'an integer', 'a string', 'null', ...: the type of ``value`` in a message's words."""
    names = {bool: "a boolean", int: "an integer", float: "a float", str: "a string"}
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "a list"
    return names.get(type(value), f"a {type(value).__name__}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    # A bool is an int to Python, never a number to a user; NaN and inf are refused.
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _bounds_text(low: Optional[float], high: Optional[float], low_open: bool, high_open: bool):
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f"{'<' if high_open else '<='} {high:g}"
    return ""


def _within(value, low, high, low_open: bool, high_open: bool) -> bool:
    if low is not None and (value < low or (low_open and value == low)):
        return False
    return not (high is not None and (value > high or (high_open and value == high)))


def integer(minimum: Optional[int] = None, maximum: Optional[int] = None) -> Expect:
    """An integer (not a bool) within the bounds given."""
    bounds = _bounds_text(minimum, maximum, False, False)
    return Expect(
        f"an integer {bounds}".strip(),
        _is_int,
        lambda v: _within(v, minimum, maximum, False, False),
    )


def number(
    minimum: Optional[float] = None,
    maximum: Optional[float] = None,
    *,
    above: bool = False,
    below: bool = False,
) -> Expect:
    """A finite int or float within the bounds; ``above``/``below`` exclude the bound itself."""
    bounds = _bounds_text(minimum, maximum, above, below)
    return Expect(
        f"a number {bounds}".strip(),
        _is_number,
        lambda v: _within(v, minimum, maximum, above, below),
    )


def _sequence_of(element: Expect, length: Optional[int], what: str) -> Expect:
    count = f"{length} " if length else "one or more "
    text = f"a list of {count}{what}"

    def has_type(value: Any) -> bool:
        return isinstance(value, (list, tuple)) and all(element.has_type(v) for v in value)

    def holds(value: Sequence) -> bool:
        right_length = len(value) == length if length else len(value) >= 1
        return right_length and all(element.holds(v) for v in value)

    return Expect(text, has_type, holds)


def integers(minimum: Optional[int] = None, length: Optional[int] = None) -> Expect:
    """A list of integers, each >= ``minimum``; of ``length`` items if given, else >= 1."""
    bounds = _bounds_text(minimum, None, False, False)
    return _sequence_of(integer(minimum), length, f"integers {bounds}".strip())


def numbers(
    minimum: Optional[float] = None,
    maximum: Optional[float] = None,
    *,
    above: bool = False,
    length: Optional[int] = None,
) -> Expect:
    """A list of finite numbers within the bounds; of ``length`` items if given, else >= 1."""
    bounds = _bounds_text(minimum, maximum, above, False)
    element = number(minimum, maximum, above=above)
    return _sequence_of(element, length, f"numbers {bounds}".strip())


def boolean() -> Expect:
    """True or False; not 1, 0 or 'yes', which a bool check in Python would mistake or miss."""
    return Expect("True or False", lambda v: isinstance(v, bool), lambda v: True)


def choice(*allowed: str) -> Expect:
    """One of the strings ``allowed``."""
    text = "one of " + ", ".join(repr(a) for a in allowed)
    return Expect(text, lambda v: isinstance(v, str), lambda v: v in allowed)


def optional(rule: Expect) -> Expect:
    """``rule``, or null (Detectron2's "not set", e.g. ``SOLVER.WEIGHT_DECAY_BIAS``)."""
    return Expect(
        f"{rule.text}, or null",
        lambda v: v is None or rule.has_type(v),
        lambda v: v is None or rule.holds(v),
    )


_MISSING = object()


def lookup(cfg: Any, key: str, default: Any = _MISSING) -> Any:
    """The value of a dotted key (``SOLVER.BASE_LR``) in a config node."""
    node = cfg
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            if default is _MISSING:
                raise KeyError(key)
            return default
        node = node[part]
    return node


def require(key: str, value: Any, rule: Expect) -> None:
    """Refuse ``value``, read from ``key``, if it breaks ``rule``.

    For a value already taken out of its config, e.g. a builder's argument.

    Raises:
        ConfigError: naming the key, the value and what is expected.
    """
    problem = rule.problem(key, value)
    if problem:
        raise ConfigError(problem)


def check_values(cfg: Any, rules: Iterable[tuple[str, Expect]]) -> None:
    """Refuse the first value of ``cfg`` that breaks its rule; keys ``cfg`` lacks are skipped
    (a config of another Detectron2 version may not have them).

    Raises:
        ConfigError: naming the key, the value and what is expected.
    """
    for key, rule in rules:
        value = lookup(cfg, key, _MISSING)
        if value is not _MISSING:
            require(key, value, rule)
