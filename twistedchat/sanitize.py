"""
Make text a client sent safe to show on other users' terminals.

Everything a user supplies (nicknames, chat text, quit reasons) goes through
L{clean_line} before anyone sees it, so nobody can move another user's
cursor, change their colours, set their window title, hide text from them,
or draw text that pretends to come from the server.

The character classes below are built when the module is imported from the
Unicode Character Database that ships with Python (L{unicodedata}), so they
always agree with the C{str.isprintable} fast path of L{clean_line}. The
general categories (Cf, Mn, Me, Zs, Zl, Zp) are those of Unicode Standard
Annex #44, "Unicode Character Database", section 5.7.1.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

#: The most combining marks (general categories Mn and Me) kept in a row on
#: one base character; the rest are dropped, so "Zalgo" text (hundreds of
#: marks stacked on one letter, spilling over the lines above and below)
#: stays readable. Real text needs fewer: Hindi, Thai and Vietnamese at
#: most 2 per letter, polytonic Greek in decomposed form (NFD) 3, pointed
#: Hebrew with a cantillation accent 4 (dagesh, shin dot, vowel, accent).
#: Spacing marks (Mc, as in Devanagari and Tamil vowel signs) take their
#: own column, cannot stack, and are not limited.
MAX_COMBINING_MARKS = 4

#: The most blank characters kept in a row; the rest of a longer run is
#: dropped. Without this, C{hi} and 72 spaces push C{*** alice has left}
#: to the start of the next row of an 80-column terminal, where it looks
#: like a server notice. Blank characters are the space separators (Zs:
#: space, no-break space, U+2000-U+200A, ideographic space...) and U+2800
#: BRAILLE PATTERN BLANK; a tab has already become a space. Combining marks
#: and joiners on a blank do not end its run.
MAX_BLANK_RUN = 3

# The planes that hold every character of the categories below: the BMP,
# the SMP, and the tags and variation selectors supplement (U+E0000 to
# U+E0FFF). Scanning only these keeps the import fast (about 15 ms instead
# of 250); tests/test_sanitize.py checks, for the Unicode version of the
# running Python, that no other plane holds such a character.
_SCANNED_PLANES = (range(0x20000), range(0xE0000, 0xE1000))


def _code_points(categories: frozenset[str]) -> list[int]:
    """
    Return, in order, the code points in L{_SCANNED_PLANES} whose general
    category is in C{categories}.
    """
    category = unicodedata.category
    return [cp for plane in _SCANNED_PLANES for cp in plane if category(chr(cp)) in categories]


def _char_class(code_points: Iterable[int], exact: bool = True) -> str:
    """
    Return a regular expression matching one character of C{code_points}
    (a group, so it can take a quantifier), or, if C{exact} is false, a
    character class matching them and possibly other astral characters
    (outside the BMP).

    A class listing astral ranges is slow in L{re}: each character it
    rejects is compared with every astral range in turn. So the class
    lists the BMP characters and one range of all astral characters, and a
    lookbehind then rejects the astral characters not in C{code_points}.
    The pattern starts with that class, so L{re} can still skip ahead
    quickly to where a match may start.
    """
    code_points = set(code_points)
    bmp = sorted(cp for cp in code_points if cp < 0x10000)
    astral = sorted(cp for cp in code_points if cp >= 0x10000)
    if not astral:
        return f"[{_ranges(bmp)}]"
    pattern = rf"[{_ranges(bmp)}\U00010000-\U0010ffff]"
    if not exact:
        return pattern
    return rf"(?:{pattern}(?<![\U00010000-\U0010ffff](?<![{_ranges(astral)}])))"


def _ranges(code_points: list[int]) -> str:
    """
    Return the inside of a regular expression character class matching the
    sorted C{code_points}.
    """
    runs: list[list[int]] = []
    for cp in code_points:
        if runs and runs[-1][1] == cp - 1:
            runs[-1][1] = cp
        else:
            runs.append([cp, cp])
    return "".join(rf"\U{lo:08x}-\U{hi:08x}" for lo, hi in runs)


# ECMA-48 (ISO/IEC 6429) section 5: escape sequences and control strings,
# introduced by ESC (7-bit) or by the C1 control itself (8-bit).
_ESCAPE_SEQUENCE = re.compile(
    r"""
      (?:\x1b\[|\x9b) [\x30-\x3f]* [\x20-\x2f]* [\x40-\x7e]?   # CSI ... final
    | (?:\x1b[\]P^_X]|[\x90\x98\x9d\x9e\x9f])                  # OSC DCS PM APC SOS
      .*? (?:\x07|\x1b\\|\x9c|$)                              # ... up to BEL or ST
    | \x1b [\x20-\x2f]* [\x30-\x7e]?                          # other ESC sequences
    """,
    re.VERBOSE | re.DOTALL,
)

_CATEGORIES = {
    cp: unicodedata.category(chr(cp)) for cp in _code_points(frozenset({"Cf", "Mn", "Me", "Zs"}))
}
_MARKS = [cp for cp, category in _CATEGORIES.items() if category in ("Mn", "Me")]

# ZERO WIDTH NON-JOINER and ZERO WIDTH JOINER (Cf) are kept: Persian and the
# Indic scripts need them to choose letter forms, and emoji ZWJ sequences
# (family, "woman technologist") are built with them.
_JOINERS = "\u200c\u200d"

# Format characters (Cf) that do draw something are kept: the prepended
# concatenation marks (Arabic number signs, Syriac abbreviation mark, Kaithi
# number sign...), property Prepended_Concatenation_Mark in PropList.txt.
_PREPENDED_CONCATENATION_MARKS = (
    "\u0600\u0601\u0602\u0603\u0604\u0605\u06dd\u070f\u0890\u0891\u08e2\U000110bd\U000110cd"
)

# Hangul fillers are letters (Lo) that draw nothing: a nickname or a line
# of them looks empty. They are Default_Ignorable_Code_Point (UAX #44,
# DerivedCoreProperties.txt) and modern Korean text never needs them.
_HANGUL_FILLERS = "\u115f\u1160\u3164\uffa0"

# U+2800 BRAILLE PATTERN BLANK is a symbol (So) that draws an empty cell.
_BRAILLE_BLANK = "\u2800"

# Tag characters (U+E0000-U+E007F, Cf) are invisible ASCII look-alikes: a
# line can carry a hidden message in them. They are kept only in an emoji
# flag tag sequence (UTS #51, "emoji tag sequence" and "Valid Emoji Tag
# Sequences"): WAVING BLACK FLAG, a lowercase CLDR subdivision code (3 to
# 7 of the tag characters for a-z and 0-9), CANCEL TAG. The flags of
# England, Scotland and Wales are written this way. Group 1 is the flag.
_TAG = re.compile("[\U000e0000-\U000e007f]")
_TAG_OUTSIDE_FLAG = re.compile(
    "(\U0001f3f4[\U000e0030-\U000e0039\U000e0061-\U000e007a]{3,7}\U000e007f)"
    "|[\U000e0000-\U000e007f]"
)

# Where an escape sequence or control string may start (see above).
_ESCAPE_START = re.compile("[\x1b\x90\x98\x9b\x9d\x9e\x9f]")

# What else is removed outright: C0 controls, DEL and C1 controls (a tab
# has already become a space), every format character (Cf) except the
# joiners, the prepended concatenation marks and the tag characters above,
# and the Hangul fillers. The format characters include the bidirectional
# marks, embeddings, overrides and isolates (Unicode TR #9), which reorder
# what follows them on screen ("Trojan Source", CVE-2021-42574); zero width
# space, word joiner, BOM and soft hyphen, which hide inside words so that
# two strings look equal but are not (UTS #39 section 3.1 gives them the
# Identifier_Type Default_Ignorable and keeps them out of identifiers);
# the invisible mathematical operators; and the interlinear annotation
# characters, which some renderers use to hide text.
_INVISIBLE = re.compile(
    _char_class(
        [*range(0x20), *range(0x7F, 0xA0)]
        + [
            cp
            for cp, category in _CATEGORIES.items()
            if category == "Cf"
            and chr(cp) not in _JOINERS + _PREPENDED_CONCATENATION_MARKS
            and not 0xE0000 <= cp <= 0xE007F
        ]
        + [ord(filler) for filler in _HANGUL_FILLERS]
    )
)

_MARK = _char_class(_MARKS)
_MARK_OR_JOINER = _char_class(_MARKS + [ord(joiner) for joiner in _JOINERS])
_BLANK = _char_class(
    [cp for cp, category in _CATEGORIES.items() if category == "Zs"] + [ord(_BRAILLE_BLANK)]
)

# More than MAX_COMBINING_MARKS marks in a row (joiners between them do not
# end the row): group 1 keeps the first ones, the rest is dropped with
# the joiners between. Both patterns start with a character class, so re
# skips ahead quickly to where a match may start.
_EXCESS_MARKS = re.compile(
    f"({_MARK}(?:[{_JOINERS}]*{_MARK}){{{MAX_COMBINING_MARKS - 1}}})(?:[{_JOINERS}]*{_MARK})+"
)

# A joiner joins two characters; a run of them only hides data.
_JOINER_RUN = re.compile(f"([{_JOINERS}])[{_JOINERS}]+")

# More than MAX_BLANK_RUN blanks in a row, each with its marks and joiners:
# group 1 keeps the first ones.
_BLANK_CELL = f"{_BLANK}{_MARK_OR_JOINER}*"
_EXCESS_BLANKS = re.compile(
    f"({_BLANK_CELL}(?:{_BLANK_CELL}){{{MAX_BLANK_RUN - 1}}})(?:{_BLANK_CELL})+"
)

# For the fast path: printable text (no controls, format characters or
# separators other than the space) is returned as it is unless it holds
# a run of spaces, or a character this class matches: a combining mark, a
# Hangul filler, U+2800, or any astral character (testing astral marks
# exactly would make this search slower; emoji take the slow path).
_PRINTABLE_BUT_SUSPECT = re.compile(
    _char_class(_MARKS + [ord(c) for c in _HANGUL_FILLERS + _BRAILLE_BLANK], exact=False)
)
_SPACES = " " * (MAX_BLANK_RUN + 1)


def clean_line(raw: bytes) -> str:
    """
    Decode one line a client sent and remove everything that could act on
    a terminal, hide text, or fake the layout of other lines.

    @param raw: the line's bytes, without its line ending.
    @return: the line as text, where:
        - invalid UTF-8 becomes U+FFFD (the Unicode replacement character)
          and a tab becomes a space;
        - ANSI/VT escape sequences (ECMA-48 section 5.4) and control
          strings are removed whole, and any other C0 or C1 control
          character and DEL are removed;
        - format characters (general category Cf, UAX #44), which draw
          nothing, are removed: among them the bidirectional controls
          (Unicode TR #9), zero width space, word joiner, BOM, soft hyphen
          and LRM/RLM/ALM. Kept are ZERO WIDTH JOINER and NON-JOINER
          (emoji sequences, Indic and Persian scripts), the prepended
          concatenation marks such as U+0600 ARABIC NUMBER SIGN (they
          draw), and tag characters inside an emoji flag tag sequence
          (UTS #51) such as the flag of Scotland; runs of joiners become
          one;
        - the Hangul fillers U+115F, U+1160, U+3164 and U+FFA0, letters
          that draw nothing, are removed;
        - U+2028 LINE SEPARATOR and U+2029 PARAGRAPH SEPARATOR become a
          space, so the words they separated stay apart on one line;
        - at most L{MAX_COMBINING_MARKS} combining marks (Mn, Me) in a row
          are kept on one character, and at most L{MAX_BLANK_RUN} blank
          characters in a row.
        Never raises.
    """
    text = raw.decode("utf-8", "replace").replace("\t", " ")
    if not text.isprintable():
        if _ESCAPE_START.search(text):
            text = _ESCAPE_SEQUENCE.sub("", text)
        if _TAG.search(text):
            text = _TAG_OUTSIDE_FLAG.sub(r"\1", text)  # the flag, or nothing
        text = text.replace("\u2028", " ").replace("\u2029", " ")
    elif _SPACES not in text and (text.isascii() or not _PRINTABLE_BUT_SUSPECT.search(text)):
        return text
    text = _INVISIBLE.sub("", text)
    text = _JOINER_RUN.sub(r"\1", _EXCESS_MARKS.sub(r"\1", text))
    return _EXCESS_BLANKS.sub(r"\1", text)
