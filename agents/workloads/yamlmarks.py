"""Marked input: values that remember the line they came from, and checks that report
problems as :class:`InputError` naming file, line and field.

- :func:`load_yaml` loads a YAML file into plain Python values (dict, list, str, int, float,
  bool, None) where every mapping is a :class:`MarkedDict` (a dict that also knows the
  1-based line of itself and of each key) and every sequence a :class:`MarkedList` (a list
  that knows the line of itself and of each item). It uses PyYAML's ``compose`` so lines
  come from ``start_mark.line`` (0-based there, 1-based here).
- :func:`read_text` (``textfile``) reads a UTF-8 file, reporting unreadable files and bad bytes
  with a line.
- :class:`Where` plus the ``get_*`` checks validate values read from YAML, JSON or CSV (JSON
  Lines are parsed by ``native.parse_json``).

The checks know no units; callers state them in ``expected``.
"""

from __future__ import annotations

import math
import re
from typing import Any, Iterable

import yaml

from agora.agents.workloads.errors import InputError
from agora.agents.workloads.textfile import read_text


class MarkedDict(dict):
    """A dict loaded from YAML: ``line`` is where the mapping starts, ``key_lines[k]`` the
    line of key ``k`` (both 1-based)."""

    __slots__ = ("line", "key_lines")

    def __init__(self, line: int) -> None:
        super().__init__()
        self.line = line
        self.key_lines: dict[Any, int] = {}


class MarkedList(list):
    """A list loaded from YAML: ``line`` is where the sequence starts, ``item_lines[i]`` the
    line of item ``i`` (both 1-based)."""

    __slots__ = ("line", "item_lines")

    def __init__(self, line: int) -> None:
        super().__init__()
        self.line = line
        self.item_lines: list[int] = []


def load_yaml(path: str) -> Any:
    """Load one YAML document from ``path`` into marked plain values (see module doc)."""
    text = read_text(path, "a YAML file")
    expected = "a YAML document"
    loader = None
    try:
        loader = yaml.SafeLoader(text)  # checks for unprintable characters already
        node = loader.get_single_node()
        if node is None:
            raise InputError(path=path, line=None, field=None, problem="the file is empty",
                             expected=expected)
        size = _expanded_size(node, {}, set())
        if size > MAX_YAML_VALUES:
            raise InputError(path=path, line=None, field=None,
                             problem=f"its anchors and aliases expand to more than "
                                     f"{MAX_YAML_VALUES:,} values",
                             expected=f"at most {MAX_YAML_VALUES:,} values once expanded")
        return _build(loader, node, path, {})
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        what = " ".join(str(x) for x in (e.context, e.problem) if x) or "syntax error"
        raise InputError(path=path, line=mark.line + 1 if mark else None, field=None,
                         problem=f"not valid YAML: {what}", expected=expected) from None
    except yaml.YAMLError as e:
        # a reader error (a character YAML does not allow) says where as a character offset
        # on a line of its own: the line and column instead
        pos = getattr(e, "position", None)
        line = text.count("\n", 0, pos) + 1 if isinstance(pos, int) else None
        what = (str(e).splitlines() or ["syntax error"])[0]
        if isinstance(pos, int):
            what += f" (column {pos - text.rfind(chr(10), 0, pos)})"
        raise InputError(path=path, line=line, field=None, problem=f"not valid YAML: {what}",
                         expected=expected) from None
    except RecursionError:
        raise InputError(path=path, line=None, field=None, problem="nested too deeply",
                         expected=expected) from None
    finally:
        if loader is not None:
            loader.dispose()


MAX_YAML_VALUES = 5_000_000
"""values a YAML document may hold once its aliases are expanded (a 6 KB file of nested
aliases otherwise expands to tens of millions)"""


