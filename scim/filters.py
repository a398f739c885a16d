"""SCIM filters (RFC 7644 §3.4.2.2) read into Django `Q` objects, never into SQL text.

A small recursive-descent parser: `or` binds loosest, then `and`, then `not (...)`;
parentheses group; `attr[filter]` (a value path) filters a multi-valued attribute's
sub-attributes. Every comparison becomes an ORM lookup on a field named by the resource's
attribute map (`FilterAttribute`), with the client's value as the lookup's parameter, so
the database driver quotes it. Attribute names and operators are case-insensitive.

Refused with `invalidFilter` (400), saying what and where: a syntax error, an attribute that
is not filterable, an operator its type does not have, a value of the wrong type, and a
filter longer than `MAX_FILTER_CHARS`, nested deeper than `MAX_DEPTH` or with more than
`MAX_COMPARISONS` comparisons.
"""

import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from django.db import models
from django.db.models import Q
from django.utils.dateparse import parse_datetime

from scim.errors import invalid_filter

MAX_FILTER_CHARS = 2048
MAX_DEPTH = 16
MAX_COMPARISONS = 64

Kind = Literal["string", "boolean", "datetime", "id"]


@dataclass(frozen=True)
class FilterAttribute:
    """Where a filterable attribute lives: an ORM lookup path from the resource's model."""

    field: str
    kind: Kind = "string"
    case_exact: bool = False
    # A path through a multi-valued relation: matched by a subquery, so no row is repeated.
    through_relation: bool = False


_TOKEN = re.compile(
    r"""\s*(?:
      (?P<open>\() | (?P<close>\)) | (?P<open_bracket>\[) | (?P<close_bracket>\]) |
      (?P<string>"(?:[^"\\]|\\.)*") |
      (?P<word>[A-Za-z0-9_:.$+\-]+)
    )""",
    re.VERBOSE,
)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")
_OPERATORS = {"eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le", "pr"}
_KEYWORDS = _OPERATORS | {"and", "or", "not"}
_TEXT_LOOKUPS = {"eq": "exact", "co": "contains", "sw": "startswith", "ew": "endswith"}
_ORDER_LOOKUPS = {"gt": "gt", "ge": "gte", "lt": "lt", "le": "lte"}
_CORE_SCHEMAS = (
    "urn:ietf:params:scim:schemas:core:2.0:user:",
    "urn:ietf:params:scim:schemas:core:2.0:group:",
)


@dataclass(frozen=True)
class _Token:
    kind: str  # open, close, open_bracket, close_bracket, string, word
    text: str
    position: int


def _tokens(text: str) -> list[_Token]:
    tokens, position = [], 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if match is None or match.lastgroup is None:
            start = len(text[position:]) - len(text[position:].lstrip()) + position
            raise invalid_filter(
                f"Unexpected character {text[start]!r} at position {start + 1} of the filter."
            )
        tokens.append(_Token(match.lastgroup, match.group(match.lastgroup), match.start(match.lastgroup)))
        position = match.end()
    return tokens


class _Parser:
    def __init__(
        self, tokens: list[_Token], attributes: Mapping[str, FilterAttribute], model: type[models.Model]
    ):
        self.tokens, self.attributes, self.model = tokens, attributes, model
        self.index, self.depth, self.comparisons = 0, 0, 0
        self.prefix = ""  # inside `attr[...]`: "attr."

    def _peek(self) -> _Token | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def _next(self, what: str) -> _Token:
        token = self._peek()
        if token is None:
            raise invalid_filter(f"The filter ends where {what} was expected.")
        self.index += 1
        return token

    def _expect(self, kind: str, what: str) -> None:
        token = self._next(what)
        if token.kind != kind:
            raise invalid_filter(f"Expected {what} at position {token.position + 1}, found {token.text!r}.")

    def _at_word(self, *words: str) -> bool:
        token = self._peek()
        return token is not None and token.kind == "word" and token.text.lower() in words

    def parse(self) -> Q:
        if not self.tokens:
            raise invalid_filter("The filter is empty.")
        query = self._or()
        token = self._peek()
        if token is not None:
            raise invalid_filter(f"Unexpected {token.text!r} at position {token.position + 1} of the filter.")
        return query

    def _or(self) -> Q:
        query = self._and()
        while self._at_word("or"):
            self.index += 1
            query = query | self._and()
        return query

    def _and(self) -> Q:
        query = self._unary()
        while self._at_word("and"):
            self.index += 1
            query = query & self._unary()
        return query

    def _unary(self) -> Q:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise invalid_filter(f"The filter is nested more than {MAX_DEPTH} levels deep.")
        try:
            if self._at_word("not"):
                self.index += 1
                self._expect("open", "'(' after 'not'")
                query = self._or()
                self._expect("close", "')'")
                return ~query
            token = self._peek()
            if token is not None and token.kind == "open":
                self.index += 1
                query = self._or()
                self._expect("close", "')'")
                return query
            return self._comparison()
        finally:
            self.depth -= 1

    def _comparison(self) -> Q:
        token = self._next("an attribute")
        if token.kind != "word" or token.text.lower() in _KEYWORDS:
            raise invalid_filter(
                f"Expected an attribute at position {token.position + 1}, found {token.text!r}."
            )
        name = attribute_name(token.text)
        following = self._peek()
        if following is not None and following.kind == "open_bracket":
            return self._value_path(name, following)
        path = self.prefix + name
        attribute = self.attributes.get(path)
        if attribute is None:
            filterable = ", ".join(sorted(self.attributes))
            raise invalid_filter(f"{path!r} cannot be filtered on; these can: {filterable}.")
        operator_token = self._next("an operator")
        operator = operator_token.text.lower()
        if operator_token.kind != "word" or operator not in _OPERATORS:
            raise invalid_filter(
                f"Expected an operator (eq, ne, co, sw, ew, gt, ge, lt, le, pr) after {path!r}, "
                f"found {operator_token.text!r}."
            )
        self.comparisons += 1
        if self.comparisons > MAX_COMPARISONS:
            raise invalid_filter(f"The filter has more than {MAX_COMPARISONS} comparisons.")
        if operator == "pr":
            return self._wrapped(attribute, _present(attribute))
        value = _value(self._next("a value"))
        positive = _compare(path, attribute, "eq" if operator == "ne" else operator, value)
        query = self._wrapped(attribute, positive)
        return ~query if operator == "ne" else query

    def _value_path(self, name: str, bracket: _Token) -> Q:
        if self.prefix:
            raise invalid_filter(f"A value filter cannot be nested (position {bracket.position + 1}).")
        self.index += 1
        self.prefix = name + "."
        try:
            query = self._or()
        finally:
            self.prefix = ""
        self._expect("close_bracket", "']'")
        return query

    def _wrapped(self, attribute: FilterAttribute, query: Q) -> Q:
        if not attribute.through_relation:
            return query
        return Q(pk__in=self.model._default_manager.filter(query).values("pk"))


