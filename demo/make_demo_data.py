"""Write the demo's synthetic NLI corpus in the MNLI layout, and the vocabulary that covers it.

    python -m demo.make_demo_data --output_dir DIR [--seed 0] [--n_train 20000] [--n_dev 2000]

writes DIR/MNLI/{train,dev_matched,dev_mismatched}.tsv and DIR/vocab.txt.

Every label is computed, never guessed. A word names a set of atoms (demo_lexicon.py holds the
trees: a poodle is a dog, napping is sleeping, the kitchen is in the house), a sentence makes
claims about its referents (kind, number, adjectives, activity, place, time, what one does to
another), and the hypothesis of a pair is judged claim by claim against the premise:
  entailment     every claim follows (the premise's set lies inside the claim's set),
  contradiction  some claim is excluded (the two sets are disjoint),
  neutral        otherwise.
As in SNLI and MNLI, the hypothesis talks about the premise's scene: "the cat" in the hypothesis
is the poodle of the premise, so it contradicts it. Quantified sentences ("all / some / most /
no / not all dogs in the park are sleeping") are judged by monotonicity rules instead, see
quantified_label. Each premise gets one hypothesis per label (as MNLI's writers did), drawn by
random edits until the computed label is the wanted one; then annotation noise is added: about
9% of train labels are flipped, and dev gold labels are the majority of five simulated annotators.
"""

import argparse
import json
import os
import random
import re
import sys
from dataclasses import dataclass, replace

from demo import demo_lexicon as lex
from distillation import atomic_write_text
from utils_glue import MNLI_DEV_COLUMNS, MNLI_TRAIN_COLUMNS

ENTAILMENT, NEUTRAL, CONTRADICTION = "entailment", "neutral", "contradiction"
LABELS = (ENTAILMENT, NEUTRAL, CONTRADICTION)  # the order the generator draws them in
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
TRAIN_HEADER, DEV_HEADER = list(MNLI_TRAIN_COLUMNS), list(MNLI_DEV_COLUMNS)
DEMO_CONFIGS = ("bert_config_teacher.json", "bert_config_student.json")  # in demo/jsons/

TRAIN_NOISE = 0.09  # share of train labels replaced by another label
ANNOTATOR_ERROR = 0.10  # chance that one simulated dev annotator picks a wrong label
PREMISE_TOKENS = (8, 20)  # allowed premise length in words and punctuation marks
HYPOTHESIS_TOKENS = (5, 14)
MAX_TRIES = 60  # random edits tried per wanted label before giving the label up
EDIT_CHANCES = (0.15, 0.3, 0.5)  # per hypothesis, the chance that each part of it is edited
SECOND_CLAUSE_CHANCE = 0.4  # premises of scenes and objects that have a second clause

OTHER = "<other>"  # an atom no word names: "not sleeping" must not cover everything


# ----------------------------------------------------------------------------------------------
# Words as sets


class WordSets:
    """Words that each name a set of atoms inside one universe (which also holds OTHER)."""

    def __init__(self, sets, universe=None):
        self.sets = {word: frozenset(atoms) for word, atoms in sets.items()}
        self.universe = universe or frozenset().union(*self.sets.values()) | {OTHER}

    def __getitem__(self, word):
        return self.sets[word]

    def complement(self, word):
        return self.universe - self.sets[word]

    def above(self, word, candidates):
        """Candidates naming a strictly larger set (hypernyms)."""
        return [w for w in candidates if self.sets[word] < self.sets[w]]

    def below(self, word, candidates):
        return [w for w in candidates if self.sets[w] < self.sets[word]]

    def apart(self, word, candidates):
        """Candidates naming a set disjoint from the word's (siblings, exclusive activities)."""
        return [w for w in candidates if not self.sets[w] & self.sets[word]]


def tree_sets(parents):
    """{word: parent} -> {word: atoms}: each word is an atom of its own (the members that none of
    its listed children cover) plus all atoms of its children."""
    children = {word: [] for word in parents}
    for word, parent in parents.items():
        if parent is not None:
            children[parent].append(word)

    def atoms(word):
        return {word}.union(*(atoms(child) for child in children[word]))

    return {word: atoms(word) for word in parents}


def top_of(word, parents):
    while parents[word] is not None:
        word = parents[word]
    return word


