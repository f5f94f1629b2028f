"""Limits on one render: time, output, loop steps, and the size of what a template makes.

Templates may be edited by anyone in the Notion workspace, so a template is untrusted
code. Jinja's sandbox keeps it away from Python's internals but not from running forever
or filling memory (`{% for %}` in `{% for %}`, `'x' * 10**10`, `9**9**9`). The
`LimitedEnvironment` below stops those in process, through the sandbox's hooks: every
arithmetic operator (`call_binop`), every call (`call`) and filter, every loop step (each
`{% for %}` iterates through `loop_steps`, put in by rewriting the parsed template), every
string join (`~`), and the output as it streams. A render that goes past a limit raises
`LimitExceeded`, whose message names the limit.

What no hook sees (one C call that builds something huge from small parts, say) is left
to the process that renders: `services/rendering.py` renders in a child process with a
time-out and a memory cap.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sized
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, NoReturn

import jinja2
from jinja2 import nodes
from jinja2.nodes import EvalContext
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer


@dataclass(frozen=True)
class RenderLimits:
    # CPU time of one email (subject, preheader and body together): what a template costs,
    # whatever else the machine is doing (a wall-clock limit failed honest emails under load).
    seconds: float = 2.0
    output_chars: int = 1_000_000  # what one email writes; also the longest value it makes
    loop_steps: int = 100_000  # every `{% for %}` step of one email, nested loops included
    number_bits: int = 256  # the largest integer arithmetic may make (about 77 digits)
    source_chars: int = 200_000  # the longest subject, preheader or body a template may have


DEFAULT_LIMITS = RenderLimits()


class LimitExceeded(Exception):  # noqa: N818 - reads as what happened
    """A render went past one of its limits; the message names it. Deliberately not a
    ValueError, TypeError or LookupError: nothing in Jinja or a filter swallows it."""


class Budget:
    """What one render may still spend. Once a limit is hit every later hook raises
    again, so nothing that caught the first error can carry on."""

    def __init__(self, limits: RenderLimits, clock: Callable[[], float] = time.thread_time):
        self.limits = limits
        self._clock = clock
        self._deadline = clock() + limits.seconds
        self.steps = 0
        self.output = 0
        self.tripped = ""

    def fail(self, reason: str) -> NoReturn:
        self.tripped = self.tripped or reason
        raise LimitExceeded(self.tripped)

    def tick(self) -> None:
        if self.tripped:
            raise LimitExceeded(self.tripped)
        if self._clock() > self._deadline:
            self.fail(f"took more than {self.limits.seconds:g} s of CPU time (the time limit)")

    def step(self) -> None:
        self.steps += 1
        if self.steps > self.limits.loop_steps:
            self.fail(f"looped more than {self.limits.loop_steps:,} times (the loop limit)")
        if self.steps % 512 == 0:
            self.tick()

    def emit(self, chars: int) -> None:
        self.output += chars
        if self.output > self.limits.output_chars:
            self.fail(f"wrote more than {self.limits.output_chars:,} characters (the output limit)")
        self.tick()

    def allow_length(self, length: int) -> None:
        if length > self.limits.output_chars:
            self.fail(
                f"made a value longer than {self.limits.output_chars:,} characters (the size limit)"
            )

    def allow_value(self, value: Any) -> None:
        """A value a template made: not longer than the output may be, no huge number."""
        if isinstance(value, bool):
            return
        if isinstance(value, int):
            if value.bit_length() > self.limits.number_bits:
                self.fail(self._number_reason())
        elif isinstance(value, str | bytes | list | tuple | dict | set | frozenset):
            self.allow_length(len(value))

    def allow_bits(self, bits: int) -> None:
        if bits > self.limits.number_bits:
            self.fail(self._number_reason())

    def _number_reason(self) -> str:
        return f"made a number of more than {self.limits.number_bits} bits (the number limit)"


_ACTIVE: ContextVar[Budget | None] = ContextVar("xmas_render_budget", default=None)


def current_budget() -> Budget:
    """The budget of the render under way. Outside one (Jinja folding a constant while it
    compiles) a fresh one: the size checks still apply."""
    return _ACTIVE.get() or Budget(DEFAULT_LIMITS)


@contextmanager
def budget_for(limits: RenderLimits) -> Iterator[Budget]:
    budget = Budget(limits)
    token = _ACTIVE.set(budget)
    try:
        yield budget
    finally:
        _ACTIVE.reset(token)


def render_streamed(template: jinja2.Template, context: Mapping[str, Any]) -> str:
    """Render chunk by chunk, stopping as soon as the output passes its limit."""
    budget = current_budget()
    parts: list[str] = []
    for chunk in template.generate(context):
        budget.emit(len(chunk))
        parts.append(chunk)
    return "".join(parts)


# -- what an operation would make, known before it runs ------------------------------------

_SEQUENCE = (str, bytes, list, tuple)
_JINJA_STATE = (Context, EvalContext, jinja2.Environment)  # what Jinja passes a filter first
# Widths and precisions written in a format string: `%-99999d`, `%.9999f`, `{:>99999}`.
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\d+|\*)?(?:\.(\d+|\*))?")
_BRACE_SPEC = re.compile(r"\{[^{}]*:([^{}]*)\}")
_NESTED_FIELD = re.compile(r"\{[^{}]*\{")  # `{:{width}}`: a width from the arguments


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_format(budget: Budget, text: str, args: Iterable[Any], *, percent: bool) -> None:
    """A format string may not ask for a width or precision past the size limit."""
    if percent:
        specs = ["".join(found) for found in _PERCENT_SPEC.findall(text)]
        from_args = any("*" in spec for spec in specs)
    else:
        specs = _BRACE_SPEC.findall(text)
        from_args = _NESTED_FIELD.search(text) is not None
    for spec in specs:
        for number in re.findall(r"\d+", spec):
            budget.allow_length(int(number))
    if from_args:  # every number given may be a width
        for value in args:
            if _is_int(value):
                budget.allow_length(abs(value))


def check_binop(budget: Budget, operator: str, left: Any, right: Any) -> None:
    ints = _is_int(left) and _is_int(right)
    if operator == "**" and ints and right > 0 and abs(left) > 1:
        budget.allow_bits(left.bit_length() * right)
    elif operator == "*" and ints:
        budget.allow_bits(left.bit_length() + right.bit_length())
    elif operator == "*" and isinstance(left, _SEQUENCE) and _is_int(right):
        budget.allow_length(len(left) * max(right, 0))
    elif operator == "*" and isinstance(right, _SEQUENCE) and _is_int(left):
        budget.allow_length(len(right) * max(left, 0))
    elif operator == "+" and isinstance(left, _SEQUENCE) and isinstance(right, _SEQUENCE):
        budget.allow_length(len(left) + len(right))
    elif operator == "%" and isinstance(left, str):
        check_format(budget, left, right if isinstance(right, tuple) else (right,), percent=True)


def _length(value: Any) -> int:
    return len(value) if isinstance(value, str) else value if _is_int(value) else 0


def _replaced(text: Any, old: Any, new: Any) -> int:
    if not (isinstance(text, str) and isinstance(old, str) and isinstance(new, str)):
        return 0
    places = len(text) + 1 if old == "" else len(text) // len(old)
    return len(text) + places * len(new)


def _joined(items: Any, separator: Any) -> int:
    if not isinstance(items, Sized) or not isinstance(separator, str):
        return 0
    return len(items) * len(separator)


def _per_line(text: Any, added: Any) -> int:
    lines = text.count("\n") + 1 if isinstance(text, str) else 0
    return _length(text) + lines * _length(added)


def _wrapped(text: Any, wrapstring: Any) -> int:
    # At worst a break after every character.
    return _length(text) * (1 + _length(wrapstring or "\n"))


Args = tuple[Any, ...]


def _arg(args: Args, kwargs: Mapping[str, Any], index: int, name: str) -> Any:
    if name in kwargs:
        return kwargs[name]
    return args[index] if len(args) > index else None


# Filters whose result can be far larger than what they are given: the size they would
# make, from their arguments (`args[0]` is the value filtered).
_FILTER_SIZE: dict[str, Callable[[Args, Mapping[str, Any]], int]] = {
    "center": lambda a, k: _length(_arg(a, k, 1, "width")),
    "indent": lambda a, k: _per_line(a[0], _arg(a, k, 1, "width")),
    "wordwrap": lambda a, k: _wrapped(a[0], _arg(a, k, 4, "wrapstring")),
    "replace": lambda a, k: _replaced(a[0], _arg(a, k, 1, "old"), _arg(a, k, 2, "new")),
    "join": lambda a, k: _joined(a[0], _arg(a, k, 1, "d")),
    "batch": lambda a, k: _length(_arg(a, k, 1, "linecount")),
    "slice": lambda a, k: _length(_arg(a, k, 1, "slices")),
}
# Methods of a string a template may call that can make something far larger.
_METHOD_SIZE: dict[str, Callable[[str, Args, Mapping[str, Any]], int]] = {
    "center": lambda s, a, k: _length(_arg(a, k, 0, "width")),
    "ljust": lambda s, a, k: _length(_arg(a, k, 0, "width")),
    "rjust": lambda s, a, k: _length(_arg(a, k, 0, "width")),
    "zfill": lambda s, a, k: _length(_arg(a, k, 0, "width")),
    "expandtabs": lambda s, a, k: s.count("\t") * _length(_arg(a, k, 0, "tabsize") or 8),
    "replace": lambda s, a, k: _replaced(s, _arg(a, k, 0, "old"), _arg(a, k, 1, "new")),
    "join": lambda s, a, k: _joined(_arg(a, k, 0, "iterable"), s),
}


def _guarded_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    estimate = _FILTER_SIZE.get(name)

    @functools.wraps(func)  # keeps Jinja's pass_context / pass_environment marks
    def run(*args: Any, **kwargs: Any) -> Any:
        budget = current_budget()
        budget.tick()
        given = tuple(a for a in args if not isinstance(a, _JINJA_STATE))
        if estimate is not None and given:
            budget.allow_length(estimate(given, kwargs))
        if name == "format" and given and isinstance(given[0], str):
            check_format(budget, given[0], (*given[1:], *kwargs.values()), percent=True)
        result = func(*args, **kwargs)
        budget.allow_value(result)
        return result

    return run


class _Guards(NodeTransformer):
    """Every loop iterates through `loop_steps`; every `~` join is measured."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = _call_env("loop_steps", node.iter)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return _call_env("measured", node)


