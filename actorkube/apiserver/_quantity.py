"""Kubernetes' ``resource.Quantity``: exact amounts such as ``500m`` CPU or ``1.5Gi`` memory.

Rules of this file (they are k8s.io/apimachinery/pkg/api/resource's):

- The serialised form is ``<sign><number><suffix>``: the number is ``1``, ``1.5``, ``1.``
  or ``.5``; the suffix is a decimal SI one (``n u m "" k M G T P E``), a binary SI one
  (``Ki Mi Gi Ti Pi Ei``) or a decimal exponent (``e3``, ``E-3``, ``e+3``; an integer
  within int32). A quantity remembers which of the three formats it was written in.
- An amount is exact (a Fraction, never a float). Parsing rounds the magnitude *up* to a
  whole nano-unit (``0.1n`` is ``1n``: asking for some means getting some), caps BinarySI
  amounts at 2**63-1, and turns a BinarySI amount strictly between -1 and 1 into DecimalSI.
- Equality, ordering and hashing look at the amount only: ``1`` == ``1000m``.
- ``str()`` gives the canonical form Kubernetes serialises: no fractional digits, the
  largest suffix that loses nothing, the input's format kept. DecimalSI and
  DecimalExponent use exponents that are multiples of 3 (``1.5`` is ``1500m``, ``1e1`` is
  ``10``); BinarySI uses the largest power of 1024 that divides the amount (``1.5Gi`` is
  ``1536Mi``) and falls back to DecimalSI for amounts below 1024 in magnitude or not
  whole (``0.5Ki`` is ``512``). Past ``E`` (or ``Ei``) there is no suffix, so exponent
  notation is used, as current Kubernetes does (``1000E`` is ``1e21``).

Where we differ from Kubernetes, on purpose:

- A number needs a digit: Kubernetes' scanner reads a bare ``Gi``, ``m`` or ``.`` as zero
  (kubernetes/apimachinery#165); we follow the documented grammar and refuse them.
- Magnitudes must be below 10**1000 (Kubernetes keeps arbitrarily large decimal amounts),
  so that one manifest line cannot make the server build a huge integer.
"""

from __future__ import annotations

import enum
import functools
import math
import re
from decimal import Decimal
from fractions import Fraction

from attrs import field, frozen


class InvalidQuantity(ValueError):
    """The text is not a quantity: the fault of whoever wrote it. ``reason`` is
    Kubernetes' own wording where Kubernetes refuses the text too."""

    def __init__(self, text: str, reason: str) -> None:
        super().__init__(f"invalid quantity {text!r}: {reason}")
        self.reason = reason


class QuantityFormat(enum.StrEnum):
    DECIMAL_EXPONENT = "DecimalExponent"  # 12e6
    BINARY_SI = "BinarySI"  # 12Mi, 12 * 2**20
    DECIMAL_SI = "DecimalSI"  # 12M, 12 * 10**6


_FORMAT_WRONG = (
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
)
_BAD_SUFFIX = "unable to parse quantity's suffix"
_MAX_DIGITS = 1000
_TOO_LARGE = f"quantities must be smaller than 1e{_MAX_DIGITS} in magnitude"

# The shape Kubernetes' scanner accepts (its error message quotes it): a number, then
# suffix letters, a sign and digits, which only then are told apart. [0-9], not \d: \d
# would accept non-ASCII digits.
_SHAPE = re.compile(r"([+-]?)([0-9]*)(?:\.([0-9]*))?([eEinumkKMGTP]*[+-]?[0-9]*)")
_EXPONENT = re.compile(r"[eE]([+-]?)0*([0-9]+)")
_MAX_EXPONENT = 2**31 - 1  # Kubernetes keeps exponents in an int32 it later negates

_DECIMAL_SI = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_BINARY_SI = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}  # powers of 1024
_DECIMAL_SUFFIX = {exponent: suffix for suffix, exponent in _DECIMAL_SI.items()}
_BINARY_SUFFIX = {0: ""} | {power: suffix for suffix, power in _BINARY_SI.items()}

