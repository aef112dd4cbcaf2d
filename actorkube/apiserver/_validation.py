"""Field errors and the basic validators of Kubernetes' API machinery, over JSON-like data.

Rules of this file:

- Nothing here raises on user data. ``is_*`` validators take a value of the right Python
  type and return Kubernetes' messages (empty: valid); ``validate_*`` validators take
  anything a JSON document can hold and return FieldErrors, so that every error of an
  object is gathered in one pass.
- JSON types are checked, since Go's decoder would have refused a wrong one: a value of
  the wrong type is one FieldValueTypeInvalid error at its own path (Go has no such
  error; we word it as Kubernetes' CRD schema checks do) and nothing inside it is looked
  at. JSON null is Go's zero value: an absent string, map or list, a zero quantity.
- Messages, limits and paths are Kubernetes' (k8s.io/apimachinery util/validation,
  api/validate/content, api/validation; k8s.io/kubernetes pkg/apis/core/validation), down
  to their quirks: lengths are UTF-8 bytes, as Go's ``len``; DNS names and port names say
  "characters", label keys and values "bytes"; errors about a label, an annotation, an
  owner reference or a finalizer are reported at the map's or list's own path
  (``metadata.labels``), not at the entry's.
"""

from __future__ import annotations

import enum
import functools
import json
import math
import re
from collections.abc import Callable
from decimal import Decimal

import attrs

from ._quantity import InvalidQuantity, Quantity


class ErrorType(enum.StrEnum):
    """Kubernetes' field.ErrorType values (the reason of a StatusCause)."""

    NOT_FOUND = "FieldValueNotFound"
    REQUIRED = "FieldValueRequired"
    DUPLICATE = "FieldValueDuplicate"
    INVALID = "FieldValueInvalid"
    NOT_SUPPORTED = "FieldValueNotSupported"
    FORBIDDEN = "FieldValueForbidden"
    TOO_LONG = "FieldValueTooLong"
    TOO_MANY = "FieldValueTooMany"
    INTERNAL = "InternalError"
    TYPE_INVALID = "FieldValueTypeInvalid"


_TYPE_TEXT = {
    ErrorType.NOT_FOUND: "Not found",
    ErrorType.REQUIRED: "Required value",
    ErrorType.DUPLICATE: "Duplicate value",
    ErrorType.INVALID: "Invalid value",
    ErrorType.NOT_SUPPORTED: "Unsupported value",
    ErrorType.FORBIDDEN: "Forbidden",
    ErrorType.TOO_LONG: "Too long",
    ErrorType.TOO_MANY: "Too many",
    ErrorType.INTERNAL: "Internal error",
    ErrorType.TYPE_INVALID: "Invalid value",
}
# The types whose message shows the bad value; the others show only the detail.
_SHOWS_VALUE = frozenset(
    {
        ErrorType.NOT_FOUND,
        ErrorType.DUPLICATE,
        ErrorType.INVALID,
        ErrorType.NOT_SUPPORTED,
        ErrorType.TOO_MANY,
        ErrorType.TYPE_INVALID,
    }
)


@attrs.frozen
class Path:
    """A field path, printed as Kubernetes prints it:
    ``Path("spec").child("containers").index(0).key("app")`` is
    ``spec.containers[0][app]``."""

    text: str

    def child(self, *names: str) -> Path:
        return _child(self.text, names)

    def index(self, index: int) -> Path:
        return _index(self.text, index)

    def key(self, key: str) -> Path:
        # (Not shared: keys are the client's, of any length; made only for errors.)
        return Path(f"{self.text}[{key}]")

    def __str__(self) -> str:
        return self.text


# Validation visits the same fields of every object (spec.containers[0].ports), and a
# Path is immutable: the ones made are shared, not made again for each object. (Their
# field names are the code's, so these stay short.)
@functools.lru_cache(maxsize=4096, typed=True)
def _child(text: str, names: tuple[str, ...]) -> Path:
    for name in names:
        text = f"{text}.{name}" if text else name
    return Path(text)


@functools.lru_cache(maxsize=4096, typed=True)
def _index(text: str, index: int) -> Path:
    return Path(f"{text}[{index}]")