def attribute_name(text: str) -> str:
    name = text.lower()
    for schema in _CORE_SCHEMAS:
        if name.startswith(schema):
            return name[len(schema) :]
    return name


def _value(token: _Token) -> Any:
    if token.kind == "string":
        try:
            return json.loads(token.text)
        except ValueError:
            raise invalid_filter(f"The string at position {token.position + 1} is not valid.") from None
    if token.kind == "word":
        word = token.text.lower()
        if word in ("true", "false"):
            return word == "true"
        if word == "null":
            raise invalid_filter("Compare with null is not supported; use 'pr' (present) or 'not (... pr)'.")
        if _NUMBER.fullmatch(token.text):
            return float(token.text) if any(c in token.text for c in ".eE") else int(token.text)
    raise invalid_filter(
        f"Expected a value (a quoted string, true or false) at position {token.position + 1}, "
        f"found {token.text!r}."
    )


def _always() -> Q:
    return Q(pk__isnull=False)


def _present(attribute: FilterAttribute) -> Q:
    if attribute.kind == "string":
        return ~Q(**{attribute.field: ""}) & Q(**{f"{attribute.field}__isnull": False})
    if attribute.kind == "boolean":
        return _always()
    return Q(**{f"{attribute.field}__isnull": False})


def _compare(path: str, attribute: FilterAttribute, operator: str, value: Any) -> Q:
    kind = attribute.kind
    if kind == "boolean":
        if operator != "eq" or not isinstance(value, bool):
            raise invalid_filter(f"{path!r} is true or false: compare it with eq or ne and true or false.")
        return Q(**{attribute.field: value})
    if not isinstance(value, str):
        raise invalid_filter(f"{path!r} takes a quoted string, not {json.dumps(value)}.")
    if kind == "datetime":
        if operator not in _ORDER_LOOKUPS and operator != "eq":
            raise invalid_filter(f"{path!r} is a date and time: compare it with eq, ne, gt, ge, lt or le.")
        moment = _datetime(path, value)
        return Q(**{f"{attribute.field}__{_ORDER_LOOKUPS.get(operator, 'exact')}": moment})
    if operator in _ORDER_LOOKUPS:
        raise invalid_filter(
            f"{path!r} cannot be compared with {operator}: gt, ge, lt and le are for meta.created "
            "and meta.lastModified."
        )
    if kind == "id":
        if operator != "eq":
            raise invalid_filter(f"{path!r} is an id: compare it with eq or ne.")
        try:
            return Q(**{attribute.field: uuid.UUID(value)})
        except ValueError:
            return Q(pk__in=[])  # no resource has an id that is not one
    lookup = _TEXT_LOOKUPS[operator]
    return Q(**{f"{attribute.field}__{lookup if attribute.case_exact else 'i' + lookup}": value})


def _datetime(path: str, value: str) -> datetime:
    moment = parse_datetime(value.replace("z", "Z").replace("Z", "+00:00"))
    if moment is None:
        raise invalid_filter(f"{value!r} is not a date and time for {path!r} (2024-05-01T12:00:00Z, say).")
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def filter_parse(text: str, *, attributes: Mapping[str, FilterAttribute], model: type[models.Model]) -> Q:
    """The `Q` for SCIM filter `text` on `model`, whose attributes are `attributes` (keys in
    lower case, dotted for sub-attributes). Raises ScimError (invalidFilter) as said above."""
    if len(text) > MAX_FILTER_CHARS:
        raise invalid_filter(f"The filter is longer than {MAX_FILTER_CHARS} characters.")
    return _Parser(_tokens(text), attributes, model).parse()
