"""
Tests for L{twistedchat.sanitize}.
"""

from __future__ import annotations

import re
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from twistedchat.sanitize import MAX_BLANK_RUN, MAX_COMBINING_MARKS, clean_line

SCOTLAND = "\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f"
WALES = "\U0001f3f4\U000e0067\U000e0062\U000e0077\U000e006c\U000e0073\U000e007f"


@pytest.mark.parametrize(
    "raw, text",
    [
        (b"plain text", "plain text"),
        (b"\x1b[1;31mbold red\x1b[0m", "bold red"),
        (b"\x1b[2J\x1b[H", ""),
        (b"a\x1b]0;window title\x07b", "ab"),
        (b"a\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\b", "alinkb"),
        (b"a\x1bPdevice control\x1b\\b", "ab"),
        (b"a\x1b(0b", "ab"),
        (b"a\x1b7b\x1b8", "ab"),
        (b"x\xc2\x9b2Jy", "xy"),
        (b"bell\x07 back\x08space del\x7f", "bell backspace del"),
        (b"tab\there", "tab here"),
        (b"cr\rlf", "crlf"),
        (b"\xe2\x80\xaeevil\xe2\x81\xa6", "evil"),
        (b"bad \xc3\x28 utf8", "bad \ufffd( utf8"),
        ("emoji 😀 漢字".encode(), "emoji 😀 漢字"),
        (b"unterminated \x1b]0;title", "unterminated "),
    ],
)
def test_clean_line(raw: bytes, text: str) -> None:
    """
    clean_line decodes UTF-8 (invalid bytes become U+FFFD), removes whole
    escape sequences and control strings, and removes other controls.
    """
    assert clean_line(raw) == text


@given(st.binary())
def test_no_control_characters_survive(raw: bytes) -> None:
    """
    Whatever the bytes, the result holds no C0, DEL, C1 or bidi control.
    """
    text = clean_line(raw)
    for char in text:
        code = ord(char)
        assert code >= 0x20 and not 0x7F <= code <= 0x9F
        assert not 0x202A <= code <= 0x202E and not 0x2066 <= code <= 0x2069


@pytest.mark.parametrize(
    "text",
    [
        "Crème brûlée, naïve façade, Ærøskøbing, Łódź, Ştefan, Dvořák",
        # The same in decomposed form (NFD): base letters and combining marks.
        unicodedata.normalize("NFD", "Crème brûlée, naïve façade, Łódź, Dvořák"),
        "Привет, как дела? Съешь же ещё этих мягких французских булок",
        "مرحبا بالعالم، كيف حالك؟",
        "بِسْمِ ٱللَّٰهِ ٱلرَّحْمَٰنِ ٱلرَّحِيمِ",
        "\u0600\u0661\u0662\u0663 \u06dd\u0665",
        "می\u200cخواهم کتاب\u200cها را بخوانم",
        "שָׁלוֹם עֲלֵיכֶם",
        "הַשָּׁ֖מַיִם",
        "नमस्ते, आप कैसे हैं? क्षत्रिय, द्वार, श्री",
        "क\u094d\u200dष",
        "สวัสดีครับ ที่นี่ น้ำ",
        "Tiếng Việt có dấu: người, được, nghiêng, ặ",
        unicodedata.normalize("NFD", "Tiếng Việt: người được ặ ậ ệ"),
        unicodedata.normalize("NFD", "ᾄ ᾅ ᾆ ᾇ"),
        "你好，世界！漢字かな交じり文 한국어 텍스트",
        "བསྒྲུབས་པ་",
        "emoji 😀 👍🏽 ❤\ufe0f 1\ufe0f\u20e3",
        "family 👨\u200d👩\u200d👧\u200d👦 coder 👩🏽\u200d💻 rainbow 🏳\ufe0f\u200d🌈",
        f"flags {SCOTLAND} {WALES} 🇫🇷 🇯🇵",
        "three   spaces, then\u00a0no-break\u202fspaces « ok »",
    ],
)
def test_normal_text_unchanged(text: str) -> None:
    """
    Text in many scripts passes unchanged: accented Latin (composed and
    decomposed), Cyrillic, Arabic with vowel marks and number signs,
    Persian with ZWNJ, pointed Hebrew with a cantillation accent, Hindi
    with a ZWJ half-form, Thai, Vietnamese, polytonic Greek in NFD (three
    marks on a letter), CJK, Tibetan stacks, emoji with variation
    selectors, skin tones, ZWJ sequences, subdivision and regional flags,
    and up to MAX_BLANK_RUN spaces in a row.
    """
    assert clean_line(text.encode()) == text