@attrs.frozen
class FieldError:
    """One thing wrong with one field: Kubernetes' field.Error. ``field`` is the path as
    printed; ``bad_value`` is shown in the message for the types that show one."""

    type: ErrorType
    field: str
    bad_value: object = attrs.field(default="", hash=False)  # may be a list or a dict
    detail: str = ""

    @classmethod
    def required(cls, path: Path, detail: str = "") -> FieldError:
        return cls(ErrorType.REQUIRED, str(path), "", detail)

    @classmethod
    def invalid(cls, path: Path, value: object, detail: str) -> FieldError:
        return cls(ErrorType.INVALID, str(path), value, detail)

    @classmethod
    def not_supported(cls, path: Path, value: object, supported: tuple[str, ...]) -> FieldError:
        listed = ", ".join(f'"{s}"' for s in sorted(supported))
        return cls(ErrorType.NOT_SUPPORTED, str(path), value, f"supported values: {listed}")

    @classmethod
    def duplicate(cls, path: Path, value: object) -> FieldError:
        return cls(ErrorType.DUPLICATE, str(path), value, "")

    @classmethod
    def forbidden(cls, path: Path, detail: str) -> FieldError:
        return cls(ErrorType.FORBIDDEN, str(path), "", detail)

    @classmethod
    def too_long(cls, path: Path, max_bytes: int) -> FieldError:
        unit = "byte" if max_bytes == 1 else "bytes"
        detail = f"may not be more than {max_bytes} {unit}"
        return cls(ErrorType.TOO_LONG, str(path), "<value omitted>", detail)

    @classmethod
    def type_invalid(cls, path: Path, value: object, expected: str) -> FieldError:
        """``value`` is not of JSON type ``expected``; the message names the type it
        has, not the value, which may be large."""
        return cls(
            ErrorType.TYPE_INVALID, str(path), _json_type(value), f"must be of type {expected}"
        )

    def message(self) -> str:
        """The text Kubernetes gives, e.g. ``metadata.name: Required value``."""
        body = _TYPE_TEXT[self.type]
        if self.type in _SHOWS_VALUE:
            body = f"{body}: {_go_value(self.bad_value)}"
        if self.detail:
            body = f"{body}: {self.detail}"
        return f"{self.field}: {body}"


# --- Value formatting, as Go's fmt %v / %q and encoding/json print a BadValue ------------------

_GO_ESCAPES = {
    "\a": r"\a",
    "\b": r"\b",
    "\f": r"\f",
    "\n": r"\n",
    "\r": r"\r",
    "\t": r"\t",
    "\v": r"\v",
}
# Go's json.Marshal escapes what could be taken for HTML or a JavaScript line end.
_JSON_ESCAPES = {
    "<": r"\u003c",
    ">": r"\u003e",
    "&": r"\u0026",
    "\u2028": r"\u2028",
    "\u2029": r"\u2029",
}


def as_dict(value: object) -> dict:
    """``value`` if it is a dict, else {} (a body's field of the wrong type reads empty;
    validation reports the type)."""
    return value if isinstance(value, dict) else {}


def as_list(value: object) -> list:
    return value if isinstance(value, list) else []


def _go_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _go_float(value)
    if isinstance(value, str):
        return _go_quote(value)
    try:
        text = json.dumps(
            value, ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False
        )
    except (TypeError, ValueError):
        return repr(value)  # Go falls back to %#v for what JSON cannot hold
    return "".join(_JSON_ESCAPES.get(char, char) for char in text)


def _go_quote(text: str) -> str:
    """Go's ``%q``: printable characters as they are, the rest escaped."""
    out = ['"']
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif char in _GO_ESCAPES:
            out.append(_GO_ESCAPES[char])
        elif char.isprintable():
            out.append(char)
        elif ord(char) < 0x80:
            out.append(f"\\x{ord(char):02x}")
        elif ord(char) < 0x10000:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    out.append('"')
    return "".join(out)