class World:
    """The word sets shared by every split, and the words one split may use.

    mismatched=False leaves out lex.MISMATCHED_ONLY, so those words occur only in
    dev_mismatched.tsv; the sets (and so the labels) are the same for both.
    """

    def __init__(self, mismatched):
        usable = (lambda word: True) if mismatched else (lambda word: word not in lex.MISMATCHED_ONLY)
        noun_parents = {noun: parent for noun, (parent, _) in lex.ANIMATE_NOUNS.items()}
        object_sets = {noun: {noun} for noun in lex.OBJECTS}
        self.noun_parents = noun_parents
        self.plurals = {noun: plural for noun, (_, plural) in lex.ANIMATE_NOUNS.items()}
        self.plurals.update({noun: noun + "s" for noun in lex.OBJECTS})
        self.kinds = WordSets({**tree_sets(noun_parents), **object_sets})
        # nouns by top kind, the top word first
        self.nouns = {
            top: [n for n in noun_parents if usable(n) and top_of(n, noun_parents) == top]
            for top in ("animal", "person")
        }

        activity_parents = {word: parent for word, (parent, _) in lex.ACTIVITIES.items()}
        activity_sets = tree_sets(activity_parents)
        activities = WordSets(activity_sets)
        asleep = activity_sets[lex.ASLEEP_ACTIVITY]
        self.activities = WordSets(
            {**activity_sets, "asleep": asleep, "awake": activities.universe - asleep}, activities.universe
        )
        self.doings = {
            top: [w for w, (_, tops) in lex.ACTIVITIES.items() if usable(w) and top in tops]
            for top in ("animal", "person")
        }

        self.places = WordSets(tree_sets({p: parent for p, (parent, _) in lex.PLACES.items()}))
        self.place_words = [p for p in lex.PLACES if usable(p)]
        self.times = WordSets({t: {t} for t in lex.TIMES})
        self.time_words = [t for t in lex.TIMES if usable(t)]
        self.adjectives = {
            dim: WordSets({w: {w} for w in words})
            for dims in lex.ADJECTIVES.values()
            for dim, words in dims.items()
        }
        self.adjective_dims = {
            top: {dim: [w for w in words if usable(w)] for dim, words in dims.items()}
            for top, dims in lex.ADJECTIVES.items()
        }
        # one dimension per state kind, with no OTHER: a door that is not open is shut or locked
        self.states = {
            kind: WordSets(words, frozenset().union(*map(frozenset, words.values())))
            for kind, words in lex.STATE_KINDS.items()
        }
        self.objects = [o for o in lex.OBJECTS if usable(o)]
        self.verbs = WordSets(tree_sets({v: parent for v, (_, parent, _) in lex.TRANSITIVE_VERBS.items()}))
        self.verb_words = [v for v in lex.TRANSITIVE_VERBS if usable(v)]
        self.numerals = {n: word for n, word in lex.NUMERALS.items() if usable(word)}
        self.counts = frozenset(range(1, 1 + max(lex.NUMERALS)))

    def dim_sets(self, dim):
        """The WordSets that a claim of this dimension draws its words from."""
        if dim in self.adjectives:
            return self.adjectives[dim]
        if dim in self.states:
            return self.states[dim]
        return {
            "kind": self.kinds,
            "activity": self.activities,
            "place": self.places,
            "time": self.times,
            "event": self.verbs,
        }[dim]

    def universe(self, dim):
        return self.counts if dim == "count" else self.dim_sets(dim).universe

    def top(self, noun):
        return top_of(noun, self.noun_parents) if noun in self.noun_parents else "object"


# ----------------------------------------------------------------------------------------------
# Sentences as claims


@dataclass(frozen=True)
class NounPhrase:
    """A mention of referent `ref`. determiner: 'the', 'a', 'some', 'the_plural' or a numeral."""

    ref: int
    noun: str
    determiner: str = "the"
    adjectives: tuple = ()  # ((dim, word), ...) in the order they are said

    @property
    def plural(self):
        return self.determiner not in ("the", "a")


@dataclass(frozen=True)
class Clause:
    """'the dog is (not) sleeping in the park this morning'; predicate None: 'there is a dog in
    the park'. Objects take a state ('the door is locked') instead of an activity."""

    subject: NounPhrase
    predicate: str = None
    positive: bool = True
    place: str = None
    time: str = None


@dataclass(frozen=True)
class Event:
    """'the man is (not) chasing the dog', or in the passive 'the dog is being chased by the man'."""

    agent: NounPhrase
    verb: str
    patient: NounPhrase
    positive: bool = True
    passive: bool = False
    place: str = None
    time: str = None


@dataclass(frozen=True)
class Quantified:
    """'<quantifier> <noun>s [<modifier>] are (not) <predicate>' in canonical form: quantifier is
    'all', 'some' or 'most'; 'no dogs are X' is all(dogs, not X), 'not all dogs are X' is
    some(dogs, not X). modifier: None or (dim, word), a place or an adjective."""

    quantifier: str
    noun: str
    modifier: tuple
    predicate: str
    positive: bool
    wording: int = 0  # which of the equivalent wordings to say


def count_set(noun_phrase, world, in_premise):
    """The numbers a determiner allows: in a premise 'a dog' is one dog; in a hypothesis it only
    says there is at least one. Plurals without a numeral mean two or more."""
    determiner = noun_phrase.determiner
    if determiner == "the" or (determiner == "a" and in_premise):
        return frozenset({1})
    if determiner == "a":
        return world.counts
    if determiner in ("some", "the_plural"):
        return world.counts - {1}
    return frozenset({number for number, word in lex.NUMERALS.items() if word == determiner})


def noun_phrase_claims(noun_phrase, world, in_premise):
    ref = noun_phrase.ref
    claims = [
        ((ref, "kind"), world.kinds[noun_phrase.noun]),
        ((ref, "count"), count_set(noun_phrase, world, in_premise)),
    ]
    claims += [((ref, dim), world.adjectives[dim][word]) for dim, word in noun_phrase.adjectives]
    return claims


def predicate_set(sets, word, positive):
    return sets[word] if positive else sets.complement(word)


def sentence_claims(sentence, world, in_premise):
    """[((referent, dim), atoms), ...]: what a Clause or Event says, one claim per fact."""
    if isinstance(sentence, Clause):
        referents = [sentence.subject.ref]
        claims = noun_phrase_claims(sentence.subject, world, in_premise)
        if sentence.predicate is not None:
            noun = sentence.subject.noun
            dim = lex.OBJECTS[noun][0] if world.top(noun) == "object" else "activity"
            claims.append(
                (
                    (sentence.subject.ref, dim),
                    predicate_set(world.dim_sets(dim), sentence.predicate, sentence.positive),
                )
            )
    else:
        referents = [sentence.agent.ref, sentence.patient.ref]
        claims = noun_phrase_claims(sentence.agent, world, in_premise) + noun_phrase_claims(
            sentence.patient, world, in_premise
        )
        claims.append(
            (
                ((sentence.agent.ref, sentence.patient.ref), "event"),
                predicate_set(world.verbs, sentence.verb, sentence.positive),
            )
        )
    for ref in referents:
        if sentence.place is not None:
            claims.append(((ref, "place"), world.places[sentence.place]))
        if sentence.time is not None:
            claims.append(((ref, "time"), world.times[sentence.time]))
    return claims