@pytest.mark.parametrize(
    "char",
    [
        "\u00ad",  # SOFT HYPHEN
        "\u061c",  # ARABIC LETTER MARK
        "\u180e",  # MONGOLIAN VOWEL SEPARATOR
        "\u200b",  # ZERO WIDTH SPACE
        "\u200e",  # LEFT-TO-RIGHT MARK
        "\u200f",  # RIGHT-TO-LEFT MARK
        "\u202a",  # LEFT-TO-RIGHT EMBEDDING
        "\u202e",  # RIGHT-TO-LEFT OVERRIDE
        "\u2060",  # WORD JOINER
        "\u2061",  # FUNCTION APPLICATION
        "\u2064",  # INVISIBLE PLUS
        "\u2066",  # LEFT-TO-RIGHT ISOLATE
        "\u2069",  # POP DIRECTIONAL ISOLATE
        "\u206a",  # INHIBIT SYMMETRIC SWAPPING
        "\ufeff",  # ZERO WIDTH NO-BREAK SPACE (BOM)
        "\ufff9",  # INTERLINEAR ANNOTATION ANCHOR
        "\ufffb",  # INTERLINEAR ANNOTATION TERMINATOR
        "\U0001bca0",  # SHORTHAND FORMAT LETTER OVERLAP
        "\U0001d173",  # MUSICAL SYMBOL BEGIN BEAM
        "\U000e0001",  # LANGUAGE TAG
        "\U000e0041",  # TAG LATIN CAPITAL LETTER A
        "\U000e007f",  # CANCEL TAG
        "\u115f",  # HANGUL CHOSEONG FILLER
        "\u1160",  # HANGUL JUNGSEONG FILLER
        "\u3164",  # HANGUL FILLER
        "\uffa0",  # HALFWIDTH HANGUL FILLER
    ],
)
def test_invisible_removed(char: str) -> None:
    """
    Format characters (Cf) that draw nothing, tag characters outside a
    flag and Hangul fillers are removed, wherever they are.
    """
    assert clean_line(f"{char}ad{char}min{char}".encode()) == "admin"


def test_line_and_paragraph_separators_become_spaces() -> None:
    """
    U+2028 LINE SEPARATOR and U+2029 PARAGRAPH SEPARATOR become a space,
    and count as blanks.
    """
    assert clean_line("one\u2028two\u2029three".encode()) == "one two three"
    assert clean_line(("a" + "\u2028" * 10 + "b").encode()) == "a" + " " * MAX_BLANK_RUN + "b"


@pytest.mark.parametrize(
    "text, cleaned",
    [
        ("a\u200d\u200d\u200db", "a\u200db"),
        ("a\u200c\u200d\u200c\u200db", "a\u200cb"),
        ("a\u200d\u200b\u200db", "a\u200db"),
    ],
)
def test_joiner_runs_collapse(text: str, cleaned: str) -> None:
    """
    A run of joiners (ZWJ, ZWNJ), which can only hide data, becomes its
    first joiner, also once the invisible characters in it are removed.
    """
    assert clean_line(text.encode()) == cleaned


@pytest.mark.parametrize(
    "text, cleaned",
    [
        # A subdivision code must be lowercase letters and digits...
        ("\U0001f3f4\U000e0047\U000e0042\U000e0053\U000e007f", "\U0001f3f4"),
        # ... of 3 to 7 tags ...
        ("\U0001f3f4" + "\U000e0061" * 8 + "\U000e007f", "\U0001f3f4"),
        ("\U0001f3f4\U000e0061\U000e0062\U000e007f", "\U0001f3f4"),
        # ... ended by CANCEL TAG ...
        ("\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074 x", "\U0001f3f4 x"),
        # ... right after the black flag.
        ("\U0001f3f4\u200b\U000e0067\U000e0062\U000e0073\U000e007f", "\U0001f3f4"),
        ("😀\U000e0067\U000e0062\U000e0073\U000e007f", "😀"),
        # A hidden message after a real flag goes; the flag stays.
        (SCOTLAND + "".join(chr(0xE0000 + ord(c)) for c in "secret"), SCOTLAND),
    ],
)
def test_tags_only_in_flags(text: str, cleaned: str) -> None:
    """
    Tag characters are kept only in a valid emoji flag tag sequence
    (UTS #51); elsewhere they are removed, so they cannot carry a hidden
    message.
    """
    assert clean_line(text.encode()) == cleaned


def test_zalgo() -> None:
    """
    At most MAX_COMBINING_MARKS combining marks stay on one character,
    also when joiners or removed characters sit between them; the next
    character gets its own.
    """
    marks = "\u0301\u0316\u0489\u20dd\u0352\u036f" * 200
    kept = marks[:MAX_COMBINING_MARKS]
    assert clean_line(f"Z{marks}a{marks}!".encode()) == f"Z{kept}a{kept}!"
    assert clean_line(("o" + "\u0301\u200b" * 50).encode()) == "o" + "\u0301" * MAX_COMBINING_MARKS
    assert clean_line(("o" + "\u0301\u200d" * 50).encode()) == (
        "o" + "\u0301\u200d" * (MAX_COMBINING_MARKS - 1) + "\u0301\u200d"
    )


