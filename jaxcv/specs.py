"""The one grammar of name specs: `name`, `name(key=value, ...)`, lists, pipelines, prefixes.

    spec      name | name(key=value, ...)        'pgd(steps=20, step_size=0.003)'
    list      spec, spec, ...                    'msp,knn(k=10),ash(variant="b")'
    pipeline  spec | spec | ...                  'crop(padding=4)|flip|coin(alpha=2.0)'
    prefixed  spec:REST                          'jpeg(quality=10):cuda(pb=0.3):cifar10'

Separators (',', '|', ':') count only at the top level: outside brackets and quotes, so values
may be tuples, lists, quoted strings with commas, or whole nested specs
('corrupt(kind=gaussian_noise,severity=5):cifar10,mnist' is two datasets). A value is the Python
literal it spells (ints, floats, bools, None, strings, tuples, lists, dicts; `ast.literal_eval`), else
the text as written ('kind=noise' is the string 'noise'). Arguments are named; a mistake raises
ConfigError naming the text, the character position and what was expected there.

Written by hand because the grammar (bare words, nested specs as values, top-level splitting)
is not Python's, so `ast.parse` alone cannot read it.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re
from typing import Any, Callable, Mapping, Optional

from jaxcv.errors import ConfigError

_OPENERS = {'(': ')', '[': ']', '{': '}'}
_CLOSERS = frozenset(_OPENERS.values())
_QUOTES = frozenset('\'"')
_NAME = re.compile(r'\s*([A-Za-z_]\w*)\s*')
_KEY = re.compile(r'[A-Za-z_]\w*')


@dataclasses.dataclass(frozen=True)
class Spec:
  """A parsed `name(key=value, ...)`: values typed (`kwargs`) and as written (`raw`)."""
  name: str
  kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
  raw: dict[str, str] = dataclasses.field(default_factory=dict)
  text: str = ''  # The spec as written, for messages.
  args: Optional[str] = None  # The text inside its parentheses; None without parentheses.


def _fail(what: str, text: str, pos: int, expected: str) -> ConfigError:
  found = repr(text[pos]) if pos < len(text) else 'the end'
  return ConfigError(f'{what} {text!r}, position {pos}: expected {expected}, found {found}')


def _top_level(text: str, what: str, start: int = 0, one_group: bool = False) -> list[bool]:
  """For every character from `start`: True when it is outside quotes and brackets (an opening
  bracket of depth 0 counts as outside, its closing one as inside). Raises on unbalanced text.
  With `one_group`, stops after the bracket that opens at `start` closes."""
  mask, stack, quote, i = [], [], None, start
  while i < len(text):
    char, outside = text[i], False
    if quote is not None:
      if char == '\\':
        mask.append(False)
        i += 1
      elif char == text[quote]:
        quote = None
    elif char in _QUOTES:
      outside, quote = not stack, i
    elif char in _OPENERS:
      outside = not stack
      stack.append(i)
    elif char in _CLOSERS:
      if not stack:
        raise _fail(what, text, i, f'a separator or the end before {char!r} (no bracket is open)')
      if _OPENERS[text[stack[-1]]] != char:
        raise _fail(what, text, i, f'{_OPENERS[text[stack[-1]]]!r} for the '
                    f'{text[stack[-1]]!r} at position {stack[-1]}')
      stack.pop()
    else:
      outside = not stack
    mask.append(outside)
    i += 1
    if one_group and not stack:
      return mask
  if quote is not None:
    raise _fail(what, text, len(text), f'a closing {text[quote]} for the quote at position {quote}')
  if stack:
    raise _fail(what, text, len(text),
                f'{_OPENERS[text[stack[-1]]]!r} for the {text[stack[-1]]!r} at position {stack[-1]}')
  return mask


def _split(text: str, sep: str, what: str) -> list[tuple[int, str]]:
  """(offset, part) at each top-level `sep`, parts not stripped."""
  mask = _top_level(text, what)
  parts, start = [], 0
  for i, char in enumerate(text):
    if char == sep and mask[i]:
      parts.append((start, text[start:i]))
      start = i + 1
  parts.append((start, text[start:]))
  return parts


def split(text: Optional[str], sep: str = ',', what: str = 'spec') -> list[str]:
  """The parts of `text` between top-level `sep`s, stripped, empty ones dropped:
  split('corrupt(kind=gaussian_noise,severity=5):cifar10, mnist')
  -> ['corrupt(...):cifar10', 'mnist']."""
  return [p.strip() for _, p in _split(text or '', sep, what) if p.strip()]


def parse_value(text: str) -> Any:
  """The Python literal `text` spells, else `text` itself (stripped)."""
  text = text.strip()
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
    return text


def parse_arguments(body: str, what: str = 'spec', text: Optional[str] = None,
                    offset: int = 0) -> tuple[dict[str, Any], dict[str, str]]:
  """'k=1, s="a,b"' -> ({'k': 1, 's': 'a,b'}, {'k': '1', 's': '"a,b"'}): values typed and as
  written. `text` and `offset` place `body` inside a longer spec for error positions."""
  text = body if text is None else text
  kwargs, raw = {}, {}
  items = _split(body, ',', what)
  for index, (start, item) in enumerate(items):
    pos = offset + start + len(item) - len(item.lstrip())
    if not item.strip():
      if index == len(items) - 1 and (index or not kwargs):
        continue  # 'f()' and a trailing comma.
      raise _fail(what, text, pos, 'key=value')
    key, sep, value = item.partition('=')
    if not sep or not _KEY.fullmatch(key.strip()):
      raise _fail(what, text, pos, 'key=value (arguments are passed by keyword)')
    key = key.strip()
    if key in kwargs:
      raise ConfigError(f'{what} {text!r}: argument {key!r} is given twice')
    if not value.strip():
      raise _fail(what, text, pos + len(item.strip()), f'a value for {key}')
    kwargs[key], raw[key] = parse_value(value), value.strip()
  return kwargs, raw


def _parse_head(text: str, what: str) -> tuple[Spec, int]:
  """The spec at the start of `text` and the position just after it."""
  match = _NAME.match(text)
  if not match:
    raise _fail(what, text, len(text) - len(text.lstrip()), 'a name')
  name, pos = match.group(1), match.end()
  if pos == len(text) or text[pos] != '(':
    return Spec(name, text=text[:pos].strip()), pos
  close = pos + len(_top_level(text, what, pos, one_group=True)) - 1
  kwargs, raw = parse_arguments(text[pos + 1:close], what, text, pos + 1)
  return Spec(name, kwargs, raw, text[:close + 1].strip(), text[pos + 1:close]), close + 1


def parse(text: str, what: str = 'spec') -> Spec:
  """'pgd(steps=20, step_size=0.003)' -> Spec('pgd', {'steps': 20, 'step_size': 0.003})."""
  spec, end = _parse_head(text, what)
  rest = len(text) - len(text[end:].lstrip())
  if rest < len(text):
    raise _fail(what, text, rest,
                'the end' if text[:end].rstrip().endswith(')') else "'(' or the end")
  return spec


def parse_list(text: Optional[str], what: str = 'spec', sep: str = ',') -> list[Spec]:
  """'msp,knn(k=10)' -> one Spec per top-level `sep`-separated part."""
  return [parse(part, what) for part in split(text, sep, what)]


def parse_pipeline(text: Optional[str], what: str = 'spec') -> list[Spec]:
  """'crop(padding=4)|flip' -> [Spec('crop', {'padding': 4}), Spec('flip')]."""
  return parse_list(text, what, '|')


def parse_prefixed(text: str, what: str = 'spec') -> Optional[tuple[Spec, str]]:
  """'jpeg(quality=10):cuda(pb=0.3):cifar10' -> (Spec('jpeg', {'quality': 10}),
  'cuda(pb=0.3):cifar10'); None when `text` does not start with `name[(...)]:`."""
  if not _NAME.match(text):
    return None
  spec, end = _parse_head(text, what)
  if end >= len(text) or text[end] != ':' or not text[end + 1:].strip():
    return None
  return spec, text[end + 1:]


def parameters(fn: Callable, skip: int = 0) -> dict[str, Any]:
  """{argument name: default} of `fn` after its first `skip` parameters (no default:
  inspect.Parameter.empty), for `bind`. An int default of a parameter annotated float becomes a
  float, so that `percentile: float = 90` accepts 65.5."""
  try:
    signature = inspect.signature(fn, eval_str=True)
  except (NameError, TypeError, SyntaxError):  # Annotations that do not evaluate here.
    signature = inspect.signature(fn)
  accepted = {}
  for p in list(signature.parameters.values())[skip:]:
    if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
      numeric = isinstance(p.default, int) and not isinstance(p.default, bool)
      accepted[p.name] = float(p.default) if numeric and p.annotation is float else p.default
  return accepted


def _typed(value: Any, raw: str, default: Any) -> Any:
  """`value` as the type of `default`, or raises TypeError. A str default keeps the text as
  written ('test=15' is '15'); an int fits a float."""
  if default is None or default is inspect.Parameter.empty:
    return value
  if isinstance(default, bool):
    if isinstance(value, bool):
      return value
  elif isinstance(default, int):
    if isinstance(value, int) and not isinstance(value, bool):
      return value
  elif isinstance(default, float):
    if isinstance(value, (int, float)) and not isinstance(value, bool):
      return float(value)
  elif isinstance(default, str):
    return value if isinstance(value, str) else raw
  elif isinstance(default, (tuple, list)):
    if isinstance(value, (tuple, list)):
      return type(default)(value)
  else:
    return value
  raise TypeError(type(default).__name__)


def bind(spec: Spec, accepted: Mapping[str, Any], what: str = 'spec') -> dict[str, Any]:
  """`spec`'s arguments checked against `accepted` ({name: default}): unknown names and values
  that do not fit their default's type raise ConfigError; returns them typed."""
  kwargs = {}
  for key, value in spec.kwargs.items():
    if key not in accepted:
      raise ConfigError(f'{what} {spec.name!r} has no argument {key!r}; it takes '
                        f'{", ".join(accepted) or "no arguments"}')
    raw = spec.raw.get(key, repr(value))
    try:
      kwargs[key] = _typed(value, raw, accepted[key])
    except TypeError as e:
      raise ConfigError(f'{what} {spec.text or spec.name!r}: {key}={raw} is not a {e}') from None
  return kwargs

