"""Homoglyph skeletons and script detection for host names (quishing checks).

A forged QR code can point at `һѕbс.com.hk` (Cyrillic letters) that a phone shows like `hsbc.com.hk`. Unicode's
UTS #39 answers this with a *skeleton*: map every character to a representative of its look-alike class, and call
two strings confusable when their skeletons are equal. Unicode's full `confusables.txt` has thousands of rows;
this module holds a small hand-written subset of it (no download): the Cyrillic, Greek, full-width and Latin
look-alikes of the lower-case Latin letters and digits that a host name can carry after IDNA lower-casing,
plus the Latin small capitals (`ʜ`, `ʙ`, ...) and a few IPA letters (`ɑ`, `ȷ`), which are Latin, so the
mixed-script check cannot see them.
It is a subset, so a homoglyph outside it (Armenian, Cherokee, mathematical letters, ...) is caught only by the
mixed-script and IDN checks in `sampan.qr.quishing`, not by the skeleton.

Beyond UTS #39 the skeleton also drops combining marks (`hsbç` looks like `hsbc` on a small screen).
Standard library only.
"""

from __future__ import annotations

import unicodedata

__all__ = ["CONFUSABLES", "skeleton", "script_of", "scripts_in", "mixed_script", "is_whole_script_confusable"]

# Subset of Unicode confusables.txt (target: lower-case Latin skeleton). Grouped by source script.
_CYRILLIC = {
    "\u0430": "a",  # а CYRILLIC SMALL LETTER A
    "\u0441": "c",  # с CYRILLIC SMALL LETTER ES
    "\u0501": "cl",  # ԁ CYRILLIC SMALL LETTER KOMI DE (confusable with d, whose skeleton is cl)
    "\u0435": "e",  # е CYRILLIC SMALL LETTER IE
    "\u04bb": "h",  # һ CYRILLIC SMALL LETTER SHHA
    "\u0456": "i",  # і CYRILLIC SMALL LETTER BYELORUSSIAN-UKRAINIAN I
    "\u0458": "j",  # ј CYRILLIC SMALL LETTER JE
    "\u04cf": "l",  # ӏ CYRILLIC SMALL LETTER PALOCHKA
    "\u043e": "o",  # о CYRILLIC SMALL LETTER O
    "\u0440": "p",  # р CYRILLIC SMALL LETTER ER
    "\u051b": "q",  # ԛ CYRILLIC SMALL LETTER QA
    "\u0433": "r",  # г CYRILLIC SMALL LETTER GHE
    "\u0455": "s",  # ѕ CYRILLIC SMALL LETTER DZE
    "\u0475": "v",  # ѵ CYRILLIC SMALL LETTER IZHITSA
    "\u051d": "w",  # ԝ CYRILLIC SMALL LETTER WE
    "\u0445": "x",  # х CYRILLIC SMALL LETTER HA
    "\u0443": "y",  # у CYRILLIC SMALL LETTER U
    "\u04af": "y",  # ү CYRILLIC SMALL LETTER STRAIGHT U
}
_GREEK = {
    "\u03b1": "a",  # α GREEK SMALL LETTER ALPHA
    "\u03f2": "c",  # ϲ GREEK LUNATE SIGMA SYMBOL
    "\u03b9": "i",  # ι GREEK SMALL LETTER IOTA
    "\u03f3": "j",  # ϳ GREEK LETTER YOT
    "\u03bf": "o",  # ο GREEK SMALL LETTER OMICRON
    "\u03c1": "p",  # ρ GREEK SMALL LETTER RHO
    "\u03bd": "v",  # ν GREEK SMALL LETTER NU
    "\u03b3": "y",  # γ GREEK SMALL LETTER GAMMA
    "\u03c5": "u",  # υ GREEK SMALL LETTER UPSILON
}
_LATIN = {
    "\u0131": "i",  # ı LATIN SMALL LETTER DOTLESS I
    "\u0269": "i",  # ɩ LATIN SMALL LETTER IOTA
    "\u0261": "g",  # ɡ LATIN SMALL LETTER SCRIPT G
    "0": "o",  # DIGIT ZERO looks like o
    "1": "l",  # DIGIT ONE looks like l
    "m": "rn",  # m and rn (confusables.txt maps m -> rn)
    "d": "cl",  # d and cl (confusables.txt maps d -> cl)
    "\u0251": "a",  # ɑ LATIN SMALL LETTER ALPHA
    "\u0237": "j",  # ȷ LATIN SMALL LETTER DOTLESS J
    "\u01c0": "l",  # ǀ LATIN LETTER DENTAL CLICK
    "\u0263": "y",  # ɣ LATIN SMALL LETTER GAMMA
    "\u028b": "u",  # ʋ LATIN SMALL LETTER V WITH HOOK
    "\u0292": "3",  # ʒ LATIN SMALL LETTER EZH
}
# Latin small capitals: lower-case letters that look like the capital at x-height, which a phone's address bar
# shows beside ordinary letters (`ʜsʙc.com.hk` reads as HSBC); lower-cased IDNA keeps them as they are.
_SMALL_CAPITALS = {
    "\u1d00": "a",  # ᴀ
    "\u0299": "b",  # ʙ
    "\u1d04": "c",  # ᴄ
    "\u1d05": "d",  # ᴅ
    "\u1d07": "e",  # ᴇ
    "\ua730": "f",  # ꜰ
    "\u0262": "g",  # ɢ
    "\u029c": "h",  # ʜ
    "\u026a": "i",  # ɪ
    "\u1d0a": "j",  # ᴊ
    "\u1d0b": "k",  # ᴋ
    "\u029f": "l",  # ʟ
    "\u1d0d": "m",  # ᴍ
    "\u0274": "n",  # ɴ
    "\u1d0f": "o",  # ᴏ
    "\u1d18": "p",  # ᴘ
    "\ua7af": "q",  # ꞯ
    "\u0280": "r",  # ʀ
    "\ua731": "s",  # ꜱ
    "\u1d1b": "t",  # ᴛ
    "\u1d1c": "u",  # ᴜ
    "\u1d20": "v",  # ᴠ
    "\u1d21": "w",  # ᴡ
    "\u028f": "y",  # ʏ
    "\u1d22": "z",  # ᴢ
}
# Full-width forms (U+FF01..U+FF5E) fold to ASCII; NFKC does this too, the table keeps it explicit.
_FULLWIDTH = {chr(0xFF01 + i): chr(0x21 + i) for i in range(0x5E)}
_FULLWIDTH.update({"\u3002": ".", "\uff61": "."})  # ideographic and half-width full stops act as dots in IDNA