def test_spacing_marks_not_limited() -> None:
    """
    Spacing marks (Mc) each take a column of their own and are not
    limited.
    """
    text = "क" + "\u093e" * 10
    assert clean_line(text.encode()) == text


FAKE_NOTICE = "*** alice has left"


@pytest.mark.parametrize(
    "padding",
    [
        " " * 72,
        "\t" * 72,
        "\u00a0" * 72,
        "".join(chr(cp) for cp in range(0x2000, 0x200B)) * 7,
        "\u3000" * 36,
        "\u2800" * 72,
        "\u3164" * 36 + " " * 72,
        " \u200b" * 72,
        " \u200d" * 72,
        " \ufe0f" * 72,
        " \u0301" * 72,
        " \u2028" * 36,
    ],
)
def test_blank_runs_collapse(padding: str) -> None:
    """
    A run of blank characters (space separators, tabs, U+2800, and
    U+2028/U+2029 turned into spaces), with or without marks, joiners or
    invisible characters between them, is cut to MAX_BLANK_RUN blanks, so
    that it cannot push a fake notice to the start of the next row.
    """
    cleaned = clean_line(f"hi{padding}{FAKE_NOTICE}".encode())
    assert cleaned.startswith("hi") and cleaned.endswith(FAKE_NOTICE)
    middle = cleaned[2 : -len(FAKE_NOTICE)]
    blanks = [c for c in middle if unicodedata.category(c) == "Zs" or c == "\u2800"]
    assert 1 <= len(blanks) <= MAX_BLANK_RUN


# Characters the rules are about, to draw test text from.
INTERESTING = (
    " \t\u00a0\u2000\u3000\u2800\u2028\u2029"
    "\u0301\u0489\u093e\ufe0f\U000e0100\U00011001"
    "\u200b\u200c\u200d\u200e\u202e\u2066\u00ad\ufeff\u0600\U0001d173"
    "\u115f\u3164\uffa0\x1b[\x9b\x07\x00\x7f"
    "\U0001f3f4\U000e0001\U000e0020\U000e0041\U000e0067\U000e0062\U000e0073\U000e007f"
    "a1é漢😀"
)
PREPENDED_CONCATENATION_MARKS = set(
    "\u0600\u0601\u0602\u0603\u0604\u0605\u06dd\u070f\u0890\u0891\u08e2\U000110bd\U000110cd"
)
FLAG = re.compile("\U0001f3f4[\U000e0030-\U000e0039\U000e0061-\U000e007a]{3,7}\U000e007f")
text_with_rule_breakers = st.text(st.sampled_from(INTERESTING) | st.characters(), max_size=60)


def assert_clean(text: str) -> None:
    """
    Assert that C{text} breaks none of the rules of clean_line.
    """
    blanks = marks = 0
    previous = ""
    for char in FLAG.sub("\U0001f3f4", text):
        category = unicodedata.category(char)
        assert category not in ("Cc", "Zl", "Zp")
        assert category != "Cf" or char in "\u200c\u200d" or char in PREPENDED_CONCATENATION_MARKS
        assert char not in "\u115f\u1160\u3164\uffa0"
        assert not (char in "\u200c\u200d" and previous in "\u200c\u200d" and previous)
        if category == "Zs" or char == "\u2800":
            blanks, marks = blanks + 1, 0
        elif category in ("Mn", "Me"):
            marks += 1
        elif char not in "\u200c\u200d":
            blanks = marks = 0
        assert blanks <= MAX_BLANK_RUN and marks <= MAX_COMBINING_MARKS
        previous = char


@given(text_with_rule_breakers)
def test_rules_hold(text: str) -> None:
    """
    Whatever the text, the result holds no control, no format character
    but the joiners, the prepended concatenation marks and tags in a valid
    flag, no line or paragraph separator, no Hangul filler, no run of
    joiners, no more than MAX_BLANK_RUN blanks or MAX_COMBINING_MARKS
    marks in a row; and cleaning it again changes nothing.
    """
    cleaned = clean_line(text.encode("utf-8", "surrogatepass"))
    assert_clean(cleaned)
    assert clean_line(cleaned.encode()) == cleaned


@given(st.binary())
def test_rules_hold_for_any_bytes(raw: bytes) -> None:
    """
    Whatever the bytes, the result follows the rules and cleaning it again
    changes nothing.
    """
    cleaned = clean_line(raw)
    assert_clean(cleaned)
    assert clean_line(cleaned.encode()) == cleaned


def test_scanned_planes_hold_all_such_characters() -> None:
    """
    The module only scans some planes for marks, format characters and
    space separators; with this Python's Unicode version, no other plane
    holds any.
    """
    outside = [
        hex(cp)
        for cp in range(0x20000, 0x110000)
        if not 0xE0000 <= cp <= 0xE0FFF
        and unicodedata.category(chr(cp)) in ("Cf", "Mn", "Me", "Zs")
    ]
    assert outside == []
