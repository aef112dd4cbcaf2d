"""Label and field selectors: parse, print, match.

This is k8s.io/apimachinery's ``labels`` and ``fields`` packages, metav1's
``LabelSelectorAsSelector`` and the scheduler's node-selector terms, rebuilt from their
documented and tested behaviour.

Rules of this file:

- Pure and synchronous: text or API dicts in, frozen values out. Which fields a resource
  supports is the caller's business (``check_fields``).
- Kubernetes' semantics, quirks included: ``a!=b`` and ``a notin (b)`` match an object
  without label ``a``; ``a in ()`` means "``a`` is the empty string"; a field selector
  reads a missing field as ``""``, so ``spec.nodeName=`` selects unscheduled pods.
- A label selector keeps its requirements sorted by key (stably), so ``str()`` is the
  canonical form ``labels.Selector.String()`` prints. A field selector keeps its terms
  in the order of their raw text, as ``fields.ParseSelector`` sorts them.
- Malformed input of any kind raises ``InvalidSelector`` carrying Kubernetes' message,
  and nothing else escapes the parsers.
- One deliberate difference: Go's label lexer treats a NUL byte as the end of the text;
  here it is an ordinary character, which key and value validation then reject.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence, Set

import attrs

from ._validation import is_dns1123_subdomain, is_qualified_name, is_valid_label_value


class InvalidSelector(ValueError):
    """The caller's selector (text or API object) is malformed: the API server answers
    400 Bad Request with this message."""


class Operator(enum.StrEnum):
    """How a requirement relates a key to its values; the values are
    k8s.io/apimachinery/pkg/selection's spellings."""

    IN = "in"
    NOT_IN = "notin"
    EQUALS = "="
    DOUBLE_EQUALS = "=="
    NOT_EQUALS = "!="
    EXISTS = "exists"
    DOES_NOT_EXIST = "!"
    GREATER_THAN = "gt"
    LESS_THAN = "lt"


# --- validation, with apimachinery's messages -------------------------------------------

_INT64 = re.compile(r"[+-]?[0-9]+")


def _parse_int64(text: str) -> int | None:
    """``strconv.ParseInt(text, 10, 64)``, or None where Go returns an error."""
    if not _INT64.fullmatch(text):
        return None
    number = int(text)
    return number if -(2**63) <= number < 2**63 else None


# field.Error's rendering: "<path>: Invalid value: <Go %q or %#v of the value>: <detail>".


def _go_value(value: object) -> str:
    if isinstance(value, list | tuple):
        return "[]string{" + ", ".join(_go_value(item) for item in value) + "}"
    return json.dumps(value, ensure_ascii=False)


def _invalid(path: str, value: object, detail: str) -> str:
    return f"{path}: Invalid value: {_go_value(value)}: {detail}"


def _not_supported(path: str, value: object, supported: Iterable[str]) -> str:
    quoted = ", ".join(_go_value(choice) for choice in supported)
    return f"{path}: Unsupported value: {_go_value(value)}: supported values: {quoted}"


def _aggregate(errors: Sequence[str]) -> str:
    """``errors.NewAggregate(...).Error()``: one message alone, several in brackets."""
    unique = list(dict.fromkeys(errors))
    return unique[0] if len(unique) == 1 else "[" + ", ".join(unique) + "]"