def claim_status(premise_facts, key, atoms, world):
    """Entailment if what the premise allows lies inside the claim, contradiction if the two are
    disjoint, else neutral. A fact the premise does not state allows the whole universe."""
    allowed = premise_facts.get(key, world.universe(key[1]))
    if allowed <= atoms:
        return ENTAILMENT
    if not allowed & atoms:
        return CONTRADICTION
    return NEUTRAL


def conjunction_label(statuses):
    if CONTRADICTION in statuses:
        return CONTRADICTION
    return ENTAILMENT if all(s == ENTAILMENT for s in statuses) else NEUTRAL


def negated_label(label):
    """The label of 'it is not true that H' from the label of H."""
    return {ENTAILMENT: CONTRADICTION, CONTRADICTION: ENTAILMENT, NEUTRAL: NEUTRAL}[label]


def premise_facts(sentences, world):
    facts = {}
    for sentence in sentences:
        facts.update(sentence_claims(sentence, world, in_premise=True))
    return facts


def scene_label(premise_sentences, hypothesis, world, negated=False):
    """The label of a Clause / Event hypothesis about the scene of the premise's sentences."""
    facts = premise_facts(premise_sentences, world)
    statuses = [
        claim_status(facts, key, atoms, world)
        for key, atoms in sentence_claims(hypothesis, world, in_premise=False)
    ]
    label = conjunction_label(statuses)
    return negated_label(label) if negated else label


# ----------------------------------------------------------------------------------------------
# Quantified sentences: monotonicity


def restrictor(sentence, world):
    """The set a quantifier ranges over, as {dim: atoms} (a product; a missing dim is 'any')."""
    sets = {"kind": world.kinds[sentence.noun]}
    if sentence.modifier is not None:
        dim, word = sentence.modifier
        sets[dim] = world.dim_sets(dim)[word]
    return sets


def product_within(inner, outer, world):
    """Is the product set `inner` inside `outer`? (Both are non-empty: every dim has a word.)"""
    return all(
        inner.get(dim, world.universe(dim)) <= outer.get(dim, world.universe(dim))
        for dim in set(inner) | set(outer)
    )


def canonical(sentence, world):
    """(quantifier, restrictor, predicate atoms)."""
    return (
        sentence.quantifier,
        restrictor(sentence, world),
        predicate_set(world.activities, sentence.predicate, sentence.positive),
    )


def quantified_entails(premise, hypothesis, world):
    """Does premise = (q, R, A) entail hypothesis = (q', R', A')? Rules, with every restrictor
    taken to be non-empty (the scene has the dogs it talks about):
      all(R, A)  => all(R', A')  when R' within R and A within A'      (all: down, up)
      all(R, A)  => most(R', A') when R' within R and A within A'
      all(R, A)  => some(R', A') when R, R' are nested and A within A'
      most(R, A) => most(R, A')  when A within A'                      (most: up in A only)
      most/some(R, A) => some(R', A') when R within R' and A within A' (some: up, up)
    """
    q, r, a = premise
    q2, r2, a2 = hypothesis
    if not a <= a2:
        return False
    r_in_r2, r2_in_r = product_within(r, r2, world), product_within(r2, r, world)
    if q == "all":
        return r2_in_r if q2 in ("all", "most") else (r_in_r2 or r2_in_r)
    if q2 == "all":
        return False
    if q2 == "most":
        return q == "most" and r_in_r2 and r2_in_r
    return r_in_r2


def quantified_contradicts(premise, hypothesis, world):
    """Premise entails the negation of hypothesis: not all(R, A) = some(R, not A), not some(R, A)
    = all(R, not A); most(R, A) is excluded by all(R, not A) and by most(R, B), B apart from A."""
    q, r, a = premise
    q2, r2, a2 = hypothesis
    complement = world.activities.universe - a2
    if q2 == "all":
        return quantified_entails(premise, ("some", r2, complement), world)
    if quantified_entails(premise, ("all", r2, complement), world):
        return True
    return (
        q2 == "most"
        and q == "most"
        and not a & a2
        and product_within(r, r2, world)
        and product_within(r2, r, world)
    )


def quantified_label(premise, hypothesis, world):
    """The label of two Quantified sentences (contradiction checked both ways)."""
    p, h = canonical(premise, world), canonical(hypothesis, world)
    if quantified_entails(p, h, world):
        return ENTAILMENT
    if quantified_contradicts(p, h, world) or quantified_contradicts(h, p, world):
        return CONTRADICTION
    return NEUTRAL


# ----------------------------------------------------------------------------------------------
# Saying sentences


@dataclass(frozen=True)
class Style:
    """How a genre speaks: tense and the openers/tails that leave a sentence's claims alone."""

    genre: str
    past: bool = False
    spoken: bool = False


GENRE_STYLES = {
    "fiction": Style("fiction"),
    "travel": Style("travel"),
    "government": Style("government"),
    "letters": Style("letters", past=True),
    "telephone": Style("telephone", spoken=True),
    "research": Style("research", past=True),
}
# Which kinds of premise each genre writes: (Clause scene, Event, object Clause, Quantified).
GENRE_FAMILIES = {
    "fiction": {"scene": 0.4, "event": 0.35, "object": 0.25},
    "travel": {"scene": 0.4, "event": 0.15, "object": 0.25, "quantified": 0.2},
    "government": {"scene": 0.2, "event": 0.1, "object": 0.15, "quantified": 0.55},
    "letters": {"scene": 0.4, "event": 0.3, "object": 0.3},
    "telephone": {"scene": 0.4, "event": 0.3, "object": 0.1, "quantified": 0.2},
    "research": {"scene": 0.25, "event": 0.1, "quantified": 0.65},
}


