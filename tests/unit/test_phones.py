"""Phone normalization: properties over generated numbers plus the documented forms."""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import given
from hypothesis import strategies as st

from callplane.core.ingestion.phones import PhoneNumberError, is_e164, normalize_phone

US_AREA = st.sampled_from(["212", "415", "909", "877", "888", "216", "617"])
US_LINE = (
    st.integers(min_value=200, max_value=999)
    .map(str)
    .flatmap(lambda exchange: st.integers(min_value=0, max_value=9999).map(lambda line: f"{exchange}{line:04d}"))
)


@given(
    US_AREA,
    US_LINE,
    st.sampled_from(["{a}{l}", "1{a}{l}", "+1{a}{l}", "({a}) {l3}-{l4}", "{a}-{l3}-{l4}", "+1 {a} {l3} {l4}"]),
)
def test_us_numbers_in_any_format(area: str, line: str, template: str) -> None:
    text = template.format(a=area, l=line, l3=line[:3], l4=line[3:])
    expected_input = f"+1{area}{line}"
    parsed = phonenumbers.parse(expected_input)
    if not phonenumbers.is_valid_number(parsed):
        with pytest.raises(PhoneNumberError):
            normalize_phone(text)
        return
    assert normalize_phone(text) == expected_input
    assert normalize_phone(int(f"{area}{line}")) == expected_input


@given(st.sampled_from(["GB", "ES", "US"]))
def test_example_numbers_round_trip(region: str) -> None:
    example = phonenumbers.example_number(region)
    e164 = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
    assert normalize_phone(e164, allowed_country_codes=[1, 44, 34]) == e164
    assert is_e164(e164)


@given(st.text(max_size=30))
def test_garbage_raises_phone_error_only(text: str) -> None:
    try:
        result = normalize_phone(text)
    except PhoneNumberError:
        return
    assert is_e164(result)


def test_country_restriction() -> None:
    with pytest.raises(PhoneNumberError, match=r"supported country \(\+1, \+44, \+34\)"):
        normalize_phone("+4930123456", allowed_country_codes=[1, 44, 34])


@pytest.mark.parametrize("value", [None, True, 3.5, "", "   "])
def test_non_numbers(value: object) -> None:
    with pytest.raises(PhoneNumberError):
        normalize_phone(value)


@pytest.mark.parametrize(
    ("text", "ok"), [("+1234567890", True), ("+0123", False), ("1234567890", False), ("+1234567890123456", False)]
)
def test_e164_shape(text: str, ok: bool) -> None:
    assert is_e164(text) is ok
