"""A1111's prompt editing: the text of a prompt that changes during sampling.

- `[from:to:when]` reads `from` until step `when`, then `to`; `[to:when]` adds `to` after it and `[from::when]`
  removes `from` after it. `when` with a decimal point is a fraction of the steps (`0.5`: half-way), without one a
  step count (`10`).
- `[a|b|c]` alternates its words from step to step (an empty word is allowed: `[fe|]male`).
- Both nest, and may hold or sit inside emphasis (`([red:blue:0.5]:1.2)`), which is left in the text for the
  prompt weighting to read (`prompt_weights`).

The prompt is read as A1111 (1.6 and later) reads it: only a prompt that parses as a whole is edited (a `|` outside
`[…|…]` or a lone trailing backslash leaves every bracket as it is written); brackets that form no construct stay
as text; `\\[` is a literal bracket. Where stray brackets or colons beside an edit make a prompt ambiguous, the
edit is read; A1111's parser (an Earley parser resolving the ambiguity its own way) sometimes reads such a prompt as
text instead. `edit_schedule` gives A1111's list of (last step, text) and `prompt_at_step`
the text a 0-based sampling step is conditioned on, A1111's reading of that list included: step 0 takes the text of
step 1, so `[a:b:10]` draws steps 0 to 10 with `a`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

PLAIN = re.compile(r"(?:[^\\\[\]():|]|\\.)+")
"""A1111's plain text: anything but brackets, colons and bars, a backslash escaping the next character."""
NUMBER = re.compile(r"\s*([+-]?(?:\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?))\s*\]")
"""The step of a `[…:when]`, then its closing bracket (Lark's SIGNED_NUMBER, whitespace around it allowed)."""
STRAY = "[]():"
"""Characters that stand as text where they form no construct (outside one only)."""


@dataclass(frozen=True)
class Scheduled:
    """`[before:after:when]`; `before` None for `[after:when]`."""

    before: tuple | None
    after: tuple
    when: str


@dataclass(frozen=True)
class Alternate:
    """`[a|b|…]`."""

    options: tuple


Node = str | Scheduled | Alternate


def _prompt(text: str, i: int) -> tuple[tuple, int]:
    """Plain text and constructs from `i` until a character that ends a prompt (`]`, `)`, `:`, `|`, or a bracket
    that opens no construct); (nodes, where it stopped)."""
    nodes: list[Node] = []
    while i < len(text):
        plain = PLAIN.match(text, i)
        if plain:
            nodes.append(plain[0])
            i = plain.end()
            continue
        construct = _construct(text, i)
        if construct is None:
            break
        node, i = construct
        nodes.extend(node)
    return tuple(nodes), i


def _construct(text: str, i: int) -> tuple[tuple, int] | None:
    """The scheduled, alternating or emphasized bracket opening at `i` as nodes (an emphasis keeps its brackets as
    text), and where it ends; None where the bracket opens none."""
    if text[i] == "(":  # (prompt) or (prompt:prompt)
        inner, j = _prompt(text, i + 1)
        if text[j : j + 1] == ":":
            second, k = _prompt(text, j + 1)
            if text[k : k + 1] == ")":
                return ("(", *inner, ":", *second, ")"), k + 1
        elif text[j : j + 1] == ")":
            return ("(", *inner, ")"), j + 1
        return None
    if text[i] != "[":
        return None
    first, j = _prompt(text, i + 1)
    end = text[j : j + 1]
    if end == "]":
        return ("[", *first, "]"), j + 1
    if end == "|":
        options = [first]
        while text[j : j + 1] == "|":
            option, j = _prompt(text, j + 1)
            options.append(option)
        return ((Alternate(tuple(options)),), j + 1) if text[j : j + 1] == "]" else None
    if end != ":":
        return None
    number = NUMBER.match(text, j + 1)
    if number:  # [after:when]
        return (Scheduled(None, first, number[1]),), number.end()
    second, k = _prompt(text, j + 1)
    number = NUMBER.match(text, k + 1) if text[k : k + 1] == ":" else None
    if number:  # [before:after:when]
        return (Scheduled(first, second, number[1]),), number.end()
    return None


@lru_cache(maxsize=256)
def parse(text: str) -> tuple[Node, ...] | None:
    """The prompt as text and edits; None where A1111's grammar cannot read it as a whole (then it is not edited)."""
    try:
        return _parse(text)
    except RecursionError:  # hundreds of unclosed brackets: not read as edits
        return None


def _parse(text: str) -> tuple[Node, ...] | None:
    nodes: list[Node] = []
    i = 0
    while i < len(text):
        part, i = _prompt(text, i)
        nodes.extend(part)
        if i < len(text):
            if text[i] not in STRAY:
                return None
            nodes.append(text[i])
            i += 1
    return tuple(nodes)


def has_edits(text: str) -> bool:
    """Whether the prompt holds a `[from:to:when]` or `[a|b]` that prompt editing would read."""
    nodes = parse(text)
    return nodes is not None and any(_edits(nodes))


def _edits(nodes: tuple) -> list[Scheduled | Alternate]:
    found: list[Scheduled | Alternate] = []
    for node in nodes:
        if isinstance(node, Scheduled):
            found += [node, *_edits(node.before or ()), *_edits(node.after)]
        elif isinstance(node, Alternate):
            found.append(node)
            for option in node.options:
                found += _edits(option)
    return found


def switch_step(when: str, steps: int) -> int:
    """The last step of `before` for a written `when`: a number with a decimal point is a fraction of the steps,
    one without is a step; at most `steps` (A1111 1.6's reading)."""
    value = float(when) * steps if "." in when else float(when)
    return int(max(-1.0, min(float(steps), value)))  # 1e400 is past the last step, not an overflow


def _text(nodes: tuple, step: int, steps: int) -> str:
    out = []
    for node in nodes:
        if isinstance(node, Scheduled):
            before = step <= switch_step(node.when, steps)
            out.append(_text((node.before or ()) if before else node.after, step, steps))
        elif isinstance(node, Alternate):
            out.append(_text(node.options[(step - 1) % len(node.options)], step, steps))
        else:
            out.append(node)
    return "".join(out)


def edit_schedule(text: str, steps: int) -> list[tuple[int, str]]:
    """[(last step, text)] for a sampling of `steps` steps counted from 1, as A1111's prompt schedules: a new entry
    at each switch step at least 1, at every step under an alternation, the last at `steps`."""
    nodes = parse(text)
    if nodes is None:
        return [(steps, text)]
    ends = {steps}
    for edit in _edits(nodes):
        if isinstance(edit, Alternate):
            ends.update(range(1, steps + 1))
        elif switch_step(edit.when, steps) >= 1:
            ends.add(switch_step(edit.when, steps))
    return [(end, _text(nodes, end, steps)) for end in sorted(ends)]


def prompt_at_step(text: str, step: int, steps: int) -> str:
    """The text the 0-based sampling `step` of `steps` is conditioned on: the first schedule entry whose last step is
    not before it (A1111's `reconstruct_cond_batch`)."""
    schedule = edit_schedule(text, steps)
    return next((t for end, t in schedule if step <= end), schedule[-1][1])