CONFUSABLES: dict[str, str] = {**_FULLWIDTH, **_CYRILLIC, **_GREEK, **_LATIN, **_SMALL_CAPITALS}

# Scripts that UTS #39's "highly restrictive" level lets share one label with Latin (CJK writing mixes them).
_ALLOWED_MIXES = (
    frozenset({"Latin", "Han", "Hiragana", "Katakana"}),
    frozenset({"Latin", "Han", "Bopomofo"}),
    frozenset({"Latin", "Han", "Hangul"}),
)
_NAME_TO_SCRIPT = {
    "LATIN": "Latin", "CYRILLIC": "Cyrillic", "GREEK": "Greek", "ARMENIAN": "Armenian", "HEBREW": "Hebrew",
    "ARABIC": "Arabic", "CJK": "Han", "HIRAGANA": "Hiragana", "KATAKANA": "Katakana", "HANGUL": "Hangul",
    "BOPOMOFO": "Bopomofo", "THAI": "Thai", "GEORGIAN": "Georgian", "CHEROKEE": "Cherokee", "DEVANAGARI": "Devanagari",
}


def _fold(ch: str) -> str:
    """One character through the table (recursively once: full-width `ｍ` -> `m` -> `rn`)."""
    out = CONFUSABLES.get(ch, ch)
    return "".join(CONFUSABLES.get(c, c) for c in out) if out != ch else out


def skeleton(text: str) -> str:
    """The look-alike class of `text`: NFKC, case-folded, confusables mapped, combining marks dropped.

    Two host labels with equal skeletons look alike to a person (`һѕbс` and `hsbc` both give `hsbc`)."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    mapped = "".join(_fold(ch) for ch in folded)
    decomposed = unicodedata.normalize("NFD", mapped)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def script_of(ch: str) -> str:
    """The script of one character ("Common" for digits, hyphen and punctuation; "Unknown" if unnamed)."""
    if ch.isascii():
        return "Latin" if ch.isalpha() else "Common"
    if unicodedata.category(ch).startswith("M"):
        return "Inherited"
    name = unicodedata.name(ch, "")
    if not name:
        return "Unknown"
    if name.startswith(("FULLWIDTH LATIN", "HALFWIDTH")):
        return "Latin" if "LATIN" in name else "Common"
    if not unicodedata.category(ch).startswith("L"):
        return "Common"
    first = name.split()[0]
    return _NAME_TO_SCRIPT.get(first, first.title())


def scripts_in(label: str) -> frozenset[str]:
    """The scripts of a label's letters (Common and Inherited left out)."""
    return frozenset(s for s in map(script_of, label) if s not in ("Common", "Inherited"))


def mixed_script(label: str) -> bool:
    """True when a label mixes scripts in a way UTS #39's highly-restrictive level refuses (Latin+Cyrillic, ...)."""
    scripts = scripts_in(label)
    if len(scripts) <= 1:
        return False
    return not any(scripts <= allowed for allowed in _ALLOWED_MIXES)


def is_whole_script_confusable(label: str) -> bool:
    """True for a single non-Latin-script label whose every letter has a Latin look-alike (`сео` in Cyrillic)."""
    scripts = scripts_in(label)
    if len(scripts) != 1 or "Latin" in scripts:
        return False
    letters = [ch for ch in unicodedata.normalize("NFKC", label).casefold() if script_of(ch) not in ("Common",)]
    return bool(letters) and all(ch in CONFUSABLES for ch in letters)
