import pytest

from common.phone import InvalidPhoneNumber, mask_msisdn, normalize_msisdn


@pytest.mark.parametrize(
    ("typed", "msisdn"),
    [
        ("0712345678", "254712345678"),
        ("0112345678", "254112345678"),
        ("+254712345678", "254712345678"),
        ("+254112345678", "254112345678"),
        ("254712345678", "254712345678"),
        ("254112345678", "254112345678"),
        ("712345678", "254712345678"),
        ("112345678", "254112345678"),
        ("0712 345 678", "254712345678"),
        ("+254 712 345 678", "254712345678"),
        ("0712-345-678", "254712345678"),
        ("  0708374149  ", "254708374149"),
        ("0740123456", "254740123456"),
        ("0799123456", "254799123456"),
        ("0100123456", "254100123456"),
    ],
)
def test_kenyan_mobile_numbers_in_every_common_spelling_become_a_daraja_msisdn(typed, msisdn):
    assert normalize_msisdn(typed) == msisdn


@pytest.mark.parametrize(
    "typed",
    [
        pytest.param("", id="empty"),
        pytest.param("   ", id="blank"),
        pytest.param("07123abc78", id="letters"),
        pytest.param("O712345678", id="letter-O-for-zero"),
        pytest.param("020 2222222", id="nairobi-landline"),
        pytest.param("+254202222222", id="landline-international"),
        pytest.param("+255712345678", id="tanzania"),
        pytest.param("+256712345678", id="uganda"),
        pytest.param("+44 7911 123456", id="uk"),
        pytest.param("07123456", id="too-short"),
        pytest.param("071234567890", id="too-long"),
        pytest.param("2547123456789", id="msisdn-one-digit-too-many"),
        pytest.param("0812345678", id="not-a-mobile-prefix"),
    ],
)
def test_numbers_mpesa_cannot_prompt_are_refused(typed):
    with pytest.raises(InvalidPhoneNumber):
        normalize_msisdn(typed)


@pytest.mark.parametrize("value", [None, 712345678])
def test_non_text_phone_values_are_refused(value):
    with pytest.raises(InvalidPhoneNumber):
        normalize_msisdn(value)


def test_masked_number_keeps_only_prefix_and_last_three_digits():
    masked = mask_msisdn("254708374149")

    assert masked == "2547*****149"
    assert "08374" not in masked
    assert len(masked) == len("254708374149")


@pytest.mark.parametrize("short", ["", "1234", "1234567"])
def test_short_values_are_masked_completely(short):
    assert mask_msisdn(short) == "*" * len(short)