def _expanded_size(node: yaml.Node, sizes: dict[int, int], open_: set[int]) -> int:
    """How many values ``node`` holds with every alias expanded (an alias to a node being
    counted -- a recursive anchor -- counts once)."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in open_ or isinstance(node, yaml.ScalarNode):
        return 1
    open_.add(key)
    children = node.value if isinstance(node, yaml.SequenceNode) else \
        [x for pair in node.value for x in pair]
    total = 1
    for child in children:
        total += _expanded_size(child, sizes, open_)
        if total > MAX_YAML_VALUES:
            break
    open_.discard(key)
    sizes[key] = total
    return total


def _build(loader: yaml.SafeLoader, node: yaml.Node, path: str, memo: dict[int, Any]) -> Any:
    if id(node) in memo:  # an alias: reuse what was built (also guards recursive anchors)
        return memo[id(node)]
    line = node.start_mark.line + 1
    if isinstance(node, yaml.ScalarNode):
        _plain_number(node, path, line)
        try:
            return loader.construct_object(node, deep=True)
        except yaml.YAMLError:
            raise
        except Exception as e:  # e.g. a timestamp-looking value that is no date
            if isinstance(e, ValueError) and "digits" in str(e):   # Python's int limit
                raise InputError(path=path, line=line, field=None,
                                 problem=f"a number of {len(node.value):,} digits",
                                 expected="a number of at most 4,300 digits") from None
            shown = node.value if len(node.value) <= 60 else node.value[:57] + "..."
            raise InputError(path=path, line=line, field=None,
                             problem=f"cannot read value {shown!r} ({e})",
                             expected="a plain YAML value") from None
    if isinstance(node, yaml.SequenceNode):
        seq = MarkedList(line)
        memo[id(node)] = seq
        for item in node.value:
            seq.append(_build(loader, item, path, memo))
            seq.item_lines.append(item.start_mark.line + 1)
        return seq
    mapping = MarkedDict(line)
    memo[id(node)] = mapping
    own = sum(1 for k, _ in node.value if k.tag != MERGE_TAG)
    loader.flatten_mapping(node)  # YAML merge keys (<<): merged pairs first, then its own
    merged = len(node.value) - own
    explicit: set = set()
    for i, (key_node, value_node) in enumerate(node.value):
        key = _build(loader, key_node, path, memo)
        kline = key_node.start_mark.line + 1
        try:
            hash(key)
        except TypeError:
            raise InputError(path=path, line=kline, field=None,
                             problem="a mapping key is a list or mapping",
                             expected="a plain name as key") from None
        if i >= merged:                # written in this mapping: each key once
            if key in explicit:
                raise InputError(path=path, line=kline, field=str(key),
                                 problem=f"key {key!r} appears twice in one mapping "
                                         f"(first on line {mapping.key_lines[key]})",
                                 expected="each key once")
            explicit.add(key)
        # a merged key is overridden by the mapping's own (and an earlier merged mapping's
        # by a later one's, as PyYAML orders them): the later pair wins
        mapping[key] = _build(loader, value_node, path, memo)
        mapping.key_lines[key] = kline
    return mapping


MERGE_TAG = "tag:yaml.org,2002:merge"
PLAIN_INT = re.compile(r"[-+]?(?:0|[1-9][0-9_]*)")


def _plain_number(node: yaml.ScalarNode, path: str, line: int) -> None:
    """YAML 1.1 reads ``010`` as 8 (octal), ``1:30`` as 90 (base 60) and ``0b11`` / ``0x1f`` in
    base 2 / 16: a number in a file is written in decimal, or refused -- never misread."""
    if node.style is not None:            # quoted: a string, as written
        return
    text = node.value
    if node.tag == "tag:yaml.org,2002:int" and PLAIN_INT.fullmatch(text) is None:
        kind = ("base 60" if ":" in text else "binary" if "0b" in text.lower()
                else "hexadecimal" if "0x" in text.lower() else "octal")
        raise InputError(path=path, line=line, field=None,
                         problem=f"found {text} (YAML 1.1 reads it as a{'n' * (kind == 'octal')} "
                                 f"{kind} number)",
                         expected="a number written in decimal (without leading zeros), "
                                  "or quoted if it is text")
    if node.tag == "tag:yaml.org,2002:float" and ":" in text:
        raise InputError(path=path, line=line, field=None,
                         problem=f"found {text} (YAML 1.1 reads it as a base 60 number)",
                         expected="a number written in decimal, or quoted if it is text")


def shorten(text: str, most: int = 40) -> str:
    """``text`` as the user wrote it, cut to ``most`` characters (with '...') when longer."""
    return text if len(text) <= most else text[:most - 3] + "..."


def describe(v: Any) -> str:
    """A short human rendering of a found value."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        if math.isnan(v):
            return "NaN"
        if math.isinf(v):
            return "Infinity" if v > 0 else "-Infinity"
    if isinstance(v, dict):
        return "a mapping"
    if isinstance(v, (list, tuple)):
        return "a list"
    if isinstance(v, int) and v.bit_length() > 200:   # repr() refuses past 4,300 digits
        return f"a whole number of about {int(v.bit_length() * 0.30103) + 1:,} digits"
    s = repr(v)
    return s if len(s) <= 60 else s[:57] + "..."