def be(plural, style):
    if style.past:
        return "were" if plural else "was"
    return "are" if plural else "is"


def with_article(words):
    """'a' + words, as 'an' before a vowel."""
    return ("an " if words[0] in "aeiou" else "a ") + words


ADJECTIVE_ORDER = {"age": 0, "height": 1, "size": 0, "color": 1}  # 'big brown dog', 'young tall man'


def say_noun_phrase(noun_phrase, world):
    adjectives = sorted(noun_phrase.adjectives, key=lambda item: ADJECTIVE_ORDER[item[0]])
    words = " ".join(
        [word for _, word in adjectives]
        + [world.plurals[noun_phrase.noun] if noun_phrase.plural else noun_phrase.noun]
    )
    if noun_phrase.determiner == "a":
        return with_article(words)
    determiner = "the" if noun_phrase.determiner == "the_plural" else noun_phrase.determiner
    return f"{determiner} {words}"


def say_place(place):
    return f"{lex.PLACES[place][1]} the {place}"


def say_clause(clause, world, style, fronted):
    """One clause without final punctuation. A negated clause fronts its place and drops nothing
    else: 'in the park , the dog is not sleeping' keeps the negation off the place."""
    subject = clause.subject
    verb = be(subject.plural, style)
    if clause.predicate is None:  # existence: 'there is a dog in the park'
        if subject.determiner in ("the", "the_plural"):
            return f"{say_noun_phrase(subject, world)} {verb} {say_place(clause.place)}"
        return f"there {verb} {say_noun_phrase(subject, world)} {say_place(clause.place)}"
    negation = "" if clause.positive else "not "
    body = f"{say_noun_phrase(subject, world)} {verb} {negation}{clause.predicate}"
    time = f" {clause.time}" if clause.time else ""
    if clause.place and (fronted or not clause.positive):
        return f"{say_place(clause.place)} , {body}{time}"
    place = f" {say_place(clause.place)}" if clause.place else ""
    return f"{body}{place}{time}"


def say_event(event, world, style, fronted):
    verb = be(False, style)
    negation = "" if event.positive else "not "
    if event.passive:
        participle = lex.TRANSITIVE_VERBS[event.verb][0]
        body = (
            f"{say_noun_phrase(event.patient, world)} {verb} {negation}being {participle} "
            f"by {say_noun_phrase(event.agent, world)}"
        )
    else:
        body = (
            f"{say_noun_phrase(event.agent, world)} {verb} {negation}{event.verb} "
            f"{say_noun_phrase(event.patient, world)}"
        )
    time = f" {event.time}" if event.time else ""
    if event.place and (fronted or not event.positive):
        return f"{say_place(event.place)} , {body}{time}"
    place = f" {say_place(event.place)}" if event.place else ""
    return f"{body}{place}{time}"


QUANTIFIED_WORDINGS = {  # (quantifier, positive) -> templates; {pred} is always the positive word
    ("all", True): [
        "all {pl} {be_pl} {pred}",
        "all of the {pl} {be_pl} {pred}",
        "every {sg} {be_sg} {pred}",
        "each of the {pl} {be_sg} {pred}",
    ],
    ("all", False): ["no {pl} {be_pl} {pred}", "no {sg} {be_sg} {pred}", "none of the {pl} {be_pl} {pred}"],
    ("some", True): [
        "some {pl} {be_pl} {pred}",
        "some of the {pl} {be_pl} {pred}",
        "at least one {sg} {be_sg} {pred}",
    ],
    ("some", False): [
        "some {pl} {be_pl} not {pred}",
        "not all {pl} {be_pl} {pred}",
        "not every {sg} {be_sg} {pred}",
    ],
    ("most", True): ["most {pl} {be_pl} {pred}", "most of the {pl} {be_pl} {pred}"],
    ("most", False): ["most {pl} {be_pl} not {pred}", "most of the {pl} {be_pl} not {pred}"],
}


def say_quantified(sentence, world, style):
    singular, plural = sentence.noun, world.plurals[sentence.noun]
    if sentence.modifier is not None:
        dim, word = sentence.modifier
        if dim == "place":
            singular, plural = f"{singular} {say_place(word)}", f"{plural} {say_place(word)}"
        else:
            singular, plural = f"{word} {singular}", f"{word} {plural}"
    wordings = QUANTIFIED_WORDINGS[(sentence.quantifier, sentence.positive)]
    template = wordings[sentence.wording % len(wordings)]
    return template.format(
        sg=singular, pl=plural, pred=sentence.predicate, be_sg=be(False, style), be_pl=be(True, style)
    )


def say(sentence, world, style, fronted=False):
    if isinstance(sentence, Quantified):
        return say_quantified(sentence, world, style)
    if isinstance(sentence, Event):
        return say_event(sentence, world, style, fronted)
    return say_clause(sentence, world, style, fronted)


def basic_tokens(text):
    """Lower-cased words and punctuation marks, split as BERT's basic tokenizer splits them."""
    return re.findall(r"\w+|[^\w\s]", text.lower())


def written_tokens(spoken):
    """'i saw that the dog is sleeping .' -> ['I', 'saw', ..., '.']: capitalised as written."""
    tokens = ["I" if token == "i" else token for token in spoken.split()]
    return [tokens[0][0].upper() + tokens[0][1:]] + tokens[1:]


def written(spoken):
    """'the dog is sleeping .' -> 'The dog is sleeping.' (MNLI's sentence columns are plain text)."""
    return re.sub(r" ([,.?])", r"\1", " ".join(written_tokens(spoken)))


# ----------------------------------------------------------------------------------------------
# Drawing premises


@dataclass(frozen=True)
class Premise:
    """One or two sentences of one scene (or one Quantified sentence), and how they were said."""

    sentences: tuple
    text: str