_NANOS = 10**9
_MAX_BINARY = 2**63 - 1


@frozen(order=True)
class Quantity:
    """An exact amount and the format it is written in (see the module's rules)."""

    amount: Fraction = field()  # a whole number of nano-units
    format: QuantityFormat = field(eq=False, order=False)

    @amount.validator
    def _check_amount(self, _attribute: object, value: Fraction) -> None:
        if not isinstance(value, Fraction) or (value * _NANOS).denominator != 1:
            raise ValueError(f"a quantity's amount is a whole number of nano-units, not {value!r}")

    @classmethod
    def parse(cls, raw: object) -> Quantity:
        """The quantity ``raw`` denotes: its serialised form, or an int or float as a JSON
        number in a manifest (``cpu: 1``, ``cpu: 0.5``; as Kubernetes, we read the
        number's text). Raises InvalidQuantity for anything else."""
        text = _number_text(raw) if not isinstance(raw, str) else raw
        # Only short texts are remembered, so odd inputs cannot fill the memory.
        return _parse_remembered(text) if len(text) <= 32 else _parse_text(text)

    def value(self) -> int:
        """The amount rounded up, away from zero, to a whole number (Kubernetes'
        ``Value()``; unlike Go's, it never overflows)."""
        return _round_away_from_zero(self.amount)

    def milli_value(self) -> int:
        """The amount in thousandths, rounded up away from zero (``MilliValue()``)."""
        return _round_away_from_zero(self.amount * 1000)

    def __add__(self, other: object) -> Quantity:
        """The exact sum; the format is ours unless we are zero (Kubernetes' ``Add``)."""
        if not isinstance(other, Quantity):
            return NotImplemented
        return Quantity(self.amount + other.amount, self._format_with(other))

    def __sub__(self, other: object) -> Quantity:
        """The exact difference; the format as for ``+`` (Kubernetes' ``Sub``)."""
        if not isinstance(other, Quantity):
            return NotImplemented
        return Quantity(self.amount - other.amount, self._format_with(other))

    def _format_with(self, other: Quantity) -> QuantityFormat:
        # Kubernetes lets a zero take the other operand's format, so 0 + 1Gi prints "1Gi".
        return other.format if self.amount == 0 else self.format

    def __str__(self) -> str:
        if self.amount == 0:
            return "0"
        sign = "-" if self.amount < 0 else ""
        magnitude = abs(self.amount)
        if self.format is not QuantityFormat.BINARY_SI:
            return sign + _decimal_form(magnitude, self.format)
        if magnitude < 1024 or magnitude.denominator != 1:
            return sign + _decimal_form(magnitude, QuantityFormat.DECIMAL_SI)
        mantissa, power = _remove_factors(int(magnitude), 1024)
        if power in _BINARY_SUFFIX:
            return f"{sign}{mantissa}{_BINARY_SUFFIX[power]}"
        return sign + _decimal_form(magnitude, QuantityFormat.DECIMAL_EXPONENT)


def _parse_text(text: str) -> Quantity:
    shape = _SHAPE.fullmatch(text)
    if shape is None or not (shape[2] or shape[3]):
        raise InvalidQuantity(text, _FORMAT_WRONG)
    sign, whole, fraction, suffix = shape[1], shape[2], shape[3] or "", shape[4]
    exponent, binary_power, format = _interpret(text, suffix)
    magnitude = _magnitude(text, whole, fraction, exponent, binary_power)
    if format is QuantityFormat.BINARY_SI:
        magnitude = min(magnitude, Fraction(_MAX_BINARY))
        if 0 < magnitude < 1:
            format = QuantityFormat.DECIMAL_SI
    return Quantity(-magnitude if sign == "-" else magnitude, format)