class Where:
    """Where a value sits: file, 1-based line (or None) and dotted field path (or None).
    (A plain slotted class, not a frozen dataclass: readers make one per field.)"""

    __slots__ = ("path", "line", "field")

    def __init__(self, path: str, line: int | None, field: str | None = None) -> None:
        self.path = path
        self.line = line
        self.field = field

    def __repr__(self) -> str:
        return f"Where({self.path!r}, {self.line!r}, {self.field!r})"

    def error(self, problem: str, expected: str | None = None) -> InputError:
        return InputError(path=self.path, line=self.line, field=self.field, problem=problem,
                          expected=expected)

    def key(self, name: str, line: int | None = None) -> Where:
        f = f"{self.field}.{name}" if self.field else name
        return Where(self.path, self.line if line is None else line, f)

    def item(self, i: int, line: int | None = None) -> Where:
        return Where(self.path, self.line if line is None else line, f"{self.field or ''}[{i}]")


def at_key(where: Where, mapping: dict, key: Any) -> Where:
    """``where.key(key)`` with the key's own line when ``mapping`` came from YAML."""
    lines = getattr(mapping, "key_lines", None)
    return where.key(str(key), lines.get(key) if lines else None)


def at_item(where: Where, seq: list, i: int) -> Where:
    """``where.item(i)`` with the item's own line when ``seq`` came from YAML."""
    lines = getattr(seq, "item_lines", None)
    return where.item(i, lines[i] if lines and i < len(lines) else None)


def field_line(data: Any, field: str | None) -> int | None:
    """The line ``field`` (a path ``a.b[2]``, as ``Where`` writes it) was written on, where
    ``data`` came from ``load_yaml``: the deepest part of the path that has one (as ``at_key``
    and ``at_item`` give one step's), for checks made on plain values after the load."""
    line = getattr(data, "line", None)
    if not field:
        return line
    here = data
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", field):
        if part.startswith("[") and isinstance(here, list):
            i = int(part[1:-1])
            lines = getattr(here, "item_lines", ())
            if i >= len(here):
                break
            line, here = (lines[i] if i < len(lines) else line), here[i]
        elif isinstance(here, dict) and part in here:
            line = getattr(here, "key_lines", {}).get(part, line)
            here = here[part]
        else:
            break
    return line


def get_mapping(where: Where, v: Any, *, required: Iterable[str] = (),
                optional: Iterable[str] = ()) -> dict:
    """``v`` as a dict with only the allowed string keys and every required one."""
    required, optional = tuple(required), tuple(optional)
    allowed = required + optional
    if not isinstance(v, dict):
        raise where.error(f"found {describe(v)}",
                          f"a mapping with keys {', '.join(allowed)}")
    for k in v:
        if k not in allowed:
            raise at_key(where, v, k).error(
                f"unknown key {describe(k)}", f"only {', '.join(allowed)}")
    for k in required:
        if k not in v:
            raise where.key(k, getattr(v, "line", None)).error(
                f"required key {k!r} is missing",
                f"keys {', '.join(required)}" + (f" (optional: {', '.join(optional)})"
                                                 if optional else ""))
    return v