def _call_env(name: str, arg: nodes.Expr) -> nodes.Call:
    # An attribute of the environment, not a variable: a template cannot name it.
    call = nodes.Call(nodes.EnvironmentAttribute(name), [arg], [], None, None)
    call.set_lineno(arg.lineno or 1)
    return call


class LimitedEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox (immutable: a template cannot grow a list or a dict in place), with
    the limits of the active budget applied by every hook."""

    intercepted_binops = frozenset({"+", "-", "*", "/", "//", "%", "**"})

    def __init__(
        self,
        limits: RenderLimits,
        filters: Mapping[str, Callable[..., Any]] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.limits = limits
        self.filters.update(filters or {})
        self.filters = {name: _guarded_filter(name, f) for name, f in self.filters.items()}
        self.globals["range"] = self.budget_range
        self.globals.pop("lipsum", None)  # writes as much text as it is asked for

    def compile_limited(self, text: str) -> jinja2.Template:
        if len(text) > self.limits.source_chars:
            raise LimitExceeded(
                f"is longer than {self.limits.source_chars:,} characters (the source limit)"
            )
        tree = _Guards().visit(self.parse(text))
        return self.from_string(tree)

    # -- hooks ------------------------------------------------------------------------

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        budget = current_budget()
        budget.tick()
        check_binop(budget, operator, left, right)
        result = super().call_binop(context, operator, left, right)
        budget.allow_value(result)
        return result

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        budget = current_budget()
        budget.tick()
        owner = getattr(__obj, "__self__", None)
        name = getattr(__obj, "__name__", "")
        if isinstance(owner, str) and name in _METHOD_SIZE:
            budget.allow_length(_METHOD_SIZE[name](owner, args, kwargs))
        wrapped = getattr(getattr(__obj, "__wrapped__", None), "__self__", None)
        if name in ("format", "format_map") and isinstance(wrapped, str):
            given = [*args, *kwargs.values()]
            if name == "format_map" and args and isinstance(args[0], Mapping):
                given = list(args[0].values())
            check_format(budget, wrapped, given, percent=False)
        result = super().call(__context, __obj, *args, **kwargs)
        budget.allow_value(result)
        return result

    def budget_range(self, *args: int) -> range:
        numbers = range(*args)
        if len(numbers) > self.limits.loop_steps:
            current_budget().fail(
                f"asked for a range of more than {self.limits.loop_steps:,} numbers "
                "(the loop limit)"
            )
        return numbers

    def loop_steps(self, iterable: Iterable[Any]) -> Iterator[Any]:
        budget = current_budget()
        for item in iterable:
            budget.step()
            yield item

    def measured(self, value: Any) -> Any:
        current_budget().allow_value(value)
        return value