def _go_float(value: float) -> str:
    """Go's ``%v`` for a float64: the shortest digits that read back, in exponent form
    when the decimal exponent is below -4 or at least 6 (``1e+06``, ``1e-05``)."""
    if not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")
    number = Decimal(repr(value)).normalize()  # repr gives the same shortest digits as Go
    sign, digits, exponent = number.as_tuple()
    if not any(digits):
        return "-0" if sign else "0"
    leading = exponent + len(digits) - 1
    if -4 <= leading < 6:
        return f"{number:f}"
    mantissa = str(digits[0]) + ("." + "".join(map(str, digits[1:])) if len(digits) > 1 else "")
    return f"{'-' if sign else ''}{mantissa}e{'+' if leading >= 0 else '-'}{abs(leading):02d}"


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):  # before int: a bool is an int in Python
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _typed(value: object, kind: str, path: Path) -> list[FieldError]:
    """[] if ``value`` is null or of JSON type ``kind``, else the type error."""
    if value is None or _json_type(value) == kind:
        return []
    return [FieldError.type_invalid(path, value, kind)]


# --- String validators: Kubernetes' messages for one value ----------------------------------

_DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character"
)
_DNS1123_SUBDOMAIN_FMT = _DNS1123_LABEL_FMT + r"(\." + _DNS1123_LABEL_FMT + ")*"
_DNS1123_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
    "'-' or '.', and must start and end with an alphanumeric character"
)
_DNS1035_LABEL_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
_DNS1035_LABEL_MSG = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', "
    "start with an alphabetic character, and end with an alphanumeric character"
)
_LABEL_KEY_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_KEY_MSG = (
    "must consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character"
)
_LABEL_VALUE_FMT = f"({_LABEL_KEY_FMT})?"
_LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' "
    "or '.', and must start and end with an alphanumeric character"
)
_C_IDENTIFIER_FMT = "[A-Za-z_][A-Za-z0-9_]*"
_C_IDENTIFIER_MSG = (
    "a valid C identifier must start with alphabetic character or '_', "
    "followed by a string of alphanumeric characters or '_'"
)
_ENV_VAR_NAME_MSG = (
    "a valid environment variable name must consist only of printable ASCII characters "
    "other than '='"
)

# Go's regexp is ASCII-only and anchored here; re.fullmatch keeps `$` from matching
# before a trailing newline.
_DNS1123_LABEL = re.compile(_DNS1123_LABEL_FMT)
_DNS1123_SUBDOMAIN = re.compile(_DNS1123_SUBDOMAIN_FMT)
_DNS1035_LABEL = re.compile(_DNS1035_LABEL_FMT)
_LABEL_KEY = re.compile(_LABEL_KEY_FMT)
_LABEL_VALUE = re.compile(_LABEL_VALUE_FMT)
_C_IDENTIFIER = re.compile(_C_IDENTIFIER_FMT)
_PORT_NAME_CHARSET = re.compile("[-a-z0-9]+")
_LETTER = re.compile("[a-z]")

_LABEL_MAX = 63
_SUBDOMAIN_MAX = 253
_PORT_NAME_MAX = 15


def _byte_len(text: str) -> int:
    # surrogatepass: a lone surrogate counts as the 3 bytes Go's U+FFFD takes.
    return len(text.encode("utf-8", "surrogatepass"))


def _max_len_characters(length: int) -> str:
    return f"must be no more than {length} characters"  # util/validation's wording


def _max_len_bytes(length: int) -> str:
    return f"must be no more than {length} bytes"  # api/validate/content's wording


def _regex_error(message: str, regex: str, *examples: str) -> str:
    # The doubled space before "or" is Kubernetes' own.
    quoted = " or ".join(f"'{example}', " for example in examples)
    return f"{message} (e.g. {quoted}regex used for validation is '{regex}')"


def is_dns1123_label(value: str) -> list[str]:
    """Messages for a value that is not an RFC 1123 label (at most 63 bytes)."""
    return list(_dns1123_label(value))


def _dns1123_label_messages(value: str) -> list[str]:
    errors = []
    if _byte_len(value) > _LABEL_MAX:
        errors.append(_max_len_characters(_LABEL_MAX))
    if not _DNS1123_LABEL.fullmatch(value):
        if _DNS1123_SUBDOMAIN.fullmatch(value):
            errors.append("must not contain dots")
        else:
            errors.append(
                _regex_error(_DNS1123_LABEL_MSG, _DNS1123_LABEL_FMT, "my-name", "123-abc")
            )
    return errors


