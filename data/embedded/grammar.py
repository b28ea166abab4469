"""German and English morphology for the embedded corpus: determiners, adjective endings, verbs.

Cases are "nom", "acc", "dat"; genders "m", "f", "n", with "pl" for any plural.
Determiner kinds: "def" (der), "dies" (dieser), "jed" (jeder), "ein", "kein", "poss" (mein, ...),
"num" (zwei, ...), "einig" (einige), "viel" (viele).
"""

from __future__ import annotations

_CASE = {"nom": 0, "acc": 1, "dat": 2}

_DEF = {
    "m": ("der", "den", "dem"),
    "f": ("die", "die", "der"),
    "n": ("das", "das", "dem"),
    "pl": ("die", "die", "den"),
}
_DER_WORD_ENDINGS = {
    "m": ("er", "en", "em"),
    "f": ("e", "e", "er"),
    "n": ("es", "es", "em"),
    "pl": ("e", "e", "en"),
}
_EIN_WORD_ENDINGS = {
    "m": ("", "en", "em"),
    "f": ("e", "e", "er"),
    "n": ("", "", "em"),
    "pl": ("e", "e", "en"),
}

# adjective endings by declension type
_WEAK = {
    "m": ("e", "en", "en"),
    "f": ("e", "e", "en"),
    "n": ("e", "e", "en"),
    "pl": ("en", "en", "en"),
}
_MIXED = {
    "m": ("er", "en", "en"),
    "f": ("e", "e", "en"),
    "n": ("es", "es", "en"),
    "pl": ("en", "en", "en"),
}
_STRONG_PLURAL = ("e", "e", "en")

_DECLENSION = {
    "def": "weak",
    "dies": "weak",
    "jed": "weak",
    "ein": "mixed",
    "kein": "mixed",
    "poss": "mixed",
    "num": "strong",
    "einig": "strong",
    "viel": "strong",
}

# preposition + definite article contractions
CONTRACTIONS = {
    ("in", "dem"): "im",
    ("an", "dem"): "am",
    ("von", "dem"): "vom",
    ("zu", "dem"): "zum",
    ("zu", "der"): "zur",
    ("bei", "dem"): "beim",
    ("in", "das"): "ins",
}


def german_determiner(kind: str, stem: str, gender: str, case: str) -> str:
    """The determiner word; `stem` is the possessive stem ("mein") or the numeral ("zwei")."""
    c = _CASE[case]
    if kind == "def":
        return _DEF[gender][c]
    if kind == "dies":
        return "dies" + _DER_WORD_ENDINGS[gender][c]
    if kind == "jed":
        return "jed" + _DER_WORD_ENDINGS[gender][c]
    if kind in ("ein", "kein"):
        return kind + _EIN_WORD_ENDINGS[gender][c]
    if kind == "poss":
        return stem + _EIN_WORD_ENDINGS[gender][c]
    if kind == "num":
        return stem
    if kind in ("einig", "viel"):
        return kind + _STRONG_PLURAL[c]
    raise ValueError(f"unknown determiner kind {kind!r}")


def german_adjective(stem: str, det_kind: str, gender: str, case: str) -> str:
    c = _CASE[case]
    declension = _DECLENSION[det_kind]
    if declension == "weak":
        return stem + _WEAK[gender][c]
    if declension == "mixed":
        return stem + _MIXED[gender][c]
    if gender != "pl":
        raise ValueError("strong singular adjectives are not generated")
    return stem + _STRONG_PLURAL[c]


def contract(prep: str, article: str) -> str | None:
    return CONTRACTIONS.get((prep, article))


# ----------------------------------------------------------------------------- persons

PERSON_INDEX = {"1sg": 0, "2sg": 1, "3sg": 2, "1pl": 3, "3pl": 4}

_SEIN = ("bin", "bist", "ist", "sind", "sind")
_SEIN_PAST = ("war", "warst", "war", "waren", "waren")
_HABEN = ("habe", "hast", "hat", "haben", "haben")
_HABEN_PAST = ("hatte", "hattest", "hatte", "hatten", "hatten")
_WERDEN = ("werde", "wirst", "wird", "werden", "werden")
_GEBEN_PAST = ("gab", "gabst", "gab", "gaben", "gaben")


def sein(person: str, past: bool = False) -> str:
    return (_SEIN_PAST if past else _SEIN)[PERSON_INDEX[person]]


def haben(person: str, past: bool = False) -> str:
    return (_HABEN_PAST if past else _HABEN)[PERSON_INDEX[person]]


def werden(person: str) -> str:
    return _WERDEN[PERSON_INDEX[person]]


def geben_past(person: str) -> str:
    return _GEBEN_PAST[PERSON_INDEX[person]]


def english_be(person: str, past: bool = False) -> str:
    if past:
        return "were" if person in ("2sg", "1pl", "3pl") else "was"
    return {"1sg": "am", "3sg": "is"}.get(person, "are")


def english_article(next_word: str) -> str:
    """ "a" or "an" by the sound of the next word (the lexicon has no silent h or "yoo" sounds)."""
    return "an" if next_word[:1].lower() in "aeiou" else "a"