def draw_adjectives(rng, world, top, chance):
    dims = world.adjective_dims.get(top, {})
    return tuple((dim, rng.choice(words)) for dim, words in dims.items() if rng.random() < chance)


def draw_animate(rng, world, top, ref, plural_chance=0.35):
    noun = rng.choice(world.nouns[top][1:])  # a premise names no bare 'animal' or 'person'
    if rng.random() < plural_chance:
        determiner = rng.choice(list(world.numerals.values()))
    else:
        determiner = rng.choice(["the", "the", "a"])
    return NounPhrase(ref, noun, determiner, draw_adjectives(rng, world, top, 0.4))


def draw_scene_clause(rng, world, ref, top):
    subject = draw_animate(rng, world, top, ref)
    if rng.random() < 0.15:
        predicate = rng.choice(["asleep", "awake"])
    else:
        predicate = rng.choice(world.doings[top])
    positive = rng.random() < 0.8
    place = rng.choice(world.place_words) if rng.random() < 0.6 else None
    time = rng.choice(world.time_words) if positive and rng.random() < 0.35 else None
    return Clause(subject, predicate, positive, place, time)


def draw_object_clause(rng, world, ref):
    noun = rng.choice(world.objects)
    kind, places = lex.OBJECTS[noun]
    places = [p for p in places if p in world.place_words]
    positive = rng.random() < 0.8
    return Clause(
        NounPhrase(ref, noun),
        rng.choice(list(lex.STATE_KINDS[kind])),
        positive,
        rng.choice(places) if rng.random() < 0.7 else None,
        rng.choice(world.time_words) if positive and rng.random() < 0.3 else None,
    )


def verbs_for(world, agent_top, patient_top):
    return [v for v in world.verb_words if (agent_top, patient_top) in lex.TRANSITIVE_VERBS[v][2]]


def draw_event(rng, world):
    agent_top = rng.choice(["animal", "person"])
    patient_top = "person" if agent_top == "animal" else "animal"
    agent, patient = (
        NounPhrase(
            ref,
            rng.choice(world.nouns[top][1:]),
            rng.choice(["the", "a"]),
            draw_adjectives(rng, world, top, 0.25),
        )
        for ref, top in ((0, agent_top), (1, patient_top))
    )
    positive = rng.random() < 0.85
    return Event(
        agent,
        rng.choice(verbs_for(world, agent_top, patient_top)),
        patient,
        positive,
        passive=rng.random() < 0.3,
        place=rng.choice(world.place_words) if rng.random() < 0.6 else None,
        time=rng.choice(world.time_words) if positive and rng.random() < 0.3 else None,
    )


def draw_quantified(rng, world):
    top = rng.choice(["animal", "person"])
    noun = rng.choice(world.nouns[top])
    roll = rng.random()
    if roll < 0.35:
        modifier = ("place", rng.choice(world.place_words))
    elif roll < 0.6:
        dim, words = rng.choice(sorted(world.adjective_dims[top].items()))
        modifier = (dim, rng.choice(words))
    else:
        modifier = None
    predicate = rng.choice(world.doings[top] + ["asleep", "awake"])
    return Quantified(
        rng.choice(["all", "some", "most"]), noun, modifier, predicate, rng.random() < 0.65, rng.randrange(12)
    )


def draw_main_sentence(rng, world, family):
    if family == "scene":
        return draw_scene_clause(rng, world, 0, rng.choice(["animal", "person"]))
    if family == "object":
        return draw_object_clause(rng, world, 0)
    if family == "event":
        return draw_event(rng, world)
    return draw_quantified(rng, world)


def draw_second_clause(rng, world, first):
    """A clause about another referent, of another kind than the first, so that every noun of a
    hypothesis points at one referent only."""
    if world.top(first.subject.noun) == "object" or rng.random() < 0.6:
        top = "person" if world.top(first.subject.noun) == "animal" else "animal"
        return draw_scene_clause(rng, world, 1, top)
    return draw_object_clause(rng, world, 1)


def say_premise(sentences, world, style, rng):
    parts = [say(s, world, style, fronted=rng.random() < 0.2) for s in sentences]
    text = parts[0] if len(parts) == 1 else f"{parts[0]} {rng.choice(lex.CLAUSE_JOINS)} {parts[1]}"
    if rng.random() < (0.6 if style.genre in lex.MISMATCHED_GENRES else 0.2):
        text = f"{rng.choice(lex.OPENERS[style.genre])} {text}"
    if style.spoken and rng.random() < 0.4:
        return f"{text} {rng.choice(lex.TELEPHONE_TAILS)}"
    return f"{text} ."


def draw_premise(rng, world, style):
    families = GENRE_FAMILIES[style.genre]
    while True:
        family = rng.choices(list(families), weights=list(families.values()))[0]
        sentences = [draw_main_sentence(rng, world, family)]
        if family in ("scene", "object") and rng.random() < SECOND_CLAUSE_CHANCE:
            sentences.append(draw_second_clause(rng, world, sentences[0]))
        text = say_premise(sentences, world, style, rng)
        if PREMISE_TOKENS[0] <= len(basic_tokens(text)) <= PREMISE_TOKENS[1]:
            return Premise(tuple(sentences), text)


# ----------------------------------------------------------------------------------------------
# Editing a premise sentence into a hypothesis


def edited_noun(rng, world, noun):
    """A hypernym, a hyponym or a disjoint noun of the same top kind (or the noun itself)."""
    same_top = world.nouns[world.top(noun)]
    options = [
        world.kinds.above(noun, same_top),
        world.kinds.below(noun, same_top),
        world.kinds.apart(noun, same_top),
    ]
    options = [words for words in options if words]
    return rng.choice(rng.choice(options)) if options else noun