def _child(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


# --- label requirements and selectors -----------------------------------------------------

_NOT_EMPTY = "for 'in', 'notin' operators, values set can't be empty"
_ONE_VALUE = "exact-match compatibility requires one single value"
_NO_VALUES = "values set must be empty for exists and does not exist"
_ONE_NUMBER = "for 'Gt', 'Lt' operators, exactly one value is required"
_NOT_A_NUMBER = "for 'Gt', 'Lt' operators, the value must be an integer"

# How many values each operator takes, and what NewRequirement says otherwise.
_VALUE_COUNT_RULES: dict[Operator, tuple[Callable[[int], bool], str]] = {
    Operator.IN: (lambda count: count > 0, _NOT_EMPTY),
    Operator.NOT_IN: (lambda count: count > 0, _NOT_EMPTY),
    Operator.EQUALS: (lambda count: count == 1, _ONE_VALUE),
    Operator.DOUBLE_EQUALS: (lambda count: count == 1, _ONE_VALUE),
    Operator.NOT_EQUALS: (lambda count: count == 1, _ONE_VALUE),
    Operator.EXISTS: (lambda count: count == 0, _NO_VALUES),
    Operator.DOES_NOT_EXIST: (lambda count: count == 0, _NO_VALUES),
    Operator.GREATER_THAN: (lambda count: count == 1, _ONE_NUMBER),
    Operator.LESS_THAN: (lambda count: count == 1, _ONE_NUMBER),
}


def _requirement_errors(
    key: str, operator: Operator, values: Sequence[str], path: str = ""
) -> list[str]:
    """``labels.NewRequirement``'s checks, as field-error messages under ``path``."""
    errors = []
    key_errors = is_qualified_name(key)
    if key_errors:
        errors.append(_invalid(_child(path, "key"), key, "; ".join(key_errors)))
    values_path = _child(path, "values")
    count_ok, count_message = _VALUE_COUNT_RULES[operator]
    if not count_ok(len(values)):
        errors.append(_invalid(values_path, values, count_message))
    if operator in (Operator.GREATER_THAN, Operator.LESS_THAN):
        errors.extend(
            _invalid(f"{values_path}[{i}]", value, _NOT_A_NUMBER)
            for i, value in enumerate(values)
            if _parse_int64(value) is None
        )
    for i, value in enumerate(values):
        value_errors = is_valid_label_value(value)
        if value_errors:
            errors.append(_invalid(f"{values_path}[{i}][{key}]", value, "; ".join(value_errors)))
    return errors


@attrs.frozen
class Requirement:
    """One condition on one label. ``values`` are sorted and unique when parsed from
    text, and as written when taken from an API object. Parsed and API-built
    requirements have passed ``labels.NewRequirement``'s validation; ``from_set`` ones
    have not, as in Kubernetes."""

    key: str
    operator: Operator
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether ``labels`` satisfy this requirement. Negative operators (``!=``,
        ``notin``, ``!``) match when the key is absent; ``gt``/``lt`` need the label to
        be present and a 64-bit decimal integer."""
        present = self.key in labels
        match self.operator:
            case Operator.IN | Operator.EQUALS | Operator.DOUBLE_EQUALS:
                return present and labels[self.key] in self.values
            case Operator.NOT_IN | Operator.NOT_EQUALS:
                return not present or labels[self.key] not in self.values
            case Operator.EXISTS:
                return present
            case Operator.DOES_NOT_EXIST:
                return not present
        have = _parse_int64(labels[self.key]) if present else None
        bound = _parse_int64(self.values[0]) if len(self.values) == 1 else None
        if have is None or bound is None:
            return False
        return have > bound if self.operator is Operator.GREATER_THAN else have < bound

    def __str__(self) -> str:
        """``Requirement.String()``: ``k in (a,b)``, ``k!=v``, ``k>3``, ``!k``, values
        sorted."""
        if self.operator is Operator.EXISTS:
            return self.key
        if self.operator is Operator.DOES_NOT_EXIST:
            return f"!{self.key}"
        values = ",".join(sorted(self.values))
        if self.operator in (Operator.IN, Operator.NOT_IN):
            return f"{self.key} {self.operator} ({values})"
        symbol = {Operator.GREATER_THAN: ">", Operator.LESS_THAN: "<"}.get(
            self.operator, self.operator.value
        )
        return f"{self.key}{symbol}{values}"


def _by_key(requirements: Iterable[Requirement]) -> tuple[Requirement, ...]:
    return tuple(sorted(requirements, key=lambda requirement: requirement.key))


_LABEL_SELECTOR_OPERATORS = {
    "In": Operator.IN,
    "NotIn": Operator.NOT_IN,
    "Exists": Operator.EXISTS,
    "DoesNotExist": Operator.DOES_NOT_EXIST,
}
_NODE_SELECTOR_OPERATORS = {
    **_LABEL_SELECTOR_OPERATORS,
    "Gt": Operator.GREATER_THAN,
    "Lt": Operator.LESS_THAN,
}


@attrs.frozen
class Selector:
    """A label selector: the AND of its ``requirements``.

    ``Selector()`` selects everything. ``selects_nothing`` marks metav1's nil
    LabelSelector, which matches no object: it has no requirements, yet is not
    ``empty``, so an index must check it before reading ``requirements``.
    """

    # Sorted by key, stably: str() is then Kubernetes' canonical form.
    requirements: tuple[Requirement, ...] = attrs.field(default=(), converter=_by_key)
    selects_nothing: bool = attrs.field(default=False, kw_only=True)

    @selects_nothing.validator
    def _check_nothing(self, _attribute: object, value: bool) -> None:
        if value and self.requirements:
            raise ValueError("a selector that selects nothing has no requirements")

    @classmethod
    def parse(cls, text: str) -> Selector:
        """``labels.Parse``: the ``?labelSelector=`` / ``kubectl -l`` syntax. Raises
        InvalidSelector with Kubernetes' message; ``""`` selects everything."""
        return cls(_LabelParser(text).parse())

    @classmethod
    def from_set(cls, labels: Mapping[str, str]) -> Selector:
        """``labels.SelectorFromSet``: ``key=value`` for each entry, not validated (as
        for a Service's selector or a pod's nodeSelector); ``{}`` selects everything."""
        return cls(Requirement(key, Operator.EQUALS, (value,)) for key, value in labels.items())

    @classmethod
    def from_label_selector(cls, label_selector: Mapping | None) -> Selector:
        """``metav1.LabelSelectorAsSelector`` on the API struct ``{"matchLabels": {...},
        "matchExpressions": [{"key", "operator", "values"}]}``: None selects nothing,
        ``{}`` everything. Raises InvalidSelector on the first invalid entry (matchLabels
        in key order, then matchExpressions in order)."""
        if label_selector is None:
            return cls(selects_nothing=True)
        match_labels = label_selector.get("matchLabels") or {}
        expressions = label_selector.get("matchExpressions") or []
        requirements = []
        for key, value in sorted(match_labels.items()):
            requirements.append(_validated(key, Operator.EQUALS, (value,)))
        for expression in expressions:
            name = expression.get("operator", "")
            operator = _LABEL_SELECTOR_OPERATORS.get(name)
            if operator is None:
                raise InvalidSelector(f"{_go_value(name)} is not a valid pod selector operator")
            values = tuple(expression.get("values") or ())
            requirements.append(_validated(expression.get("key", ""), operator, values))
        return cls(requirements)

    @property
    def empty(self) -> bool:
        """True when the selector does not restrict anything (it matches every object)."""
        return not self.requirements and not self.selects_nothing

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether an object with these labels is selected."""
        if self.selects_nothing:
            return False
        return all(requirement.matches(labels) for requirement in self.requirements)

    def requires_exact_match(self, key: str) -> str | None:
        """The single value this selector demands for ``key`` (from ``key=v``,
        ``key==v`` or ``key in (v)``), else None. As in Kubernetes only the first
        requirement on ``key`` is looked at: ``a!=x,a=y`` gives None."""
        for requirement in self.requirements:
            if requirement.key == key:
                exact = requirement.operator in (
                    Operator.EQUALS,
                    Operator.DOUBLE_EQUALS,
                    Operator.IN,
                )
                if exact and len(requirement.values) == 1:
                    return requirement.values[0]
                return None
        return None

    def __str__(self) -> str:
        return ",".join(str(requirement) for requirement in self.requirements)


def _validated(key: str, operator: Operator, values: tuple[str, ...]) -> Requirement:
    errors = _requirement_errors(key, operator, values)
    if errors:
        raise InvalidSelector(_aggregate(errors))
    return Requirement(key, operator, values)


# --- the label selector parser (labels.Parse's lexer and recursive descent) ----------------


class _Tok(enum.Enum):
    END = enum.auto()
    IDENTIFIER = enum.auto()
    IN = enum.auto()
    NOT_IN = enum.auto()
    OPEN = enum.auto()
    CLOSE = enum.auto()
    COMMA = enum.auto()
    BANG = enum.auto()
    EQUALS = enum.auto()
    DOUBLE_EQUALS = enum.auto()
    NOT_EQUALS = enum.auto()
    GREATER = enum.auto()
    LESS = enum.auto()


_WHITESPACE = frozenset(" \t\r\n")
_SYMBOLS = {
    "(": _Tok.OPEN,
    ")": _Tok.CLOSE,
    ",": _Tok.COMMA,
    "!": _Tok.BANG,
    "=": _Tok.EQUALS,
    "==": _Tok.DOUBLE_EQUALS,
    "!=": _Tok.NOT_EQUALS,
    ">": _Tok.GREATER,
    "<": _Tok.LESS,
}
_SPECIAL = frozenset("".join(_SYMBOLS))
_KEYWORDS = {"in": _Tok.IN, "notin": _Tok.NOT_IN}
_BINARY_OPERATORS = {
    _Tok.IN: Operator.IN,
    _Tok.NOT_IN: Operator.NOT_IN,
    _Tok.EQUALS: Operator.EQUALS,
    _Tok.DOUBLE_EQUALS: Operator.DOUBLE_EQUALS,
    _Tok.NOT_EQUALS: Operator.NOT_EQUALS,
    _Tok.GREATER: Operator.GREATER_THAN,
    _Tok.LESS: Operator.LESS_THAN,
}
_EXPECTED_OPERATORS = ", ".join(operator.value for operator in _BINARY_OPERATORS.values())


def _lex(text: str) -> list[tuple[_Tok, str]]:
    """Tokens up to and including END. A run of special characters yields ``==`` or
    ``!=`` when it starts with one, else a single character; anything else up to the
    next special character or whitespace is one identifier (or keyword)."""
    tokens = []
    pos = 0
    while True:
        while pos < len(text) and text[pos] in _WHITESPACE:
            pos += 1
        if pos == len(text):
            tokens.append((_Tok.END, ""))
            return tokens
        if text[pos] in _SPECIAL:
            literal = text[pos : pos + 2] if text[pos : pos + 2] in ("==", "!=") else text[pos]
            tokens.append((_SYMBOLS[literal], literal))
            pos += len(literal)
            continue
        start = pos
        while pos < len(text) and text[pos] not in _SPECIAL and text[pos] not in _WHITESPACE:
            pos += 1
        word = text[start:pos]
        tokens.append((_KEYWORDS.get(word, _Tok.IDENTIFIER), word))


class _LabelParser:
    """``in`` and ``notin`` are keywords only where an operator is expected; everywhere
    else (keys, values) they are identifiers, so ``in in (in)`` is a valid selector."""

    def __init__(self, text: str) -> None:
        self._tokens = _lex(text)
        self._pos = 0

    def _peek(self) -> tuple[_Tok, str]:
        kind, literal = self._tokens[self._pos]
        return (_Tok.IDENTIFIER if kind in (_Tok.IN, _Tok.NOT_IN) else kind), literal

    def _take(self) -> tuple[_Tok, str]:
        token = self._peek()
        self._pos += 1
        return token

    def parse(self) -> list[Requirement]:
        requirements: list[Requirement] = []
        while True:
            kind, literal = self._peek()
            if kind is _Tok.END:
                return requirements
            if kind not in (_Tok.IDENTIFIER, _Tok.BANG):
                raise InvalidSelector(
                    f"found '{literal}', expected: !, identifier, or 'end of string'"
                )
            try:
                requirements.append(self._requirement())
            except InvalidSelector as error:
                raise InvalidSelector(f"unable to parse requirement: {error}") from None
            kind, literal = self._take()
            if kind is _Tok.END:
                return requirements
            if kind is not _Tok.COMMA:
                raise InvalidSelector(f"found '{literal}', expected: ',' or 'end of string'")
            kind, literal = self._peek()
            if kind not in (_Tok.IDENTIFIER, _Tok.BANG):
                raise InvalidSelector(f"found '{literal}', expected: identifier after ','")

    def _requirement(self) -> Requirement:
        key, unary = self._key_and_unary_operator()
        if unary is not None:
            return _validated(key, unary, ())
        # Read the raw token: this is the one place where in/notin are keywords.
        kind, literal = self._tokens[self._pos]
        self._pos += 1
        operator = _BINARY_OPERATORS.get(kind)
        if operator is None:
            raise InvalidSelector(f"found '{literal}', expected: {_EXPECTED_OPERATORS}")
        if operator in (Operator.IN, Operator.NOT_IN):
            values = self._value_set()
        else:
            values = {self._exact_value()}
        return _validated(key, operator, tuple(sorted(values)))

    def _key_and_unary_operator(self) -> tuple[str, Operator | None]:
        """The key, and EXISTS / DOES_NOT_EXIST when no binary operator follows. After
        ``!key`` something other than ``,`` or the end is left for the caller to
        reject, so ``!a=b`` fails."""
        kind, literal = self._take()
        bang = kind is _Tok.BANG
        if bang:
            kind, literal = self._take()
        if kind is not _Tok.IDENTIFIER:
            raise InvalidSelector(f"found '{literal}', expected: identifier")
        key_errors = is_qualified_name(literal)
        if key_errors:
            raise InvalidSelector(_invalid("<nil>", literal, "; ".join(key_errors)))
        if bang:
            return literal, Operator.DOES_NOT_EXIST
        if self._peek()[0] in (_Tok.END, _Tok.COMMA):
            return literal, Operator.EXISTS
        return literal, None

    def _value_set(self) -> set[str]:
        """``( v1, v2 )``. An empty slot counts as the empty value: ``()``, ``(,a)``,
        ``(a,)`` and ``(a,,b)`` all contain ``""``."""
        kind, literal = self._take()
        if kind is not _Tok.OPEN:
            raise InvalidSelector(f"found '{literal}' expected: '('")
        kind, literal = self._peek()
        if kind is _Tok.CLOSE:
            self._take()
            return {""}
        if kind not in (_Tok.IDENTIFIER, _Tok.COMMA):
            raise InvalidSelector(f"found '{literal}', expected: ',', ')' or identifier")
        values = self._value_list()
        self._take()  # the ")" that ended the list
        return values

    def _value_list(self) -> set[str]:
        values: set[str] = set()
        while True:
            kind, literal = self._take()
            if kind is _Tok.IDENTIFIER:
                values.add(literal)
                after, after_literal = self._peek()
                if after is _Tok.CLOSE:
                    return values
                if after is not _Tok.COMMA:
                    raise InvalidSelector(f"found '{after_literal}', expected: ',' or ')'")
            elif kind is _Tok.COMMA:
                after = self._peek()[0]
                if not values or after in (_Tok.CLOSE, _Tok.COMMA):
                    values.add("")
                if after is _Tok.CLOSE:
                    return values
            else:
                raise InvalidSelector(f"found '{literal}', expected: ',', or identifier")

    def _exact_value(self) -> str:
        """The value after ``=``, ``==``, ``!=``, ``>`` or ``<``; empty when a comma or
        the end follows at once (``a=`` means "a is the empty string")."""
        if self._peek()[0] in (_Tok.END, _Tok.COMMA):
            return ""
        kind, literal = self._take()
        if kind is not _Tok.IDENTIFIER:
            raise InvalidSelector(f"found '{literal}', expected: identifier")
        return literal


# --- field selectors ------------------------------------------------------------------------


@attrs.frozen
class FieldRequirement:
    """``field = value`` (``operator`` EQUALS; ``==`` parses to it too) or
    ``field != value`` (NOT_EQUALS). A missing field reads as ``""``."""

    field: str
    operator: Operator
    value: str

    def matches(self, fields: Mapping[str, str]) -> bool:
        equal = fields.get(self.field, "") == self.value
        return equal if self.operator is Operator.EQUALS else not equal

    def __str__(self) -> str:
        return f"{self.field}{self.operator.value}{_escape_field_value(self.value)}"


@attrs.frozen
class FieldSelector:
    """A field selector: the AND of its ``requirements``; ``FieldSelector()`` selects
    everything."""

    requirements: tuple[FieldRequirement, ...] = ()

    @classmethod
    def parse(cls, text: str) -> FieldSelector:
        r"""``fields.ParseSelector``: comma-separated ``f=v``, ``f==v`` or ``f!=v``; empty
        terms are skipped. In a value, ``\\``, ``\,`` and ``\=`` stand for a backslash,
        a comma and an equals sign; there is no other escape (not even ``\!``) and a
        bare ``=`` in a value is an error. The field name is everything before the first
        operator, taken literally. Raises InvalidSelector with Kubernetes' message."""
        terms = sorted(term for term in _split_terms(text) if term)
        return cls(tuple(_field_requirement(text, term) for term in terms))

    @property
    def empty(self) -> bool:
        return not self.requirements

    def matches(self, fields: Mapping[str, str]) -> bool:
        """Whether an object with these field values is selected."""
        return all(requirement.matches(fields) for requirement in self.requirements)

    def requires_exact_match(self, field: str) -> str | None:
        """The value of the first ``field=value`` term, else None: the hook for serving
        ``spec.nodeName=X`` from an index."""
        for requirement in self.requirements:
            if requirement.field == field and requirement.operator is Operator.EQUALS:
                return requirement.value
        return None

    def __str__(self) -> str:
        return ",".join(str(requirement) for requirement in self.requirements)


def check_fields(selector: FieldSelector, allowed: Set[str]) -> None:
    """Raise InvalidSelector (``field label not supported: f``) for the first field the
    resource does not support."""
    for requirement in selector.requirements:
        if requirement.field not in allowed:
            raise InvalidSelector(f"field label not supported: {requirement.field}")


def _split_terms(text: str) -> list[str]:
    """Split on commas not escaped by a backslash; escapes stay in the terms."""
    terms = []
    start = 0
    escaped = False
    for i, char in enumerate(text):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ",":
            terms.append(text[start:i])
            start = i + 1
    terms.append(text[start:])
    return terms


def _field_requirement(selector: str, term: str) -> FieldRequirement:
    for i in range(len(term)):
        # "!=" and "==" before "=", so neither leaves a stray "=" in the value.
        for symbol, operator in (
            ("!=", Operator.NOT_EQUALS),
            ("==", Operator.EQUALS),
            ("=", Operator.EQUALS),
        ):
            if term.startswith(symbol, i):
                value = _unescape_field_value(term[i + len(symbol) :])
                return FieldRequirement(term[:i], operator, value)
    raise InvalidSelector(f"invalid selector: '{selector}'; can't understand '{term}'")


def _escape_field_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


def _unescape_field_value(raw: str) -> str:
    chars = []
    escaped = False
    for char in raw:
        if escaped:
            if char not in "\\,=":
                raise InvalidSelector(f"invalid field selector: invalid escape sequence: \\{char}")
            chars.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char in ",=":
            # Go formats the rune with %v, which prints its code point: "... value: 61".
            raise InvalidSelector(
                f"invalid field selector: unescaped character in value: {ord(char)}"
            )
        else:
            chars.append(char)
    if escaped:
        raise InvalidSelector("invalid field selector: invalid escape sequence: \\")
    return "".join(chars)


# --- node selector terms (node affinity) ----------------------------------------------------


def validate_node_selector_term(term: Mapping) -> None:
    """Raise InvalidSelector, listing every problem, unless ``term`` (a
    ``{"matchExpressions": [...], "matchFields": [...]}`` dict) is valid:
    matchExpressions as ``labels.NewRequirement`` checks them (operators In, NotIn,
    Exists, DoesNotExist, Gt, Lt); matchFields only on ``metadata.name``, with In or
    NotIn and exactly one valid node name. An empty term is valid (and matches nothing).
    """
    _labels, _fields, errors = _parse_node_selector_term(term)
    if errors:
        raise InvalidSelector(_aggregate(errors))


def node_selector_term_matches(
    term: Mapping, node_labels: Mapping[str, str], node_name: str
) -> bool:
    """Whether the node satisfies every matchExpression (on its labels) and every
    matchField (on ``metadata.name``). An empty term, or one that
    ``validate_node_selector_term`` rejects, matches no node, as in the scheduler; a
    node without a name skips the matchFields, as Kubernetes does."""
    labels, fields, errors = _parse_node_selector_term(term)
    if errors or (labels.empty and fields.empty):
        return False
    if not labels.matches(node_labels):
        return False
    return not node_name or fields.matches({"metadata.name": node_name})


def _parse_node_selector_term(term: Mapping) -> tuple[Selector, FieldSelector, list[str]]:
    errors: list[str] = []
    requirements = []
    for i, expression in enumerate(term.get("matchExpressions") or []):
        path = f"matchExpressions[{i}]"
        name = expression.get("operator", "")
        operator = _NODE_SELECTOR_OPERATORS.get(name)
        if operator is None:
            errors.append(_not_supported(f"{path}.operator", name, _NODE_SELECTOR_OPERATORS))
            continue
        key = expression.get("key", "")
        values = tuple(expression.get("values") or ())
        expression_errors = _requirement_errors(key, operator, values, path)
        errors.extend(expression_errors)
        if not expression_errors:
            requirements.append(Requirement(key, operator, values))
    field_requirements = []
    for i, expression in enumerate(term.get("matchFields") or []):
        requirement, field_errors = _node_field_requirement(expression, f"matchFields[{i}]")
        errors.extend(field_errors)
        if requirement is not None:
            field_requirements.append(requirement)
    return Selector(requirements), FieldSelector(tuple(field_requirements)), errors


def _node_field_requirement(
    expression: Mapping, path: str
) -> tuple[FieldRequirement | None, list[str]]:
    """The scheduler's checks (In/NotIn, one value) plus the API server's (the key is
    ``metadata.name`` and the value a node name)."""
    errors = []
    name = expression.get("operator", "")
    key = expression.get("key", "")
    values = tuple(expression.get("values") or ())
    operator = {"In": Operator.EQUALS, "NotIn": Operator.NOT_EQUALS}.get(name)
    if operator is None:
        errors.append(_not_supported(f"{path}.operator", name, ("In", "NotIn")))
    elif len(values) != 1:
        errors.append(_invalid(f"{path}.values", values, "must have one element"))
    if key != "metadata.name":
        errors.append(_invalid(f"{path}.key", key, "not a valid field selector key"))
    for i, value in enumerate(values):
        errors.extend(
            _invalid(f"{path}.values[{i}]", value, message)
            for message in is_dns1123_subdomain(value)
        )
    if errors:
        return None, errors
    return FieldRequirement(key, operator, values[0]), []
