"""
Make text a client sent safe to show on other users' terminals.

Everything a user supplies (nicknames, chat text, quit reasons) goes through
L{clean_line} before anyone sees it, so nobody can move another user's
cursor, change their colours, set their window title or hide text from them.
"""

from __future__ import annotations

import re

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

# C0 controls, DEL, C1 controls (tab is handled first), and the Unicode
# bidirectional overrides and isolates (Unicode TR #9), which reorder
# what follows them on screen ("Trojan Source", CVE-2021-42574).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def clean_line(raw: bytes) -> str:
    """
    Decode one line a client sent and remove everything that could act on
    a terminal.

    @param raw: the line's bytes, without its line ending.
    @return: the line as text. Invalid UTF-8 becomes U+FFFD (the Unicode
        replacement character); a tab becomes a space; ANSI/VT escape
        sequences (ECMA-48 section 5.4) and control strings are removed
        whole; any other C0 or C1 control character, DEL and the Unicode
        bidirectional controls are removed. Never raises.
    """
    text = raw.decode("utf-8", "replace").replace("\t", " ")
    if text.isprintable():
        return text
    return _CONTROL.sub("", _ESCAPE_SEQUENCE.sub("", text))