def edited_word(rng, sets, word, candidates):
    options = [sets.above(word, candidates), sets.below(word, candidates), sets.apart(word, candidates)]
    options = [words for words in options if words]
    return rng.choice(rng.choice(options)) if options else word


def edited_determiner(rng, world, determiner):
    """Keep the number, say it another way, or change it."""
    numerals = list(world.numerals.values())
    if determiner in ("the", "a"):
        return rng.choice(["the", "a", rng.choice(numerals)])
    return rng.choice([determiner, determiner, "the_plural", "some", "a", rng.choice(numerals)])


def edited_adjectives(rng, world, noun_phrase):
    dims = world.adjective_dims.get(world.top(noun_phrase.noun), {})
    kept = [(dim, word) for dim, word in noun_phrase.adjectives if rng.random() < 0.7]
    if dims and rng.random() < 0.25:  # say a value (maybe another one) for some dimension
        dim = rng.choice(sorted(dims))
        kept = [(d, w) for d, w in kept if d != dim] + [(dim, rng.choice(dims[dim]))]
    return tuple(kept)


def edited_noun_phrase(rng, world, noun_phrase, edit_chance, edit_number=True):
    noun, determiner = noun_phrase.noun, noun_phrase.determiner
    if rng.random() < edit_chance:
        noun = edited_noun(rng, world, noun)
    if edit_number and rng.random() < edit_chance:
        determiner = edited_determiner(rng, world, determiner)
    return replace(
        noun_phrase, noun=noun, determiner=determiner, adjectives=edited_adjectives(rng, world, noun_phrase)
    )


def edited_place_time(rng, world, place, time, edit_chance):
    if place is None:
        place = rng.choice(world.place_words) if rng.random() < edit_chance else None
    elif rng.random() < 0.45:
        place = None
    elif rng.random() < edit_chance:
        place = edited_word(rng, world.places, place, world.place_words)
    if time is None:
        time = rng.choice(world.time_words) if rng.random() < edit_chance / 3 else None
    elif rng.random() < 0.45:
        time = None
    elif rng.random() < edit_chance:
        time = rng.choice(world.time_words)
    return place, time


def edited_clause(rng, world, clause, edit_chance):
    subject = clause.subject
    if world.top(subject.noun) == "object":
        kind = lex.OBJECTS[subject.noun][0]
        predicate = clause.predicate
        if rng.random() < edit_chance:
            predicate = rng.choice(list(lex.STATE_KINDS[kind]))
    else:
        subject = edited_noun_phrase(rng, world, subject, edit_chance)
        predicate = clause.predicate
        if predicate is not None and rng.random() < edit_chance:
            doings = world.doings[world.top(subject.noun)] + ["asleep", "awake"]
            predicate = edited_word(rng, world.activities, predicate, doings)
    positive = clause.positive != (rng.random() < edit_chance / 2)
    place, time = edited_place_time(rng, world, clause.place, clause.time, edit_chance)
    if place is not None and world.top(subject.noun) != "object" and rng.random() < 0.12:
        predicate, positive = None, True  # 'there is a dog in the park'
    if not positive:
        time = None  # keep the negation's scope plain: no time after a negated verb
    return Clause(subject, predicate, positive, place, time)


def edited_event(rng, world, event, edit_chance):
    """Edit an Event; with roles swapped ('the dog is chasing the man') or, now and then, turned
    into a clause about one of its referents ('the dog is in the park')."""
    agent = edited_noun_phrase(rng, world, event.agent, edit_chance, edit_number=False)
    patient = edited_noun_phrase(rng, world, event.patient, edit_chance, edit_number=False)
    verb = event.verb
    if rng.random() < edit_chance:
        verb = edited_word(
            rng, world.verbs, verb, verbs_for(world, world.top(agent.noun), world.top(patient.noun))
        )
    swappable = (world.top(patient.noun), world.top(agent.noun)) in lex.TRANSITIVE_VERBS[verb][2]
    if swappable and rng.random() < edit_chance / 2:
        agent, patient = patient, agent
    place, time = edited_place_time(rng, world, event.place, event.time, edit_chance)
    if place is not None and rng.random() < 0.1:
        return Clause(rng.choice([agent, patient]), None, True, place, None)
    positive = event.positive != (rng.random() < edit_chance / 2)
    return Event(agent, verb, patient, positive, rng.random() < 0.35, place, time if positive else None)


def edited_quantified(rng, world, sentence, edit_chance):
    noun, modifier, predicate = sentence.noun, sentence.modifier, sentence.predicate
    if rng.random() < edit_chance:
        noun = edited_noun(rng, world, noun)
    if modifier is not None and rng.random() < edit_chance:
        modifier = None
    elif modifier is None and rng.random() < edit_chance / 2:
        modifier = ("place", rng.choice(world.place_words))
    top = world.top(noun)
    if modifier is not None and modifier[0] not in ("place", *world.adjective_dims[top]):
        modifier = None  # an adjective of the other top kind ('tall dogs')
    if rng.random() < edit_chance:
        predicate = edited_word(rng, world.activities, predicate, world.doings[top] + ["asleep", "awake"])
    quantifier = rng.choice(["all", "some", "most"]) if rng.random() < 0.6 else sentence.quantifier
    positive = sentence.positive != (rng.random() < edit_chance)
    return Quantified(quantifier, noun, modifier, predicate, positive, rng.randrange(12))


@dataclass(frozen=True)
class Pair:
    premise: str
    hypothesis: str
    label: str


