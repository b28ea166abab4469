"""A seeded generator of English sentences and their German translations.

One abstract clause is drawn at random and then realised twice, once per language, so the pair is
a faithful translation as far as this grammar goes. What the German side exercises: gender and case
of articles and possessives, adjective endings (weak/mixed/strong), n-declension nouns, dative
plural -n, preposition contractions (im, zum, ...), verb conjugation with stem changes, separable
verbs, perfect tense with haben/sein, modal and future verb clusters at the end of the clause,
V2 word order after a fronted adverbial or subordinate clause, verb-final subordinate clauses,
V1 questions, "kein" vs "nicht" negation, numbers and "um ... Uhr".

Determinism: only `random.Random(seed)` (Mersenne Twister; same stream on every platform) and
tuples in lexicon order are used; no sets or dicts are iterated to make a choice.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from data.embedded import grammar as g
from data.embedded.lexicon import (
    ADJECTIVES,
    BENEFICIARY_PREP,
    CLOCK_HOURS,
    COMPANION_PREP,
    CONJUNCTIONS,
    DIRECTION_PREPS,
    LOCATION_PREPS,
    MODALS,
    NOUNS,
    NUMBERS,
    OBJECT_PRONOUNS,
    PAST_WHEN,
    POSSESSIVES,
    PRONOUNS,
    SAY_VERBS,
    TIME_ADVERBS,
    VERBS,
    Adjective,
    Noun,
    Verb,
)


def _having(items, cats: str) -> tuple:
    return tuple(x for x in items if any(c in x.cats for c in cats))


_NOUNS_BY_CATS: dict[str, tuple[Noun, ...]] = {}
_ADJ_BY_NOUN: dict[str, tuple[Adjective, ...]] = {}


def nouns_with(cats: str) -> tuple[Noun, ...]:
    if cats not in _NOUNS_BY_CATS:
        _NOUNS_BY_CATS[cats] = _having(NOUNS, cats)
    return _NOUNS_BY_CATS[cats]


def adjectives_for(noun: Noun) -> tuple[Adjective, ...]:
    if noun.de not in _ADJ_BY_NOUN:
        _ADJ_BY_NOUN[noun.de] = tuple(
            a for a in ADJECTIVES if a.cats == "*" or any(c in a.cats for c in noun.cats)
        )
    return _ADJ_BY_NOUN[noun.de]


_BENEFACTIVE_VERBS = (
    "kaufen",
    "kochen",
    "malen",
    "zeichnen",
    "schreiben",
    "bauen",
    "reparieren",
    "tragen",
    "suchen",
)
_COMPANION_FRAMES = ("intr", "move", "tr")


# ----------------------------------------------------------------------------- noun phrases


@dataclass(frozen=True)
class NounPhrase:
    noun: Noun | None  # None for a pronoun
    plural: bool = False
    det: str = "def"  # determiner kind, see grammar.py
    det_en: str = "the"
    det_de: str = ""  # possessive stem or numeral
    adj: Adjective | None = None
    very: bool = False
    pronoun: tuple[str, str, str] | None = None  # subject pronoun: (en, de, person)
    coordinated: tuple[NounPhrase, ...] = ()
    obj_pronoun: tuple[str, str, str, str] | None = None  # (en, de acc, de dat, person)
    relative: tuple[str, str] | None = None  # relative clause (en, de), e.g. "who sees the dog"

    @property
    def person(self) -> str:
        if self.pronoun is not None:
            return self.pronoun[2]
        if self.coordinated or self.plural:
            return "3pl"
        return "3sg"

    @property
    def cats(self) -> str:
        if self.pronoun is not None or self.obj_pronoun is not None:
            return "p"
        if self.coordinated:
            return self.coordinated[0].cats
        return self.noun.cats

    def english(self) -> str:
        if self.pronoun is not None:
            return self.pronoun[0]
        if self.obj_pronoun is not None:
            return self.obj_pronoun[0]
        if self.coordinated:
            return " and ".join(np.english() for np in self.coordinated)
        words = []
        if self.very:
            words.append("very")
        if self.adj is not None:
            words.append(self.adj.en)
        words.append(self.noun.en_pl if self.plural else self.noun.en)
        det = self.det_en
        if det == "a":
            det = g.english_article(words[0])
        if self.relative is not None:
            words.append(self.relative[0])
        return " ".join([det, *words])

    def german(self, case: str, prep: str | None = None) -> str:
        """The phrase in `case`; with `prep`, the prepositional phrase (with contraction)."""
        if self.pronoun is not None:
            if case != "nom":
                raise ValueError("a subject pronoun is only nominative")
            return self.pronoun[1]
        if self.obj_pronoun is not None:
            if prep is not None or case == "nom":
                raise ValueError("object pronouns are generated only as bare objects")
            return self.obj_pronoun[1 if case == "acc" else 2]
        if self.coordinated:
            text = " und ".join(np.german(case) for np in self.coordinated)
            return f"{prep} {text}" if prep else text
        gender = "pl" if self.plural else self.noun.gender
        article = g.german_determiner(self.det, self.det_de, gender, case)
        words = []
        if self.very:
            words.append("sehr")
        if self.adj is not None:
            words.append(g.german_adjective(self.adj.de_stem, self.det, gender, case))
        words.append(self.noun.de_form(self.plural, case))
        if self.relative is not None:
            # commas on both sides; a comma left before the final stop is removed in _finish()
            words[-1] += ","
            words.append(self.relative[1] + ",")
        if prep is not None:
            short = g.contract(prep, article) if self.det == "def" else None
            head = [short] if short else [prep, article]
            return " ".join([*head, *words])
        return " ".join([article, *words])


def pick(rng: random.Random, items: tuple):
    return items[rng.randrange(len(items))]


def noun_phrase(
    rng: random.Random,
    cats: str,
    *,
    allow_plural: bool = True,
    definite_only: bool = False,
    adjective_p: float = 0.35,
) -> NounPhrase:
    noun = pick(rng, nouns_with(cats))
    plural = allow_plural and rng.random() < 0.3
    r = rng.random()
    if plural:
        if definite_only or r < 0.45:
            det = ("def", "the", "")
        elif r < 0.6:
            en, de = pick(rng, POSSESSIVES)
            det = ("poss", en, de)
        elif r < 0.7:
            det = ("dies", "these", "")
        elif r < 0.88:
            en, de = pick(rng, NUMBERS)
            det = ("num", en, de)
        elif r < 0.94:
            det = ("einig", "some", "")
        else:
            det = ("viel", "many", "")
    else:
        if definite_only or r < 0.45:
            det = ("def", "the", "")
        elif r < 0.75:
            det = ("ein", "a", "")
        elif r < 0.9:
            en, de = pick(rng, POSSESSIVES)
            det = ("poss", en, de)
        elif r < 0.97:
            det = ("dies", "this", "")
        else:
            det = ("jed", "every", "")
    adj = None
    very = False
    if rng.random() < adjective_p:
        adj = pick(rng, adjectives_for(noun))
        very = rng.random() < 0.15
    return NounPhrase(noun, plural, det[0], det[1], det[2], adj, very)


def subject_phrase(rng: random.Random, cats: str) -> NounPhrase:
    r = rng.random()
    if "p" in cats and r < 0.25:
        en, de, person = pick(rng, PRONOUNS)
        return NounPhrase(None, pronoun=(en, de, person))
    if r < 0.33:
        parts = (
            noun_phrase(rng, cats, allow_plural=False, adjective_p=0.2),
            noun_phrase(rng, cats, allow_plural=False, adjective_p=0.2),
        )
        if parts[0].noun == parts[1].noun:
            return parts[0]
        return NounPhrase(None, coordinated=parts)
    return noun_phrase(rng, cats)


# ----------------------------------------------------------------------------- clauses


@dataclass(frozen=True)
class Phrase:
    """An adverbial: English text, German text, English position ("front", "mid", "end")."""

    en: str
    de: str
    en_pos: str = "end"


@dataclass(frozen=True)
class Clause:
    subject: NounPhrase
    verb: Verb | None  # None: copula ("is tired")
    tense: str  # "present", "past", "future", "modal"
    modal: str | None = None  # "can", "must", "want" when tense == "modal"
    modal_past: bool = False
    negated: bool = False
    dat_obj: NounPhrase | None = None
    acc_obj: NounPhrase | None = None
    predicate: Adjective | None = None
    predicate_very: bool = False
    phrases: tuple[Phrase, ...] = ()  # prepositional phrases, in German order
    time: Phrase | None = None
    front_time: bool = False


def _time_phrase(rng: random.Random, tense: str, modal_past: bool) -> Phrase:
    key = (
        "past" if tense == "past" or modal_past else ("future" if tense == "future" else "present")
    )
    if rng.random() < 0.12:
        en_hour, de_hour = pick(rng, CLOCK_HOURS)
        return Phrase(f"at {en_hour} o'clock", f"um {de_hour} Uhr", "end")
    en, de, pos = pick(rng, TIME_ADVERBS[key])
    return Phrase(en, de, pos)


def _object_pronoun(rng: random.Random, subject: NounPhrase) -> NounPhrase | None:
    """An object pronoun, or None where English would need a reflexive ("I see myself")."""
    en, acc, dat, person = pick(rng, OBJECT_PRONOUNS)
    if subject.pronoun is not None and subject.pronoun[2] == person and person != "3sg":
        return None
    if person == "3pl" and subject.pronoun is not None and subject.pronoun[2] == "3pl":
        return None
    return NounPhrase(None, obj_pronoun=(en, acc, dat, person))


def relative_clause(rng: random.Random, antecedent: NounPhrase) -> tuple[str, str] | None:
    """A relative clause on a noun: "who sees the dog" / "der den Hund sieht", or with the
    antecedent as object: "that the man sees" / "den der Mann sieht". None if no verb fits."""
    gender = "pl" if antecedent.plural else antecedent.noun.gender
    tense = "present" if rng.random() < 0.7 else "past"
    cats = antecedent.cats
    as_object = tuple(v for v in VERBS if v.frame == "tr" and any(c in v.obj for c in cats))
    as_subject = tuple(
        v for v in VERBS if v.frame in ("tr", "dat", "intr") and any(c in v.subj for c in cats)
    )
    if as_object and (not as_subject or rng.random() < 0.4):
        verb = pick(rng, as_object)
        c = Clause(subject_phrase(rng, verb.subj), verb, tense)
        rel_acc = g.german_determiner("def", "", gender, "acc")
        return f"that {english_clause(c)}", german_subordinate(c, rel_acc)
    if not as_subject:
        return None
    verb = pick(rng, as_subject)
    rel_en = "who" if "p" in cats else "that"
    rel_de = g.german_determiner("def", "", gender, "nom")
    subject = NounPhrase(None, pronoun=(rel_en, rel_de, antecedent.person))
    acc_obj = noun_phrase(rng, verb.obj, adjective_p=0.2) if verb.frame == "tr" else None
    dat_obj = noun_phrase(rng, verb.obj, adjective_p=0.2) if verb.frame == "dat" else None
    phrases: tuple[Phrase, ...] = ()
    if verb.frame == "intr" and rng.random() < 0.5:
        en, de, place_cats = pick(rng, LOCATION_PREPS)
        phrases = (_prep_phrase(rng, en, de, place_cats, "dat"),)
    c = Clause(subject, verb, tense, dat_obj=dat_obj, acc_obj=acc_obj, phrases=phrases)
    return english_clause(c), german_subordinate(c, None)


def _prep_phrase(rng: random.Random, prep_en: str, prep_de: str, cats: str, case: str) -> Phrase:
    np = noun_phrase(rng, cats, adjective_p=0.25)
    return Phrase(f"{prep_en} {np.english()}", np.german(case, prep=prep_de))


def clause(rng: random.Random, *, allow_front: bool = True, copula_p: float = 0.12) -> Clause:
    r = rng.random()
    tense = "present" if r < 0.4 else "past" if r < 0.65 else "future" if r < 0.75 else "modal"
    modal = modal_past = None
    if tense == "modal":
        modal = pick(rng, ("can", "must", "want"))
        modal_past = rng.random() < 0.3
    negated = rng.random() < 0.15 and modal != "must"
    time = _time_phrase(rng, tense, bool(modal_past)) if rng.random() < 0.35 else None
    front_time = time is not None and allow_front and rng.random() < 0.45

    if rng.random() < copula_p:
        subject = subject_phrase(rng, pick(rng, ("p", "a", "o", "v", "l", "f")))
        if subject.pronoun is not None:
            adjectives = tuple(a for a in ADJECTIVES if a.cats == "*" or "p" in a.cats)
        else:
            adjectives = adjectives_for((subject.coordinated or (subject,))[0].noun)
        if tense == "modal":
            tense, modal, modal_past = "present", None, False
        return Clause(
            subject,
            None,
            tense,
            negated=negated,
            predicate=pick(rng, adjectives),
            predicate_very=rng.random() < 0.2,
            time=time,
            front_time=front_time,
        )

    verb = pick(rng, VERBS)
    subject = subject_phrase(rng, verb.subj)
    dat_obj = acc_obj = None
    phrases: list[Phrase] = []
    if verb.frame in ("tr", "ditr"):
        acc_obj = noun_phrase(rng, verb.obj)
    if verb.frame == "dat":
        dat_obj = noun_phrase(rng, verb.obj)
    if verb.frame == "ditr":
        dat_obj = noun_phrase(rng, "p", adjective_p=0.2)
    if verb.frame == "tr" and "p" in verb.obj and rng.random() < 0.12:
        acc_obj = _object_pronoun(rng, subject) or acc_obj
    if verb.frame in ("dat", "ditr") and rng.random() < 0.2:
        dat_obj = _object_pronoun(rng, subject) or dat_obj
    if verb.frame in _COMPANION_FRAMES and rng.random() < 0.12:
        phrases.append(_prep_phrase(rng, *COMPANION_PREP, "pa", "dat"))
    if verb.frame == "tr" and verb.de in _BENEFACTIVE_VERBS and rng.random() < 0.2:
        phrases.append(_prep_phrase(rng, *BENEFICIARY_PREP, "p", "acc"))
    if verb.frame == "move" and rng.random() < 0.85:
        en, de, case, cats = pick(rng, DIRECTION_PREPS)
        phrases.append(_prep_phrase(rng, en, de, cats, case))
    elif verb.frame in ("intr", "tr") and rng.random() < (0.45 if verb.frame == "intr" else 0.2):
        en, de, cats = pick(rng, LOCATION_PREPS)
        phrases.append(_prep_phrase(rng, en, de, cats, "dat"))
    # "nicht" after "zwei Hunde" or a negated "every" subject reads badly: no negation there
    if any(
        np is not None and np.det in ("num", "einig", "viel", "jed")
        for np in (subject, dat_obj, acc_obj)
    ):
        negated = False
    return Clause(
        subject,
        verb,
        tense,
        modal,
        bool(modal_past),
        negated,
        dat_obj,
        acc_obj,
        phrases=tuple(phrases),
        time=time,
        front_time=front_time,
    )


# ----------------------------------------------------------------------------- German


def _german_negation(c: Clause) -> tuple[Clause, bool]:
    """Negate an indefinite object with "kein"; otherwise the clause gets "nicht"."""
    if not c.negated:
        return c, False
    for field_name in ("acc_obj", "dat_obj"):
        obj = getattr(c, field_name)
        if obj is not None and obj.det == "ein":
            return replace(c, **{field_name: replace(obj, det="kein")}), False
    return c, True


def german_parts(c: Clause) -> tuple[str, list[str], list[str]]:
    """(finite verb, middle field, final verb cluster in main-clause order)."""
    person = c.subject.person
    c, nicht = _german_negation(c)
    middle: list[str] = []
    # object pronouns come first in the middle field, before time adverbs and noun objects
    objects = [(np, case) for np, case in ((c.dat_obj, "dat"), (c.acc_obj, "acc")) if np]
    middle.extend(np.german(case) for np, case in objects if np.obj_pronoun is not None)
    if c.time is not None and not c.front_time:
        middle.append(c.time.de)
    middle.extend(np.german(case) for np, case in objects if np.obj_pronoun is None)
    if nicht:
        middle.append("nicht")
    middle.extend(p.de for p in c.phrases)
    if c.verb is None:  # copula
        pred = ("sehr " if c.predicate_very else "") + c.predicate.de
        if c.tense == "future":
            return g.werden(person), [*middle, pred], ["sein"]
        return g.sein(person, past=c.tense == "past"), [*middle, pred], []
    v = c.verb
    index = g.PERSON_INDEX[person]
    if c.tense == "modal":
        forms = MODALS[c.modal]["de_past" if c.modal_past else "de"]
        return forms[index], middle, [v.de]
    if c.tense == "future":
        return g.werden(person), middle, [v.de]
    if c.tense == "past":
        if v.de == "haben":
            return g.haben(person, past=True), middle, []
        aux = g.sein(person) if v.aux == "sein" else g.haben(person)
        return aux, middle, [v.participle]
    finite = (v.de_1sg, v.de_2sg, v.de_3sg, v.de[len(v.prefix) :], v.de[len(v.prefix) :])[index]
    return finite, middle, [v.prefix] if v.prefix else []


def german_main(c: Clause, front: str | None = None) -> str:
    finite, middle, end = german_parts(c)
    subject = c.subject.german("nom")
    if front is None and c.front_time:
        front = c.time.de
    if front is not None:
        words = [front, finite, subject, *middle, *end]
    else:
        words = [subject, finite, *middle, *end]
    return " ".join(words)


def german_question(c: Clause) -> str:
    finite, middle, end = german_parts(c)
    return " ".join([finite, c.subject.german("nom"), *middle, *end])


def german_subordinate(c: Clause, conj: str | None) -> str:
    """Verb-final clause after `conj`; with conj=None the subject (a relative pronoun) leads."""
    finite, middle, end = german_parts(c)
    if end and c.verb is not None and c.tense == "present":
        verb_final = [end[0] + finite]  # separable prefix joins the verb: "aufmacht"
    else:
        verb_final = [*end, finite]
    lead = [c.subject.german("nom")] if conj is None else [conj, c.subject.german("nom")]
    return " ".join([*lead, *middle, *verb_final])


# ----------------------------------------------------------------------------- English


def _english_verb(c: Clause, question: bool) -> tuple[str | None, list[str]]:
    """(auxiliary that moves in questions or None, rest of the verb group in order)."""
    person = c.subject.person
    third = person == "3sg"
    neg = ["not"] if c.negated else []
    if c.verb is None:
        be = g.english_be(person, past=c.tense == "past")
        if c.tense == "future":
            return "will", [*neg, "be"]
        return be, neg
    v = c.verb
    if c.tense == "future":
        return "will", [*neg, v.en]
    if c.tense == "modal":
        if c.modal == "can":
            if c.modal_past:
                return "could", [*neg, v.en]
            if c.negated and not question:
                return "cannot", [v.en]
            return "can", [*neg, v.en]
        if c.modal == "must":
            return ("had", ["to", v.en]) if c.modal_past else ("must", [v.en])
        # want
        if c.negated or question:
            do = "did" if c.modal_past else ("does" if third else "do")
            return do, [*neg, "want", "to", v.en]
        return None, ["wanted" if c.modal_past else ("wants" if third else "want"), "to", v.en]
    if c.negated or question:
        do = "did" if c.tense == "past" else ("does" if third else "do")
        return do, [*neg, v.en]
    if c.tense == "past":
        return None, [v.en_past]
    return None, [v.en_3sg if third else v.en]


def english_clause(c: Clause, question: bool = False) -> str:
    aux, rest = _english_verb(c, question)
    if question and c.modal == "must" and c.modal_past:
        raise ValueError("'had to' questions are not generated")
    if c.modal == "must" and c.modal_past and aux == "had":
        aux, rest = None, ["had", *rest]
    mid = [c.time.en] if c.time is not None and c.time.en_pos == "mid" and not c.front_time else []
    end = [c.time.en] if c.time is not None and c.time.en_pos == "end" and not c.front_time else []
    subject = c.subject.english()
    complements = []
    if c.verb is None:
        complements.append(("very " if c.predicate_very else "") + c.predicate.en)
    if c.dat_obj is not None and c.verb.frame == "ditr":
        complements.append(c.dat_obj.english())
    if c.acc_obj is not None:
        complements.append(c.acc_obj.english())
    if c.dat_obj is not None and c.verb.frame == "dat":
        complements.append(c.dat_obj.english())
    # English puts direction/location before the companion: reverse the German order
    phrases = [p.en for p in reversed(c.phrases)]
    if question:
        words = [aux, subject, *mid, *rest]
    elif aux is not None:
        # mid-position adverbs follow the first auxiliary ("will soon see", "does not ...")
        words = [subject, aux, *mid, *rest] if not c.negated else [subject, aux, *rest]
    else:
        words = [subject, *mid, *rest]
    words = [*words, *complements, *phrases, *end]
    if c.front_time and not question:
        words = [c.time.en, *words]
    return " ".join(words)


# ----------------------------------------------------------------------------- sentences


def _finish(text: str, mark: str) -> str:
    text = text.rstrip(",")  # a relative clause that ends the sentence leaves a comma
    return text[0].upper() + text[1:] + mark


def sentence_pair(rng: random.Random) -> tuple[str, str]:
    r = rng.random()
    if r < 0.5:
        c = clause(rng)
        if c.negated and c.time is not None and c.time.en_pos == "mid":
            c = replace(c, time=None, front_time=False)
        s = c.subject
        if s.noun is not None and rng.random() < 0.15:
            c = replace(c, subject=replace(s, relative=relative_clause(rng, s)))
        return _finish(english_clause(c), "."), _finish(german_main(c), ".")
    if r < 0.6:
        c = clause(rng, allow_front=False)
        c = replace(c, negated=False, time=None)
        if c.modal == "must":
            c = replace(c, modal="can")
        return _finish(english_clause(c, question=True), "?"), _finish(german_question(c), "?")
    if r < 0.72:
        main = clause(rng)
        sub = clause(rng, allow_front=False)
        main, sub = _no_mid_negation(main), _no_mid_negation(sub)
        conj_en, conj_de, _ = pick(rng, CONJUNCTIONS)
        conj_en, conj_de = _past_when(conj_en, conj_de, sub)
        en = f"{english_clause(main)} {conj_en} {english_clause(sub)}"
        de = f"{german_main(main)}, {german_subordinate(sub, conj_de)}"
        return _finish(en, "."), _finish(de, ".")
    if r < 0.84:
        fronted = tuple(c for c in CONJUNCTIONS if c[2])
        conj_en, conj_de, _ = pick(rng, fronted)
        sub = _no_mid_negation(clause(rng, allow_front=False))
        main = _no_mid_negation(clause(rng, allow_front=False))
        conj_en, conj_de = _past_when(conj_en, conj_de, sub)
        en = f"{conj_en} {english_clause(sub)}, {english_clause(main)}"
        de = german_main(main, front=german_subordinate(sub, conj_de) + ",")
        return _finish(en, "."), _finish(de, ".")
    if r < 0.94:
        say_en, say_en3, say_past, say_de, say_part = pick(rng, SAY_VERBS)
        speaker = subject_phrase(rng, "p")
        inner = _no_mid_negation(clause(rng, allow_front=False))
        person = speaker.person
        if rng.random() < 0.7:
            verb_en = say_en3 if person == "3sg" else say_en
            de_main = f"{speaker.german('nom')} {say_de[g.PERSON_INDEX[person]]}"
        else:
            verb_en = say_past
            de_main = f"{speaker.german('nom')} {g.haben(person)} {say_part}"
        en = f"{speaker.english()} {verb_en} that {english_clause(inner)}"
        de = f"{de_main}, {german_subordinate(inner, 'dass')}"
        return _finish(en, "."), _finish(de, ".")
    # "there is/are" + location
    thing = noun_phrase(rng, pick(rng, ("a", "o", "f", "v", "p")))
    if not thing.plural:
        thing = replace(thing, det="ein", det_en="a", det_de="")
    elif thing.det not in ("num", "einig", "viel"):
        en_num, de_num = pick(rng, NUMBERS)
        thing = replace(thing, det="num", det_en=en_num, det_de=de_num)
    prep_en, prep_de, cats = pick(rng, LOCATION_PREPS)
    place = _prep_phrase(rng, prep_en, prep_de, cats, "dat")
    past = rng.random() < 0.3
    be = ("were" if thing.plural else "was") if past else ("are" if thing.plural else "is")
    en = f"there {be} {thing.english()} {place.en}"
    de = f"es {'gab' if past else 'gibt'} {thing.german('acc')} {place.de}"
    return _finish(en, "."), _finish(de, ".")


def _no_mid_negation(c: Clause) -> Clause:
    if c.negated and c.time is not None and c.time.en_pos == "mid":
        return replace(c, time=None, front_time=False)
    return c


def _past_when(conj_en: str, conj_de: str, sub: Clause) -> tuple[str, str]:
    if conj_en == "when" and sub.tense == "past":
        return PAST_WHEN
    return conj_en, conj_de


def generate_pairs(n: int, seed: int) -> list[tuple[str, str]]:
    """`n` distinct (English, German) pairs; distinct English sides, in generation order."""
    rng = random.Random(seed)
    seen: set[str] = set()  # membership only; never iterated
    pairs: list[tuple[str, str]] = []
    attempts = 0
    while len(pairs) < n:
        attempts += 1
        if attempts > 20 * n + 1000:
            raise RuntimeError(f"could not generate {n} distinct sentences")
        en, de = sentence_pair(rng)
        if en not in seen:
            seen.add(en)
            pairs.append((en, de))
    return pairs