def is_dns1123_subdomain(value: str) -> list[str]:
    """Messages for a value that is not an RFC 1123 subdomain (at most 253 bytes)."""
    return _dns1123_subdomain(value, _max_len_characters)


def _dns1123_subdomain(value: str, max_len_error: Callable[[int], str]) -> list[str]:
    errors = []
    if _byte_len(value) > _SUBDOMAIN_MAX:
        errors.append(max_len_error(_SUBDOMAIN_MAX))
    if not _DNS1123_SUBDOMAIN.fullmatch(value):
        errors.append(_regex_error(_DNS1123_SUBDOMAIN_MSG, _DNS1123_SUBDOMAIN_FMT, "example.com"))
    return errors


def is_dns1035_label(value: str) -> list[str]:
    """Messages for a value that is not an RFC 1035 label (at most 63 bytes, starts with
    a letter)."""
    errors = []
    if _byte_len(value) > _LABEL_MAX:
        errors.append(_max_len_characters(_LABEL_MAX))
    if not _DNS1035_LABEL.fullmatch(value):
        errors.append(_regex_error(_DNS1035_LABEL_MSG, _DNS1035_LABEL_FMT, "my-name", "abc-123"))
    return errors


_QUALIFIED_NAME_ERROR = _regex_error(_LABEL_KEY_MSG, _LABEL_KEY_FMT, "MyName", "my.name",
                                     "123-abc")  # fmt: skip


def is_qualified_name(value: str) -> list[str]:
    """Messages for a value that is not a qualified name (a label key): an optional DNS
    subdomain prefix and '/', then a name of at most 63 bytes."""
    return list(_qualified_name(value))


def _qualified_name_messages(value: str) -> list[str]:
    parts = value.split("/")
    name_error = _QUALIFIED_NAME_ERROR
    if len(parts) > 2:
        return [
            f"a valid label key {name_error} with an optional DNS subdomain prefix and '/' "
            "(e.g. 'example.com/MyName')"
        ]
    errors = []
    if len(parts) == 2:
        prefix = parts[0]
        if not prefix:
            errors.append("prefix part must be non-empty")
        else:
            errors += ["prefix part " + msg for msg in _dns1123_subdomain(prefix, _max_len_bytes)]
    name = parts[-1]
    if not name:
        errors.append("name part must be non-empty")
    elif _byte_len(name) > _LABEL_MAX:
        errors.append("name part " + _max_len_bytes(_LABEL_MAX))
    if not _LABEL_KEY.fullmatch(name):
        errors.append("name part " + name_error)
    return errors


def is_valid_label_value(value: str) -> list[str]:
    """Messages for a value that is not a label value (empty, or at most 63 bytes of
    alphanumerics, '-', '_', '.', starting and ending with an alphanumeric)."""
    return list(_label_value(value))


def _label_value_messages(value: str) -> list[str]:
    errors = []
    if _byte_len(value) > _LABEL_MAX:
        errors.append(_max_len_bytes(_LABEL_MAX))
    if not _LABEL_VALUE.fullmatch(value):
        errors.append(
            _regex_error(_LABEL_VALUE_MSG, _LABEL_VALUE_FMT, "MyValue", "my_value", "12345")
        )
    return errors


def _remembered(check: Callable[[str], list[str]], longest: int) -> Callable[[str], tuple]:
    """``check``'s messages as a tuple that may be shared, remembered for values of at
    most ``longest`` characters (what a valid value can be; longer ones are rare and
    could fill the memory). For the checks whose values come back on every write:
    label and annotation keys, label values, resource names ("cpu"), namespaces,
    container names."""
    remembered = functools.lru_cache(maxsize=4096)(lambda value: tuple(check(value)))

    def messages(value: str) -> tuple[str, ...]:
        return remembered(value) if len(value) <= longest else tuple(check(value))

    return messages


_QUALIFIED_NAME_MAX = _SUBDOMAIN_MAX + 1 + _LABEL_MAX  # characters a valid one can have
_qualified_name = _remembered(_qualified_name_messages, _QUALIFIED_NAME_MAX)
_dns1123_label = _remembered(_dns1123_label_messages, _LABEL_MAX)
_label_value = _remembered(_label_value_messages, _LABEL_MAX)


def is_valid_port_num(port: int) -> list[str]:
    """Messages for a port number outside 1..65535."""
    return [] if 1 <= port <= 65535 else ["must be between 1 and 65535, inclusive"]


