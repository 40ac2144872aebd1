"""How many SMS a text costs: GSM-7 160/153, extension characters count double, UCS-2 70/67."""

import pytest

from notifications.segments import count_segments, is_gsm7


@pytest.mark.parametrize(
    ("length", "segments"), [(0, 0), (1, 1), (160, 1), (161, 2), (306, 2), (307, 3), (459, 3), (460, 4)]
)
def test_gsm7_plain_text(length, segments):
    info = count_segments("a" * length)

    assert info.encoding == "GSM-7" and info.segments == segments


def test_swahili_and_accents_in_the_gsm_alphabet_stay_gsm7():
    assert is_gsm7("Habari Amina, malipo yamepokelewa. Asante! é à ñ Ä £ @ _")


@pytest.mark.parametrize(("count", "segments"), [(80, 1), (81, 2)])
def test_extension_characters_count_double(count, segments):
    info = count_segments("€" * count)

    assert info.encoding == "GSM-7"
    assert info.units == count * 2 and info.characters == count
    assert info.segments == segments


def test_an_escape_pair_never_straddles_two_parts():
    # 306 units would fill two parts exactly, but "{" (2 units) after 152 plain ones does not fit the
    # first 153-unit part and moves to the second, which then overflows into a third.
    text = "a" * 152 + "{" + "b" * 152
    assert count_segments(text).units == 306
    assert count_segments(text).segments == 3


@pytest.mark.parametrize(("length", "segments"), [(70, 1), (71, 2), (134, 2), (135, 3)])
def test_ucs2_when_any_character_is_outside_gsm(length, segments):
    info = count_segments("ж" * length)

    assert info.encoding == "UCS-2" and info.segments == segments
    assert info.per_segment == (70 if segments == 1 else 67)


def test_one_emoji_turns_the_whole_message_ucs2_and_counts_two_units():
    info = count_segments("Asante " + "🙏")

    assert info.encoding == "UCS-2" and info.units == 9 and info.segments == 1
    assert info.describe() == "8 characters, 1 SMS (UCS-2)"
