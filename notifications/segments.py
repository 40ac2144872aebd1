"""How many SMS a text costs: GSM 03.38 (7-bit) or UCS-2, with concatenation headers.

GSM-7: 160 characters in one SMS, 153 per part when concatenated; the extension table's characters
(^ { } [ ] ~ \\ | € and form feed) take an escape plus the character, so they count double, and a part
never ends between the two. Anything outside the GSM alphabet switches the whole message to UCS-2:
70 UTF-16 code units in one SMS, 67 per part, and a surrogate pair (emoji) is never split.
"""

from dataclasses import dataclass

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\x0c^{}\\[~]|€")

GSM7_SINGLE, GSM7_PART = 160, 153
UCS2_SINGLE, UCS2_PART = 70, 67


@dataclass(frozen=True)
class SegmentInfo:
    encoding: str  # "GSM-7" or "UCS-2"
    units: int  # septets for GSM-7, UTF-16 code units for UCS-2
    characters: int
    segments: int
    per_segment: int  # the limit that applies: 160/153 or 70/67

    def describe(self) -> str:
        plural = "" if self.segments == 1 else "s"
        return f"{self.characters} characters, {self.segments} SMS{plural} ({self.encoding})"


def is_gsm7(text: str) -> bool:
    return all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text)


def _pack(costs: list[int], single: int, part: int) -> int:
    total = sum(costs)
    if total == 0:
        return 0
    if total <= single:
        return 1
    segments, used = 1, 0
    for cost in costs:
        if used + cost > part:
            segments, used = segments + 1, 0
        used += cost
    return segments


def count_segments(text: str) -> SegmentInfo:
    if is_gsm7(text):
        encoding, single, part = "GSM-7", GSM7_SINGLE, GSM7_PART
        costs = [2 if ch in GSM7_EXTENSION else 1 for ch in text]
    else:
        encoding, single, part = "UCS-2", UCS2_SINGLE, UCS2_PART
        costs = [2 if ord(ch) > 0xFFFF else 1 for ch in text]
    segments = _pack(costs, single, part)
    return SegmentInfo(encoding, sum(costs), len(text), segments, single if segments <= 1 else part)