def is_valid_port_name(port: str) -> list[str]:
    """Messages for a value that is not an IANA service name (at most 15 bytes of
    [-a-z0-9], a letter among them, no '--', no '-' at either end)."""
    errors = []
    if _byte_len(port) > _PORT_NAME_MAX:
        errors.append(_max_len_characters(_PORT_NAME_MAX))
    if not _PORT_NAME_CHARSET.fullmatch(port):
        errors.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if not _LETTER.search(port):
        errors.append("must contain at least one letter (a-z)")
    if "--" in port:
        errors.append("must not contain consecutive hyphens")
    if port.startswith("-") or port.endswith("-"):
        errors.append("must not begin or end with a hyphen")
    return errors


def is_c_identifier(value: str) -> list[str]:
    """Messages for a value that is not a C identifier. (Kubernetes no longer uses this
    for environment variable names: see is_env_var_name.)"""
    if _C_IDENTIFIER.fullmatch(value):
        return []
    return [_regex_error(_C_IDENTIFIER_MSG, _C_IDENTIFIER_FMT, "my_name", "MY_NAME", "MyName")]


def is_env_var_name(value: str) -> list[str]:
    """Messages for a value that is not an environment variable name: since Kubernetes
    1.34 (RelaxedEnvironmentVariableValidation, GA), any non-empty printable ASCII
    without '='."""
    errors = []
    if not value:
        errors.append("environment variable name must be non-empty")
    if any(not " " <= char <= "~" or char == "=" for char in value):
        errors.append(_ENV_VAR_NAME_MSG)
    return errors


# --- Names: Kubernetes' ValidateNameFunc, (name, is a generateName prefix) -> messages ----------


def _mask_trailing_dash(name: str) -> str:
    # Kubernetes' maskTrailingDash, verbatim: it replaces the last *two* characters by "a"
    # (so "ab-" is checked as "aa"); a generated suffix will follow the dash.
    if len(name) > 1 and name.endswith("-"):
        return name[:-2] + "a"
    return name


def name_is_dns_subdomain(name: str, prefix: bool) -> list[str]:
    """Most kinds' names (NameIsDNSSubdomain)."""
    return is_dns1123_subdomain(_mask_trailing_dash(name) if prefix else name)


def name_is_dns_label(name: str, prefix: bool) -> list[str]:
    """Namespaces' names, and namespace fields (NameIsDNSLabel)."""
    return is_dns1123_label(_mask_trailing_dash(name) if prefix else name)


def name_is_dns1035_label(name: str, prefix: bool) -> list[str]:
    """Services' names (NameIsDNS1035Label)."""
    return is_dns1035_label(_mask_trailing_dash(name) if prefix else name)


def name_is_path_segment(name: str, prefix: bool) -> list[str]:
    """RBAC objects' names (ValidateRBACName: path.IsValidPathSegmentName), which may
    hold colons (``system:node``): anything but ``.``/``..`` and without ``/`` or ``%``."""
    if not prefix and name in (".", ".."):
        return [f"may not be '{name}'"]
    return [f"may not contain '{c}'" for c in ("/", "%") if c in name]


NameValidator = Callable[[str, bool], list[str]]


# --- ObjectMeta ----------------------------------------------------------------------------

_ANNOTATIONS_MAX = 256 * 1024  # bytes of keys and values together
_NEGATIVE = "must be greater than or equal to 0"
_BANNED_OWNERS = frozenset({("", "v1", "Event")})