# A cluster writes the same few quantities ("100m", "128Mi") over and over, and an exact
# parse costs tens of microseconds; a Quantity is immutable, so one can be shared.
_parse_remembered = functools.lru_cache(maxsize=4096)(_parse_text)


def _number_text(raw: object) -> str:
    """The text of a JSON number (repr gives the shortest text that reads back as the
    same float, which is what a manifest holds); non-finite floats fail the shape."""
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise InvalidQuantity(repr(raw), "must be a string or a number")
    if isinstance(raw, int) and abs(raw) >= 10**_MAX_DIGITS:
        raise InvalidQuantity(f"<{raw.bit_length()}-bit integer>", _TOO_LARGE)
    return repr(raw)


def _interpret(text: str, suffix: str) -> tuple[int, int, QuantityFormat]:
    """(power of 10, power of 1024, format) that ``suffix`` stands for."""
    if suffix in _DECIMAL_SI:
        return _DECIMAL_SI[suffix], 0, QuantityFormat.DECIMAL_SI
    if suffix in _BINARY_SI:
        return 0, _BINARY_SI[suffix], QuantityFormat.BINARY_SI
    exponent = _EXPONENT.fullmatch(suffix)
    # The length test keeps int() away from absurdly long digit strings.
    if exponent is None or len(exponent[2]) > 10 or int(exponent[2]) > _MAX_EXPONENT:
        raise InvalidQuantity(text, _BAD_SUFFIX)
    power = int(exponent[2])
    return (-power if exponent[1] == "-" else power), 0, QuantityFormat.DECIMAL_EXPONENT


def _magnitude(text: str, whole: str, fraction: str, exponent: int, binary_power: int) -> Fraction:
    """|whole.fraction| * 10**exponent * 1024**binary_power, rounded up to a nano-unit."""
    significant = (whole + fraction).lstrip("0")
    if not significant:
        return Fraction(0)
    # 10**(leading-1) <= whole.fraction < 10**leading
    leading = len(whole.lstrip("0")) or len(fraction.lstrip("0")) - len(fraction)
    if binary_power and leading > 20:
        return Fraction(_MAX_BINARY)  # at least 10**20 * 1024: capped, whatever follows
    # The amount is below 10**order (1024**p < 10**(3p + 1)).
    order = leading + exponent + (3 * binary_power + 1 if binary_power else 0)
    if order > _MAX_DIGITS:
        raise InvalidQuantity(text, _TOO_LARGE)
    if order < -9:
        # Below a nano-unit, whatever the digits: skip building 10**-(a billion).
        return Fraction(1, _NANOS)
    # Decimal reads digit strings of any length; int() refuses those over 4300 digits.
    exact = Fraction(Decimal(f"{whole or 0}.{fraction}")) * Fraction(10) ** exponent
    exact *= 1024**binary_power
    return Fraction(math.ceil(exact * _NANOS), _NANOS)


def _decimal_form(magnitude: Fraction, format: QuantityFormat) -> str:
    """Canonical text of a positive amount in DecimalSI or DecimalExponent."""
    mantissa, exponent = _remove_factors(int(magnitude * _NANOS), 10)
    exponent -= 9
    shift = exponent % 3  # Python's modulo: the exponent moves down to a multiple of 3
    mantissa, exponent = mantissa * 10**shift, exponent - shift
    if format is QuantityFormat.DECIMAL_SI and exponent in _DECIMAL_SUFFIX:
        return f"{mantissa}{_DECIMAL_SUFFIX[exponent]}"
    return f"{mantissa}e{exponent}" if exponent else str(mantissa)


def _remove_factors(value: int, base: int) -> tuple[int, int]:
    """(m, n) with value == m * base**n and m not divisible by base; value > 0."""
    times = 0
    while value % base == 0:
        value //= base
        times += 1
    return value, times


def _round_away_from_zero(amount: Fraction) -> int:
    rounded = math.ceil(abs(amount))
    return rounded if amount >= 0 else -rounded