def get_list(where: Where, v: Any, *, nonempty: bool = False, what: str = "items") -> list:
    if not isinstance(v, list) or (nonempty and not v):
        found = "an empty list" if isinstance(v, list) else describe(v)
        raise where.error(f"found {found}", f"a {'non-empty ' if nonempty else ''}list of {what}")
    return v


def get_str(where: Where, v: Any, what: str = "a non-empty string") -> str:
    if not isinstance(v, str) or not v:
        raise where.error(f"found {describe(v)}", what)
    return v


def _bounds(ge: float | None, gt: float | None, le: float | None, lt: float | None) -> str:
    def n(x: float) -> str:
        if isinstance(x, int):              # whole-number bounds exactly (2^63 - 1, ...)
            return f"{x:,}"
        return f"{int(x):,}" if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"

    parts = [f">= {n(ge)}" if ge is not None else "", f"> {n(gt)}" if gt is not None else "",
             f"<= {n(le)}" if le is not None else "", f"< {n(lt)}" if lt is not None else ""]
    return " and ".join(p for p in parts if p)


def get_number(where: Where, v: Any, *, ge: float | None = None, gt: float | None = None,
               le: float | None = None, lt: float | None = None, unit: str = "") -> float:
    """A finite number (int or float, never bool or string) within the bounds, as float."""
    if type(v) is float or type(v) is int:  # fast path: the usual case
        try:
            x = float(v)
        except OverflowError:
            x = math.nan
        if (math.isfinite(x) and (ge is None or x >= ge) and (gt is None or x > gt)
                and (le is None or x <= le) and (lt is None or x < lt)):
            return x
    b = _bounds(ge, gt, le, lt)
    expected = f"a finite number{' ' + b if b else ''}{' (' + unit + ')' if unit else ''}"
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise where.error(f"found {describe(v)}{_exponent_hint(v)}", expected)
    try:
        x = float(v)
    except OverflowError:
        raise where.error(f"found {describe(v)}, too large", expected) from None
    if not math.isfinite(x):
        raise where.error(f"found {describe(x)}", expected)
    neg = " (negative)" if x < 0 and (ge == 0 or gt == 0) else ""
    raise where.error(f"found {describe(v)}{neg}", expected)


_RESOLVER, _NUMBER = yaml.resolver.Resolver(), re.compile(
    r"([-+]?)([0-9]*)(\.?)([0-9]*)(?:[eE]([-+]?)([0-9]+))?")


def _exponent_hint(v: Any) -> str:
    """Why an unquoted ``1e3``, ``1.0e3`` or ``-.5`` arrives as text (a YAML 1.1 float needs a
    digit before a '.', a '.' before an exponent and a signed exponent), and how to write it."""
    m = _NUMBER.fullmatch(v) if isinstance(v, str) else None
    if m is None or not (m[2] or m[4]) or \
            _RESOLVER.resolve(yaml.ScalarNode, v, (True, False)) != "tag:yaml.org,2002:str":
        return ""                  # not a number, or one YAML reads (so it was quoted)
    sign, whole, _, frac, esign, exp = m.groups()
    fixed = f"{sign}{whole or '0'}.{frac or '0'}" + (f"e{esign or '+'}{exp}" if exp else "")
    return f" (YAML 1.1 reads it as text, not a number: write {fixed})"


def get_int(where: Where, v: Any, *, ge: int | None = None, le: int | None = None,
            unit: str = "") -> int:
    """A whole number (an int, or a float with no fraction) within the bounds."""
    if type(v) is int and (ge is None or v >= ge) and (le is None or v <= le):
        return v
    b = _bounds(ge, None, le, None)
    expected = f"a whole number{' ' + b if b else ''}{' (' + unit + ')' if unit else ''}"
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise where.error(f"found {describe(v)}{_exponent_hint(v)}", expected)
    if isinstance(v, float):
        if not math.isfinite(v) or v != int(v):
            raise where.error(f"found {describe(v)}", expected)
        v = int(v)
    if (ge is not None and v < ge) or (le is not None and v > le):
        neg = " (negative)" if v < 0 and ge == 0 else ""
        raise where.error(f"found {describe(v)}{neg}", expected)
    return v