def validate_object_meta(
    meta: object,
    namespaced: bool,
    path: Path,
    *,
    validate_name: NameValidator = name_is_dns_subdomain,
) -> list[FieldError]:
    """The errors of an object's metadata on create (Kubernetes' ValidateObjectMeta):
    a name or a generateName, each valid for ``validate_name``; a namespace if and only
    if ``namespaced``; a non-negative generation; labels, annotations, ownerReferences
    and finalizers."""
    if not isinstance(meta, dict):
        return _typed(meta, "object", path)
    errors = _validate_names(meta, path, validate_name)
    errors += _validate_namespace(meta.get("namespace"), namespaced, path)
    # The fields below are mostly absent or empty, which no check objects to: their
    # paths are made only for the fields there are.
    generation = meta.get("generation")
    if generation is not None:
        errors += _typed(generation, "integer", path.child("generation"))
        if isinstance(generation, int) and generation < 0:
            errors.append(FieldError.invalid(path.child("generation"), generation, _NEGATIVE))
    labels, annotations = meta.get("labels"), meta.get("annotations")
    if not _empty(labels, dict):
        errors += _validate_labels(labels, path.child("labels"))
    if not _empty(annotations, dict):
        errors += _validate_annotations(annotations, path.child("annotations"))
    references, finalizers = meta.get("ownerReferences"), meta.get("finalizers")
    if not _empty(references, list):
        errors += _validate_owner_references(references, path.child("ownerReferences"))
    if not _empty(finalizers, list):
        errors += _validate_finalizers(finalizers, path.child("finalizers"))
    return errors


def _empty(value: object, kind: type) -> bool:
    """Null, or an empty ``kind`` (dict or list): nothing for a check to object to (an
    empty value of another type still is a type error)."""
    return value is None or (isinstance(value, kind) and not value)


def _validate_names(meta: dict, path: Path, validate_name: NameValidator) -> list[FieldError]:
    name, generate_name = meta.get("name"), meta.get("generateName")
    errors = []
    # (_typed's check first: it wants a path only for a value of the wrong type.)
    if not isinstance(name, str | None):
        errors += _typed(name, "string", path.child("name"))
    if not isinstance(generate_name, str | None):
        errors += _typed(generate_name, "string", path.child("generateName"))
    if isinstance(generate_name, str) and generate_name:
        for msg in validate_name(generate_name, True):
            errors.append(FieldError.invalid(path.child("generateName"), generate_name, msg))
    if isinstance(name, str) and name:
        for msg in validate_name(name, False):
            errors.append(FieldError.invalid(path.child("name"), name, msg))
    elif name in (None, "") and generate_name in (None, ""):
        # Kubernetes checks the name after generating it; we may run before that.
        errors.append(FieldError.required(path.child("name"), "name or generateName is required"))
    return errors


def _validate_namespace(namespace: object, namespaced: bool, meta_path: Path) -> list[FieldError]:
    """The errors of ``metadata.namespace`` (``meta_path``: the metadata's path)."""
    # The common case (a valid namespace where one belongs, none where none does) is
    # told without making the field's path.
    fitting = isinstance(namespace, str | None) and bool(namespace) == namespaced
    if fitting and (not namespace or not _dns1123_label(namespace)):
        return []
    path = meta_path.child("namespace")
    if not isinstance(namespace, str | None):
        return _typed(namespace, "string", path)
    if not namespaced:
        return [FieldError.forbidden(path, "not allowed on this type")] if namespace else []
    if not namespace:
        return [FieldError.required(path)]
    return [FieldError.invalid(path, namespace, msg) for msg in _dns1123_label(namespace)]


def _string_map(value: object, path: Path, errors: list[FieldError]) -> dict[str, str]:
    """The well-typed entries of a JSON object of strings; type errors go to ``errors``.
    A null entry is the empty string, as Go decodes it."""
    if not isinstance(value, dict):
        errors += _typed(value, "object", path)
        return {}
    entries = {}
    for key, entry in value.items():
        if not isinstance(key, str):
            errors += _typed(key, "string", path.key(str(key)))
        elif entry is None or isinstance(entry, str):
            entries[key] = entry or ""
        else:
            errors += _typed(entry, "string", path.key(key))
    return entries


def _validate_labels(labels: object, path: Path) -> list[FieldError]:
    errors: list[FieldError] = []
    for key, value in _string_map(labels, path, errors).items():
        errors += [FieldError.invalid(path, key, msg) for msg in is_qualified_name(key)]
        errors += [FieldError.invalid(path, value, msg) for msg in is_valid_label_value(value)]
    return errors


def _validate_annotations(annotations: object, path: Path) -> list[FieldError]:
    errors: list[FieldError] = []
    entries = _string_map(annotations, path, errors)
    for key in entries:
        # Annotation keys are qualified names whatever their case.
        errors += [FieldError.invalid(path, key, msg) for msg in is_qualified_name(key.lower())]
    size = sum(_byte_len(key) + _byte_len(value) for key, value in entries.items())
    if size > _ANNOTATIONS_MAX:
        errors.append(FieldError.too_long(path, _ANNOTATIONS_MAX))
    return errors


