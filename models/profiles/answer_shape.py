"""What a JSON answer's schema leaves no choice about, so it need not be decoded token by token.

A profile answer is mostly fixed text: the keys, in the order the grammar writes them, the
punctuation around them, and the rest of a category or brand once its first letters rule out
the other candidates. Decoding those characters costs one `llama_decode` call a token although
the grammar allows one continuation only (on the 2-core dev machine ~20 ms a token, against ~5 ms
for a token evaluated in a batch, as prompt tokens are). `AnswerState` follows the answer one
character at a time and says which characters must come next; the batched engine appends their
tokens to the sequence and evaluates them together in its next decode call ("jump-forward"
decoding), and stops the request as soon as the answer is complete, without asking the model
for an end token.

What is forced, exactly as llama.cpp's grammar for the schema allows (llama-cpp-python's
converter, which the engine uses for the same schema):
- the object's braces, every key in the converter's order (the schema's property order), the
  colons and commas between properties, a string's opening quote, an array's `[` and the quote
  that opens each item, and `]` once an array holds `maxItems` items;
- inside an enum string, the characters every candidate still consistent with the text so far
  has in common, and the closing quote once only one candidate fits and it is complete.
Free: the content of a free string (a phrase), whether an array takes another item, the choice
between enum candidates. The grammar allows one optional space after every element; forced text
never writes it (the compact form of the prompt's examples), and a space the model writes
itself is accepted.

Only the shape the profiler asks for is followed: an object whose properties are all required,
no additional properties, each property a string (free, or an enum of plain strings) or an
array of such strings. `AnswerShape.from_schema` returns None for anything else, and the engine
then decodes every token itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

_PLAIN = frozenset('"\\')  # characters an enum value must not hold (JSON would escape them)


@dataclass(frozen=True)
class _Lit:
    text: str


@dataclass(frozen=True)
class _Str:
    choices: tuple[str, ...] | None  # None: free content


@dataclass(frozen=True)
class _Array:
    item: _Str
    max_items: int | None


def _string_part(schema: Any) -> _Str | None:
    if not isinstance(schema, dict):
        return None
    if set(schema) == {"enum"}:
        values = schema["enum"]
        if (isinstance(values, list) and values and all(isinstance(v, str) and v for v in values)
                and not any(_PLAIN & set(v) or any(ord(c) < 32 for c in v) for v in values)):
            return _Str(tuple(values))
        return None
    if schema.get("type") == "string" and set(schema) <= {"type", "pattern"}:
        return _Str(None)
    return None


class AnswerShape:
    """The fixed structure of answers to one schema (see the module doc)."""

    def __init__(self, parts: list[_Lit | _Str | _Array]) -> None:
        self.parts = parts

    @classmethod
    def from_schema(cls, schema: dict | str) -> AnswerShape | None:
        """The shape of `schema` (a dict, or the JSON text handed to the grammar converter,
        whose property order is the one the grammar writes), or None when the schema is not
        of the supported kind."""
        if isinstance(schema, str):
            schema = json.loads(schema)
        if not isinstance(schema, dict) or schema.get("type") != "object":
            return None
        props = schema.get("properties")
        if (not isinstance(props, dict) or not props
                or schema.get("additionalProperties", True) is not False
                or set(schema.get("required", [])) != set(props)):
            return None
        parts: list[_Lit | _Str | _Array] = [_Lit("{")]
        for i, (name, sub) in enumerate(props.items()):
            if _PLAIN & set(name) or any(ord(c) < 32 for c in name):
                return None
            if i:
                parts.append(_Lit(","))
            parts += [_Lit(json.dumps(name, ensure_ascii=False)), _Lit(":")]
            if isinstance(sub, dict) and sub.get("type") == "array":
                item = _string_part(sub.get("items"))
                if item is None or sub.get("minItems", 0) < 1 or not set(sub) <= {
                        "type", "items", "minItems", "maxItems", "uniqueItems"}:
                    return None  # an empty array would make the first quote a choice
                parts.append(_Array(item, sub.get("maxItems")))
            else:
                part = _string_part(sub)
                if part is None:
                    return None
                parts.append(part)
        parts.append(_Lit("}"))
        return cls(parts)

    def start(self) -> AnswerState:
        return AnswerState(self)


class ShapeMismatch(ValueError):
    """The text left the shape (it should not, under the grammar): stop following it."""


@dataclass
class AnswerState:
    """Where a partial answer stands in its shape; `feed` the text as it comes, `forced()`
    says what must follow."""

    shape: AnswerShape
    part: int = 0  # index into shape.parts
    offset: int = 0  # _Lit: characters matched
    phase: str = "open"  # _Str: open/body; _Array: open/item/body/after
    body: str = ""  # the string being written
    items: int = 0  # _Array: items closed
    space_ok: bool = False  # one optional space may come now

    @property
    def complete(self) -> bool:
        return self.part >= len(self.shape.parts)

    def copy(self) -> AnswerState:
        return AnswerState(self.shape, self.part, self.offset, self.phase, self.body,
                           self.items, self.space_ok)

    def _next_part(self) -> None:
        self.part += 1
        self.offset, self.phase, self.body, self.items = 0, "open", "", 0
        self.space_ok = True

    def feed(self, text: str) -> None:
        """Advance over `text`; raises ShapeMismatch when it does not fit the shape."""
        for ch in text:
            self._feed(ch)

    def _feed(self, ch: str) -> None:
        if self.complete:
            if ch == " " and self.space_ok:
                self.space_ok = False
                return
            raise ShapeMismatch(f"text after the end of the answer: {ch!r}")
        part = self.shape.parts[self.part]
        string_body = self.phase == "body"
        if ch == " " and self.space_ok and not string_body:
            self.space_ok = False
            return
        self.space_ok = False
        if isinstance(part, _Lit):
            if ch != part.text[self.offset]:
                raise ShapeMismatch(f"expected {part.text[self.offset]!r}, got {ch!r}")
            self.offset += 1
            if self.offset == len(part.text):
                self._next_part()
            return
        item = part.item if isinstance(part, _Array) else part
        if self.phase == "open":
            expected = "[" if isinstance(part, _Array) else '"'
            if ch != expected:
                raise ShapeMismatch(f"expected {expected!r}, got {ch!r}")
            self.phase = "item" if isinstance(part, _Array) else "body"
            self.space_ok = isinstance(part, _Array)
        elif self.phase == "item":
            if ch != '"':
                raise ShapeMismatch(f"expected '\"', got {ch!r}")
            self.phase, self.body = "body", ""
        elif self.phase == "body":
            if ch != '"':
                self.body += ch
                if item.choices is not None and not any(c.startswith(self.body)
                                                        for c in item.choices):
                    raise ShapeMismatch(f"{self.body!r} is no candidate")
                return
            if item.choices is not None and self.body not in item.choices:
                raise ShapeMismatch(f"{self.body!r} is no candidate")
            if isinstance(part, _Array):
                self.items += 1
                self.phase, self.space_ok = "after", True
            else:
                self._next_part()
        elif self.phase == "after":
            if ch == ",":
                if part.max_items is not None and self.items >= part.max_items:
                    raise ShapeMismatch("an item past maxItems")
                self.phase, self.space_ok = "item", True
            elif ch == "]":
                self._next_part()
            else:
                raise ShapeMismatch(f"expected ',' or ']', got {ch!r}")

    def _forced_char(self) -> str | None:
        """The one character that must come next (no optional space), or None."""
        if self.complete:
            return None
        part = self.shape.parts[self.part]
        if isinstance(part, _Lit):
            return part.text[self.offset]
        item = part.item if isinstance(part, _Array) else part
        if self.phase == "open":
            return "[" if isinstance(part, _Array) else '"'
        if self.phase == "item":
            return '"'
        if self.phase == "after":
            full = part.max_items is not None and self.items >= part.max_items
            return "]" if full else None
        if item.choices is None:
            return None  # a free string: the model writes it and closes it
        n = len(self.body)
        fits = [c for c in item.choices if c.startswith(self.body)]
        if self.body in fits:
            return '"' if len(fits) == 1 else None
        following = {c[n] for c in fits}
        return following.pop() if len(following) == 1 else None

    def forced(self, limit: int = 256) -> str:
        """The text that must follow, up to the next choice (at most `limit` characters);
        "" when the model has a choice now. Does not advance this state."""
        probe = self.copy()
        out: list[str] = []
        while len(out) < limit:
            ch = probe._forced_char()
            if ch is None:
                break
            probe._feed(ch)
            out.append(ch)
        return "".join(out)