def draw_hypothesis(rng, world, style, premise):
    """One random edit of one premise sentence: (hypothesis text, label)."""
    edit_chance = rng.choice(EDIT_CHANCES)
    sentence = rng.choice(premise.sentences) if rng.random() < 0.3 else premise.sentences[0]
    if isinstance(sentence, Quantified):
        hypothesis = edited_quantified(rng, world, sentence, edit_chance)
        return f"{say(hypothesis, world, style)} .", quantified_label(sentence, hypothesis, world)
    if isinstance(sentence, Event):
        hypothesis = edited_event(rng, world, sentence, edit_chance)
    else:
        hypothesis = edited_clause(rng, world, sentence, edit_chance)
    label = scene_label(premise.sentences, hypothesis, world)
    text = say(hypothesis, world, style, fronted=rng.random() < 0.15)
    if rng.random() < 0.12 and is_plain_for_negation(premise, hypothesis, world):
        # 'it is not true that H' negates H's activity, place and time, not who it is about
        return f"it is not true that {text} .", negated_label(label)
    return f"{text} .", label


def is_plain_for_negation(premise, hypothesis, world):
    """True when H is positive, says what its referents do, names them definitely ('the dog', not
    'a dog', which under a negation would mean any dog) and its referent claims (kind, number,
    adjectives) all follow from the premise: then 'it is not true that H' only denies what the
    referents do, where and when."""
    if isinstance(hypothesis, Clause) and hypothesis.predicate is not None:
        mentions = [hypothesis.subject]
    elif isinstance(hypothesis, Event):
        mentions = [hypothesis.agent, hypothesis.patient]
    else:
        return False
    if not hypothesis.positive or any(m.determiner not in ("the", "the_plural") for m in mentions):
        return False
    facts = premise_facts(premise.sentences, world)
    return all(
        claim_status(facts, key, atoms, world) == ENTAILMENT
        for mention in mentions
        for key, atoms in noun_phrase_claims(mention, world, in_premise=False)
    )


def draw_pairs(rng, world, style, premise):
    """Up to one hypothesis per label for this premise, in random label order."""
    pairs = []
    for label in rng.sample(LABELS, len(LABELS)):
        for _ in range(MAX_TRIES):
            hypothesis, got = draw_hypothesis(rng, world, style, premise)
            length = len(basic_tokens(hypothesis))
            if (
                got == label
                and HYPOTHESIS_TOKENS[0] <= length <= HYPOTHESIS_TOKENS[1]
                and hypothesis != premise.text
            ):
                pairs.append(Pair(premise.text, hypothesis, label))
                break
    return pairs


# ----------------------------------------------------------------------------------------------
# Noise, rows and files

CONFUSIONS = {  # a wrong label is mostly neutral-vs-other, as in real disagreement
    ENTAILMENT: ([NEUTRAL, CONTRADICTION], [0.75, 0.25]),
    CONTRADICTION: ([NEUTRAL, ENTAILMENT], [0.75, 0.25]),
    NEUTRAL: ([ENTAILMENT, CONTRADICTION], [0.5, 0.5]),
}


def wrong_label(rng, label):
    labels, weights = CONFUSIONS[label]
    return rng.choices(labels, weights=weights)[0]


def dev_annotations(rng, label):
    """label1 is the writer's label; label2..5 are validators who each err with
    ANNOTATOR_ERROR. Drawn again until some label has at least three votes, so gold exists."""
    while True:
        votes = [label] + [
            wrong_label(rng, label) if rng.random() < ANNOTATOR_ERROR else label for _ in range(4)
        ]
        majority = max(LABELS, key=votes.count)
        if votes.count(majority) >= 3:
            return votes, majority


def binary_parse(tokens):
    """A right-branching bracketing: '( The ( dog ( is sleeping ) ) )' and the final mark apart."""

    def nest(words):
        return words[0] if len(words) == 1 else f"( {words[0]} {nest(words[1:])} )"

    body, mark = (tokens[:-1], tokens[-1]) if tokens[-1] in ".?" and len(tokens) > 1 else (tokens, None)
    return f"( {nest(body)} {mark} )" if mark else nest(body)


def tag(token):
    word = token.lower()
    if not word.isalnum():
        return word
    if word in POS_TAGS:
        return POS_TAGS[word]
    if word.endswith("ing"):
        return "VBG"
    return "NNS" if word in PLURAL_NOUNS else "NN"


POS_TAGS = {
    **{w: "DT" for w in ("the", "a", "an", "all", "some", "every", "each", "no", "most")},
    **{w: "IN" for w in ("in", "on", "at", "of", "by", "that", "while", "according", "during")},
    **{w: "VBZ" for w in ("is",)},
    **{w: "VBP" for w in ("are",)},
    **{
        w: "VBD"
        for w in (
            "was",
            "were",
            "saw",
            "noticed",
            "surprised",
            "found",
            "showed",
            "confirmed",
            "told",
            "said",
        )
    },
    **{w: "CD" for w in list(lex.NUMERALS.values()) + ["one"]},
    **{w: "JJ" for dims in lex.ADJECTIVES.values() for words in dims.values() for w in words},
    **{w: "JJ" for words in lex.STATE_KINDS.values() for w in words},
    **{w: "VBN" for participle, _, _ in lex.TRANSITIVE_VERBS.values() for w in (participle,)},
    "not": "RB",
    "there": "EX",
    "it": "PRP",
    "i": "PRP",
    "and": "CC",
    "but": "CC",
    "true": "JJ",
    "asleep": "JJ",
    "awake": "JJ",
    "being": "VBG",
}
PLURAL_NOUNS = {plural for _, plural in lex.ANIMATE_NOUNS.values()}


def constituency_parse(tokens):
    """A flat '(ROOT (S (DT The) (NN dog) ...))' with tags from a small lookup."""
    return "(ROOT (S " + " ".join(f"({tag(t)} {t})" for t in tokens) + "))"