def _string_list(value: object, path: Path, errors: list[FieldError]) -> list[str]:
    """The well-typed entries of a JSON array of strings; type errors go to ``errors``.
    A null entry is the empty string, as Go decodes it."""
    if not isinstance(value, list):
        errors += _typed(value, "array", path)
        return []
    entries = []
    for i, entry in enumerate(value):
        if entry is None or isinstance(entry, str):
            entries.append(entry or "")
        else:
            errors += _typed(entry, "string", path.index(i))
    return entries


def _validate_finalizers(finalizers: object, path: Path) -> list[FieldError]:
    errors: list[FieldError] = []
    names = _string_list(finalizers, path, errors)
    for name in names:
        errors += [FieldError.invalid(path, name, msg) for msg in is_qualified_name(name)]
    if "orphan" in names and "foregroundDeletion" in names:
        detail = "finalizer orphan and foregroundDeletion cannot be both set"
        errors.append(FieldError.invalid(path, finalizers, detail))
    return errors


_OWNER_REFERENCE_TYPES = {
    "apiVersion": "string",
    "kind": "string",
    "name": "string",
    "uid": "string",
    "controller": "boolean",
    "blockOwnerDeletion": "boolean",
}


def _validate_owner_references(references: object, path: Path) -> list[FieldError]:
    if not isinstance(references, list):
        return _typed(references, "array", path)
    errors = []
    first_controller = ""
    for i, entry in enumerate(references):
        reference = {} if entry is None else entry  # Go's zero OwnerReference
        type_errors = _owner_reference_type_errors(reference, path.index(i))
        if type_errors:
            errors += type_errors  # the rest of a mistyped reference means nothing
            continue
        errors += _validate_owner_reference(reference, path)
        if reference.get("controller") is True:
            controller = f"{reference.get('kind') or ''}/{reference.get('name') or ''}"
            if first_controller:
                detail = (
                    "Only one reference can have Controller set to true. "
                    f'Found "true" in references for {first_controller} and {controller}'
                )
                errors.append(FieldError.invalid(path, references, detail))
            else:
                first_controller = controller
    return errors


def _owner_reference_type_errors(reference: object, path: Path) -> list[FieldError]:
    if not isinstance(reference, dict):
        return _typed(reference, "object", path)
    errors = []
    for key, kind in _OWNER_REFERENCE_TYPES.items():
        value = reference.get(key)
        if value is not None and _json_type(value) != kind:  # the path only for an error
            errors += _typed(value, kind, path.child(key))
    return errors


def _validate_owner_reference(reference: dict, path: Path) -> list[FieldError]:
    api_version, kind = reference.get("apiVersion") or "", reference.get("kind") or ""
    group, version = _parse_group_version(api_version)
    errors = []
    if not version:
        errors.append(
            FieldError.invalid(path.child("apiVersion"), api_version, "version must not be empty")
        )
    for key in ("kind", "name", "uid"):
        if not reference.get(key):
            errors.append(
                FieldError.invalid(path.child(key), reference.get(key) or "", "must not be empty")
            )
    if (group, version, kind) in _BANNED_OWNERS:
        detail = f"{group}/{version}, Kind={kind} is disallowed from being an owner"
        errors.append(FieldError.invalid(path, reference, detail))
    return errors


def _parse_group_version(api_version: str) -> tuple[str, str]:
    """(group, version) as Kubernetes reads an apiVersion; ("", "") if it cannot."""
    if api_version.count("/") > 1:
        return "", ""
    group, _, version = api_version.rpartition("/")
    return group, version


# --- Quantities and resources -----------------------------------------------------------------

_JSON_QUANTITY = "string or number"


def validate_quantity(value: object, path: Path, *, non_negative: bool = True) -> list[FieldError]:
    """The errors of a quantity as a manifest holds it (a string, or a JSON number):
    malformed, or negative when ``non_negative``. Null is zero."""
    errors: list[FieldError] = []
    _quantity(value, path, non_negative, errors)
    return errors


