"""resource.Quantity: parsing, canonical form, rounding, arithmetic, against Kubernetes.

Expected values come from k8s.io/apimachinery/pkg/api/resource/quantity_test.go
(TestQuantityParse, TestQuantityString, TestQuantityParseEmit, ...), named per case.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal, localcontext
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actorkube.apiserver._quantity import InvalidQuantity, Quantity, QuantityFormat

DEC = QuantityFormat.DECIMAL_SI
BIN = QuantityFormat.BINARY_SI
EXP = QuantityFormat.DECIMAL_EXPONENT


def q(text: str) -> Quantity:
    return Quantity.parse(text)


# TestQuantityParse: (input, amount, format).
@pytest.mark.parametrize(
    ("text", "amount", "format"),
    [
        ("0", 0, DEC),
        ("0n", 0, DEC),
        ("0Ki", 0, BIN),
        ("0T", 0, DEC),
        ("1", 1, DEC),
        ("1Ki", 1024, BIN),
        ("7Mi", 7 * 2**20, BIN),
        ("3Ei", 3 * 2**60, BIN),
        ("5n", Fraction(5, 10**9), DEC),
        ("4u", Fraction(4, 10**6), DEC),
        ("3m", Fraction(3, 1000), DEC),
        ("50k", 50_000, DEC),
        ("300T", 300 * 10**12, DEC),
        ("1E", 10**18, DEC),  # a lone E is exa, not an exponent
        ("1E-3", Fraction(1, 1000), EXP),
        ("1e3", 1000, EXP),
        ("1.3E+6", 1_300_000, EXP),
        ("0.5e-2", Fraction(5, 1000), EXP),
        ("100.035k", 100_035, DEC),
        ("0.0005k", Fraction(1, 2), DEC),
        ("6.987654321G", 6_987_654_321, DEC),
        ("1.01E", 101 * 10**16, DEC),
        # Things that round up to a whole nano-unit ("saturate/round").
        ("3.001n", Fraction(4, 10**9), DEC),
        ("1.1E-9", Fraction(2, 10**9), EXP),
        ("0.0000000001", Fraction(1, 10**9), DEC),
        ("0.00000012345", Fraction(124, 10**9), DEC),
        ("0.9n", Fraction(1, 10**9), DEC),
        # BinarySI is capped at the largest int64.
        ("9Ei", 2**63 - 1, BIN),
        ("9223372036854775807Ki", 2**63 - 1, BIN),
        ("12E", 12 * 10**18, DEC),  # DecimalSI is not capped
        ("100.035Ki", Fraction(10243584, 100), BIN),
        ("0.5Mi", 2**19, BIN),
        # "Things written by trolls": a fraction of one becomes DecimalSI.
        ("0.000000000001Ki", Fraction(2, 10**9), DEC),
        (".001", Fraction(1, 1000), DEC),
        ("1.", 1, DEC),
        ("1.G", 10**9, DEC),
    ],
)
def test_parse(text: str, amount: Fraction | int, format: QuantityFormat) -> None:
    for sign, signed in (("", amount), ("+", amount), ("-", -amount)):
        parsed = q(sign + text)
        assert parsed.amount == signed
        assert parsed.format is format


# TestQuantityParse's invalid list, plus the grammar's rule that a number has a digit
# (Kubernetes itself reads "Gi" and "." as zero: kubernetes/apimachinery#165).
@pytest.mark.parametrize(
    "text",
    [
        "",
        "1.1.M",
        "1+1.0M",
        "0.1mi",
        "0.1am",
        "aoeu",
        ".5i",
        "1i",
        "-3.01i",
        "-3.01e-",
        "1e4294967297",  # the exponent must fit an int32
        " 1",
        "1 ",
        "1.2.3",
        "Gi",
        "1 Gi",
        "1.5X",
        "1K",  # only a lowercase k
        "1e",
        "--1",
        ".",
        "-",
        "1e1.5",
        "\u0661",  # ARABIC-INDIC DIGIT ONE: a digit, but not an ASCII one
        "1\n",
    ],
)
def test_malformed(text: str) -> None:
    with pytest.raises(InvalidQuantity) as raised:
        q(text)
    assert isinstance(raised.value, ValueError)


def test_errors_carry_kubernetes_reason() -> None:
    # ErrFormatWrong and ErrSuffix of quantity.go.
    with pytest.raises(InvalidQuantity) as raised:
        q("1.2.3")
    assert raised.value.reason == (
        "quantities must match the regular expression "
        "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    )
    with pytest.raises(InvalidQuantity) as raised:
        q("1K")
    assert raised.value.reason == "unable to parse quantity's suffix"


# TestQuantityString (value, format -> canonical) and TestQuantityParseEmit.
@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("1Ki", "1Ki"),
        ("1024Mi", "1Gi"),
        ("1000M", "1G"),
        (".001Ki", "1024m"),
        (".000001Ki", "1024u"),
        (".000000001Ki", "1024n"),
        (".000000000001Ki", "2n"),
        ("307200Ki", "300Mi"),
        ("1025024Mi", "1001Gi"),
        ("1.5Gi", "1536Mi"),
        ("1.5Ki", "1536"),  # not a multiple of 1024: no binary suffix
        ("0.5Ki", "512"),  # below 1024: emitted as DecimalSI
        ("100.035Ki", "102435840m"),  # not whole: emitted as DecimalSI
        ("5000m", "5"),
        ("0.5", "500m"),
        ("0.1", "100m"),
        ("1000m", "1"),
        ("100m", "100m"),
        ("1.5", "1500m"),
        ("0.001T", "1G"),
        ("1000u", "1m"),
        ("1.08", "1080m"),
        ("1080000000n", "1080m"),
        ("0.0", "0"),
        ("0Mi", "0"),
        ("1000E", "1e21"),  # no DecimalSI suffix past E
        ("5000E", "5e21"),
        (".001e12", "1e9"),
        ("0.001e0", "1e-3"),
        ("1000e-12", "1e-9"),
        ("1e3", "1e3"),
        ("1E-3", "1e-3"),
        ("80e-3", "80e-3"),
        ("1e1", "10"),  # exponents go down to a multiple of 3
        ("0.5e0", "500e-3"),
        ("00", "0"),
        ("9Ei", "9223372036854775807"),
        ("-1.5Gi", "-1536Mi"),
        ("-0.1", "-100m"),
        ("-0", "0"),
    ],
)
def test_canonical_form(text: str, canonical: str) -> None:
    assert str(q(text)) == canonical


def test_binary_past_ei_falls_back_to_decimal_digits() -> None:
    # TestBinarySIPastEiArithmeticRoundTrip: 1Ei * 1024 has no binary suffix.
    two_to_70 = Quantity(Fraction(2**70), BIN)
    assert str(two_to_70) == "1180591620717411303424"
    assert str(Quantity(Fraction(10**70), BIN)) == "10e69"


# Kubernetes reads a JSON number's text, so `cpu: 1` and `cpu: 0.5` are quantities.
@pytest.mark.parametrize(
    ("raw", "canonical"),
    [(1, "1"), (0, "0"), (-2, "-2"), (0.5, "500m"), (1e16, "10e15"), (0.25, "250m")],
)
def test_json_numbers(raw: float, canonical: str) -> None:
    assert str(Quantity.parse(raw)) == canonical


@pytest.mark.parametrize("raw", [True, None, [], {}, float("nan"), float("inf"), b"1"])
def test_non_quantities(raw: object) -> None:
    with pytest.raises(InvalidQuantity):
        Quantity.parse(raw)


def test_magnitude_bound() -> None:
    # Ours, not Kubernetes': no quantity of 10**1000 or more.
    assert q("9" * 1000).amount == 10**1000 - 1
    for huge in ("1" + "0" * 1000, "1e1000", 10**1000):
        with pytest.raises(InvalidQuantity):
            Quantity.parse(huge)
    # Below a nano-unit the exponent needs no big integer: it is 1n.
    assert q("1e-2147483647").amount == Fraction(1, 10**9)
    assert q("0e2147483647").amount == 0
    assert q("0." + "0" * 5000 + "1").amount == Fraction(1, 10**9)


# Value() and MilliValue() round up, away from zero.
@pytest.mark.parametrize(
    ("text", "value", "milli"),
    [
        ("1", 1, 1000),
        ("100m", 1, 100),
        ("1.5", 2, 1500),
        ("1n", 1, 1),
        ("1Ki", 1024, 1024000),
        ("-1.5", -2, -1500),
        ("-1n", -1, -1),
        ("0", 0, 0),
        ("9.01", 10, 9010),
    ],
)
def test_value_and_milli_value(text: str, value: int, milli: int) -> None:
    assert q(text).value() == value
    assert q(text).milli_value() == milli


# TestQuantityCmp.
@pytest.mark.parametrize(
    ("x", "y", "expect"),
    [("0", "0", 0), ("100m", "50m", 1), ("50m", "100m", -1), ("10000T", "100Gi", 1)],
)
def test_comparison(x: str, y: str, expect: int) -> None:
    assert (q(x) > q(y)) - (q(x) < q(y)) == expect


def test_equality_ignores_format() -> None:
    # Kubernetes' Equal compares amounts: 1 and 1000m are the same quantity.
    assert q("1") == q("1000m") == q("1e0")
    assert hash(q("1Ki")) == hash(q("1024"))
    assert q("1") != 1  # a Quantity is not a number


# TestQuantityAddZeroPreservesSuffix / TestQuantitySubZeroPreservesSuffix.
@pytest.mark.parametrize("text", ["100m", "1Gi"])
def test_zero_takes_the_other_format(text: str) -> None:
    zero = q("0")
    assert str(q(text) + zero) == text
    assert str(zero + q(text)) == text
    assert str(q(text) - zero) == text
    assert str(zero - q(text)) == "-" + text


def test_arithmetic_is_exact() -> None:
    assert q("0.1") + q("0.2") == q("300m")
    assert str(q("1Gi") - q("512Mi")) == "512Mi"
    assert str(q("1Gi") + q("1")) == "1073741825"
    assert (q("1") + q("1Ki")).format is DEC  # the left operand's format
    assert q("1").__add__(1) is NotImplemented


def test_amount_must_be_whole_nanos() -> None:
    with pytest.raises(ValueError):
        Quantity(Fraction(1, 3), DEC)


# --- Properties ---------------------------------------------------------------------

DECIMAL_POWERS = {"n": -9, "u": -6, "m": -3, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
BINARY_POWERS = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
SUFFIXES = ["", *DECIMAL_POWERS, *BINARY_POWERS]
EXPONENTS = st.builds(
    lambda e, sign, n: f"{e}{sign}{n}",
    st.sampled_from("eE"),
    st.sampled_from(["", "+", "-"]),
    st.integers(0, 40),
)
DIGITS = st.text("0123456789", max_size=14)


@st.composite
def quantity_texts(draw: st.DrawFn) -> str:
    whole = draw(DIGITS)
    fraction = draw(st.none() | DIGITS)
    if not whole and not fraction:
        whole = "0"
    number = whole if fraction is None else f"{whole}.{fraction}"
    sign = draw(st.sampled_from(["", "+", "-"]))
    return sign + number + draw(st.sampled_from(SUFFIXES) | EXPONENTS)


def oracle(text: str) -> Fraction:
    """The amount by Decimal arithmetic, independently of the parser: the magnitude
    rounded up to a nano-unit, BinarySI capped at 2**63-1."""
    number = text.lstrip("+-")
    scale = Decimal(1)
    if number[-2:] in BINARY_POWERS:
        number, scale = number[:-2], Decimal(1024) ** BINARY_POWERS[number[-2:]]
    elif number[-1] in DECIMAL_POWERS:
        number, scale = number[:-1], Decimal(10) ** DECIMAL_POWERS[number[-1]]
    elif "e" in number.lower():
        number, exponent = number.lower().split("e")
        scale = Decimal(10) ** int(exponent)
    with localcontext() as context:
        context.prec = 200
        nanos = (Decimal(number or "0") * scale * 10**9).to_integral_value(ROUND_CEILING)
    magnitude = Fraction(int(nanos), 10**9)
    if text[-1] == "i":
        magnitude = min(magnitude, Fraction(2**63 - 1))
    return -magnitude if text.startswith("-") else magnitude


@given(quantity_texts())
def test_parse_matches_decimal_oracle(text: str) -> None:
    assert q(text).amount == oracle(text)


@given(quantity_texts())
def test_canonical_form_round_trips(text: str) -> None:
    parsed = q(text)
    canonical = str(parsed)
    assert q(canonical) == parsed
    assert str(q(canonical)) == canonical  # canonical text is a fixed point
    assert "." not in canonical  # no fractional digits


@given(quantity_texts(), quantity_texts())
def test_sum_is_exact_and_ordered(a: str, b: str) -> None:
    x, y = q(a), q(b)
    assert (x + y).amount == x.amount + y.amount
    assert (x - y) + y == x
    assert (x < y) == (x.amount < y.amount)
    assert sorted([x, y]) == sorted([y, x])


@given(quantity_texts())
def test_value_bounds_the_amount(text: str) -> None:
    parsed = q(text)
    value, milli = parsed.value(), parsed.milli_value()
    assert abs(value) - 1 < abs(parsed.amount) <= abs(value)
    assert abs(milli) - 1 < abs(parsed.amount) * 1000 <= abs(milli)
    assert value * parsed.amount >= 0 and milli * parsed.amount >= 0


@given(st.text(max_size=30))
def test_parse_raises_only_invalid_quantity(text: str) -> None:
    try:
        parsed = q(text)
    except InvalidQuantity:
        return
    assert q(str(parsed)) == parsed