def mnli_row(index, prompt_id, genre, pair, gold, annotations):
    """One MNLI row; pairID ends with the writer's label (which noise may have overruled)."""
    tokens = [written_tokens(s) for s in (pair.premise, pair.hypothesis)]
    row = [
        str(index),
        str(prompt_id),
        f"{prompt_id}{pair.label[0]}",
        genre,
        binary_parse(tokens[0]),
        binary_parse(tokens[1]),
        constituency_parse(tokens[0]),
        constituency_parse(tokens[1]),
        written(pair.premise),
        written(pair.hypothesis),
    ]
    row += annotations if annotations else [gold]
    return row + [gold]


def generate_split(rng, world, genres, n_pairs, first_prompt_id, dev, seen_premises):
    """Rows of one file. seen_premises: premise texts used by earlier splits (updated here)."""
    rows = []
    prompt_id = first_prompt_id
    while len(rows) < n_pairs:
        genre = rng.choice(genres)
        style = GENRE_STYLES[genre]
        premise = draw_premise(rng, world, style)
        if premise.text in seen_premises:
            continue
        seen_premises.add(premise.text)
        for pair in draw_pairs(rng, world, style, premise)[: n_pairs - len(rows)]:
            if dev:
                annotations, gold = dev_annotations(rng, pair.label)
            else:
                annotations, gold = (
                    None,
                    (wrong_label(rng, pair.label) if rng.random() < TRAIN_NOISE else pair.label),
                )
            rows.append(mnli_row(len(rows), prompt_id, genre, pair, gold, annotations))
        prompt_id += 1
    return rows


def tsv_text(header, rows):
    return "\n".join("\t".join(row) for row in [header] + rows) + "\n"


def generate_corpus(seed, n_train, n_dev):
    """{file name: rows}. Each split has its own random stream, so n_train leaves dev unchanged."""
    matched, mismatched = World(mismatched=False), World(mismatched=True)
    seen = set()
    return {
        "train.tsv": generate_split(
            random.Random(f"{seed}:train"), matched, lex.MATCHED_GENRES, n_train, 100000, False, seen
        ),
        "dev_matched.tsv": generate_split(
            random.Random(f"{seed}:dev_matched"), matched, lex.MATCHED_GENRES, n_dev, 200000, True, seen
        ),
        "dev_mismatched.tsv": generate_split(
            random.Random(f"{seed}:dev_mismatched"),
            mismatched,
            lex.MISMATCHED_GENRES,
            n_dev,
            300000,
            True,
            seen,
        ),
    }


def corpus_vocab(corpus):
    """Special tokens, then every lower-cased token of every sentence, sorted."""
    sentence_columns = (TRAIN_HEADER.index("sentence1"), TRAIN_HEADER.index("sentence2"))
    tokens = {
        token
        for rows in corpus.values()
        for row in rows
        for column in sentence_columns
        for token in basic_tokens(row[column])
    }
    return SPECIAL_TOKENS + sorted(tokens)


def check_config_vocab_sizes(vocab_size, config_paths):
    """Fail clearly when a demo BERT config has fewer embeddings than the vocabulary has tokens."""
    for path in config_paths:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: BERT config not found")
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
        if not isinstance(config.get("vocab_size"), int):
            raise ValueError(f"{path}: key 'vocab_size' must be an integer, got {config.get('vocab_size')!r}")
        if config["vocab_size"] < vocab_size:
            raise ValueError(
                f"{path}: vocab_size {config['vocab_size']} is smaller than the "
                f"generated vocabulary ({vocab_size} tokens); set it to at least "
                f"{round_up(vocab_size, 8)}"
            )


def round_up(number, multiple):
    return -(-number // multiple) * multiple


def write_corpus(output_dir, seed=0, n_train=20000, n_dev=2000):
    """Write output_dir/MNLI/*.tsv and output_dir/vocab.txt; return (corpus, vocab)."""
    corpus = generate_corpus(seed, n_train, n_dev)
    data_dir = os.path.join(output_dir, "MNLI")
    os.makedirs(data_dir, exist_ok=True)
    for name, rows in corpus.items():
        header = TRAIN_HEADER if name == "train.tsv" else DEV_HEADER
        atomic_write_text(os.path.join(data_dir, name), tsv_text(header, rows))
    vocab = corpus_vocab(corpus)
    atomic_write_text(os.path.join(output_dir, "vocab.txt"), "\n".join(vocab) + "\n")
    return corpus, vocab


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--output_dir",
        required=True,
        help="Folder to write MNLI/{train,dev_matched,dev_mismatched}.tsv and vocab.txt into.",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n_train", type=positive_int, default=20000, help="Pairs in train.tsv.")
    parser.add_argument("--n_dev", type=positive_int, default=2000, help="Pairs in each dev file.")
    parser.add_argument(
        "--models_own_vocab",
        action="store_true",
        help="The models read a vocabulary of their own (run_demo.sh --pretrained: MiniLM's), not "
        "vocab.txt: the demo configs' vocab_size is neither checked nor mentioned.",
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    corpus, vocab = write_corpus(args.output_dir, args.seed, args.n_train, args.n_dev)
    for name, rows in corpus.items():
        gold = [row[-1] for row in rows]
        mix = ", ".join(f"{label} {gold.count(label) / len(gold):.1%}" for label in LABELS)
        print(f"{name}: {len(rows)} pairs ({mix})")
    if args.models_own_vocab:
        return
    print(
        f"vocab.txt: {len(vocab)} tokens; BERT configs need vocab_size >= {len(vocab)} "
        f"(rounded up to a multiple of 8: {round_up(len(vocab), 8)})"
    )
    check_config_vocab_sizes(
        len(vocab), [os.path.join(os.path.dirname(__file__), "jsons", name) for name in DEMO_CONFIGS]
    )


if __name__ == "__main__":
    try:
        main()
    except (ValueError, FileNotFoundError) as error:
        sys.exit(f"make_demo_data.py: error: {error}")