def _quantity(
    value: object, path: Path, non_negative: bool, errors: list[FieldError]
) -> Quantity | None:
    if value is None:
        return Quantity.parse("0")  # Go's Quantity decodes null as zero
    if _json_type(value) not in ("string", "integer", "number"):
        errors += [FieldError.type_invalid(path, value, _JSON_QUANTITY)]
        return None
    try:
        quantity = Quantity.parse(value)
    except InvalidQuantity as error:
        errors.append(FieldError.invalid(path, value, error.reason))
        return None
    if non_negative and quantity.amount < 0:
        # Kubernetes shows the canonical form it would have stored.
        errors.append(FieldError.invalid(path, str(quantity), _NEGATIVE))
    return quantity


def validate_resource_requirements(resources: object, path: Path) -> list[FieldError]:
    """The errors of a container's ``resources``: ``limits`` and ``requests`` map
    resource names (qualified names) to non-negative quantities; a request may not
    exceed its limit, and for resources that cannot be overcommitted (extended resources
    such as ``example.com/gpu``, and ``hugepages-*``) it must have a limit equal to it.
    Which names a container may use is left to the caller."""
    if not isinstance(resources, dict):
        return _typed(resources, "object", path)
    errors: list[FieldError] = []
    limits = _resource_list(resources.get("limits"), path, "limits", errors)
    requests = _resource_list(resources.get("requests"), path, "requests", errors)
    for name, request in requests.items():
        limit = limits.get(name)
        if limit is request:
            continue  # the same text (quantities are shared): equal, nothing to compare
        if limit is None:
            if not _overcommit_allowed(name):
                detail = "Limit must be set for non overcommitable resources"
                errors.append(FieldError.required(path.child("limits"), detail))
        elif request != limit and not _overcommit_allowed(name):
            detail = f"must be equal to {name} limit of {limit}"
            errors.append(FieldError.invalid(path.child("requests"), str(request), detail))
        elif request > limit:
            detail = f"must be less than or equal to {name} limit of {limit}"
            errors.append(FieldError.invalid(path.child("requests"), str(request), detail))
    return errors


def _resource_list(value: object, parent: Path, field: str,
                   errors: list[FieldError]) -> dict[str, Quantity]:  # fmt: skip
    """The valid entries of the ResourceList ``parent.field``; the errors of the others
    go to ``errors``. Paths are made only for what is wrong: a list is mostly a few
    valid entries ("cpu": "100m")."""
    if not isinstance(value, dict):
        if value is not None:
            errors += _typed(value, "object", parent.child(field))
        return {}
    quantities = {}
    for name, raw in value.items():
        if (type(name) is str and type(raw) is str and len(name) <= _QUALIFIED_NAME_MAX
                and len(raw) <= _REMEMBERED_QUANTITY):  # fmt: skip
            quantity = _valid_resource(name, raw)
            if quantity is not None:
                quantities[name] = quantity
                continue
        path = parent.child(field)
        if not isinstance(name, str):
            errors += _typed(name, "string", path.key(str(name)))
            continue
        errors += [FieldError.invalid(path.key(name), name, msg) for msg in _qualified_name(name)]
        quantity = _quantity(raw, path.key(name), True, errors)
        if quantity is not None:
            quantities[name] = quantity
    return quantities


_REMEMBERED_QUANTITY = 32  # characters (as Quantity.parse remembers)


@functools.lru_cache(maxsize=4096)
def _valid_resource(name: str, text: str) -> Quantity | None:
    """The quantity of the ResourceList entry ``name: text`` if the name is a qualified
    name and the text a quantity that is not negative, else None (for the caller to
    report). Remembered: a cluster writes the same few entries over and over ("cpu":
    "100m"), and a request equal to its limit then is the limit's very quantity, told
    without comparing amounts (Fractions: a microsecond a comparison)."""
    if _qualified_name(name):
        return None
    try:
        quantity = Quantity.parse(text)
    except InvalidQuantity:
        return None
    return quantity if quantity.amount >= 0 else None


def _overcommit_allowed(name: str) -> bool:
    # Kubernetes' IsOvercommitAllowed: native resources (no domain, or kubernetes.io's)
    # other than huge pages.
    native = "/" not in name or "kubernetes.io/" in name
    return native and not name.startswith("hugepages-")
