"""Guards: lexical checks that veto a semantic hit the embedder alone would allow.

Sentence embedders place "capital of Austria" next to "capital of Australia", and a question
next to its negation (cosine 0.97-0.99 with MiniLM). No threshold separates those from real
paraphrases, so precision comes from here: two questions may share an answer only if they
agree on every detail that usually decides it. Each guard compares one kind of detail and
names it when they differ; any difference blocks the hit (a miss is always safe).

* numbers (digits and number words, ordinals, "twice", "half"...);
* negation (not, n't, never, no, without..., and un-/in-/dis-/non- prefixed forms);
* named entities: capitalised words, acronyms, code in backticks or quotes (compared
  case-insensitively, so "python" vs "Python" is not a difference, "Austria" vs "Australia" is);
* units and currencies (km vs miles, Celsius vs Fahrenheit, dollars vs euros, GB vs MB);
* antonyms and opposite directions (increase/decrease, install/uninstall, before/after,
  today/tomorrow, he/she);
* reversed roles: the same two words on swapped sides of the same pivot ("Celsius to
  Fahrenheit" / "Fahrenheit to Celsius", "does smoking cause cancer" / "does cancer cause
  smoking");
* question words: "who" / "when" / "where" / "why" ask for different things;
* language and script: a question in another language gets an answer in that language.

:func:`differing_words` feeds one more check that needs the embedder (in
:mod:`llm_cache.semantic.cache`): when each text has content words the other lacks, those
words must mean nearly the same ("largest"/"biggest", not "make"/"amend").
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache


def _words(text: str) -> frozenset[str]:
    """A word list written as one string (easier to read and extend than a list literal)."""
    return frozenset(text.split())


_WORD = re.compile(r"[^\W_]+(?:['\u2019][^\W_]+)*", re.UNICODE)
_NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:[.,]\d+)*(?:st|nd|rd|th)?")
_CODE = re.compile(
    r"`([^`\n]+)`|\"([^\"\n]{1,80})\"|(?<!\w)'([^'\n]{1,80}?)'(?!\w)|“([^”\n]{1,80})”"
)
_SENTENCE_START = re.compile(r"(?:^|[.!?:;]\s+|\n)\s*[\"'“(]*([^\W\d_][\w'\u2019-]*)", re.UNICODE)

NUMBER_WORDS: dict[str, str] = {
    "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
    "seven": "7", "eight": "8", "nine": "9", "ten": "10", "eleven": "11", "twelve": "12",
    "thirteen": "13", "fourteen": "14", "fifteen": "15", "sixteen": "16", "seventeen": "17",
    "eighteen": "18", "nineteen": "19", "twenty": "20", "thirty": "30", "forty": "40",
    "fifty": "50", "sixty": "60", "seventy": "70", "eighty": "80", "ninety": "90",
    "hundred": "100", "thousand": "1000", "million": "1e6", "billion": "1e9",
    "trillion": "1e12", "dozen": "12", "first": "1", "second": "2", "third": "3",
    "fourth": "4", "fifth": "5", "sixth": "6", "seventh": "7", "eighth": "8", "ninth": "9",
    "tenth": "10", "once": "1", "twice": "2", "thrice": "3", "double": "x2", "triple": "x3",
    "half": "1/2", "quarter": "1/4", "single": "1", "pair": "2", "couple": "2",
}  # fmt: skip

NEGATIONS = _words(
    "not no never none nobody nothing nowhere neither nor without cannot cant dont doesnt "
    "didnt isnt arent wasnt werent wont wouldnt shouldnt couldnt mustnt hasnt havent hadnt "
    "aint neednt lack lacking except excluding avoid "
)

_NEG_PREFIXES = ("un", "in", "im", "il", "ir", "dis", "non", "non-")

UNITS: dict[str, str] = {}
for _canonical, _spellings in {
    "m": "m meter meters metre metres",
    "km": "km kms kilometer kilometers kilometre kilometres",
    "cm": "cm centimeter centimeters centimetre centimetres",
    "mm": "mm millimeter millimeters millimetre millimetres",
    "mile": "mi mile miles",
    "ft": "ft foot feet",
    "in": "inch inches",
    "yd": "yd yard yards",
    "kg": "kg kgs kilogram kilograms kilo kilos",
    "g": "g gram grams gramme grammes",
    "mg": "mg milligram milligrams",
    "lb": "lb lbs pound pounds",
    "oz": "oz ounce ounces",
    "ton": "ton tons tonne tonnes",
    "l": "l liter liters litre litres",
    "ml": "ml milliliter milliliters millilitre millilitres",
    "gal": "gal gallon gallons",
    "qt": "qt quart quarts",
    "pt": "pint pints",
    "cup": "cup cups",
    "tbsp": "tbsp tablespoon tablespoons",
    "tsp": "tsp teaspoon teaspoons",
    "celsius": "c celsius centigrade °c",
    "fahrenheit": "f fahrenheit °f",
    "kelvin": "k kelvin kelvins",
    "s": "s sec secs second seconds",
    "ms": "ms millisecond milliseconds",
    "min": "min mins minute minutes",
    "h": "h hr hrs hour hours",
    "day": "day days",
    "week": "week weeks",
    "month": "month months",
    "year": "year years yr yrs",
    "decade": "decade decades",
    "century": "century centuries",
    "bit": "bit bits",
    "byte": "byte bytes",
    "kb": "kb kilobyte kilobytes kib",
    "mb": "mb megabyte megabytes mib",
    "gb": "gb gigabyte gigabytes gib",
    "tb": "tb terabyte terabytes tib",
    "usd": "usd dollar dollars $",
    "eur": "eur euro euros €",
    "gbp": "gbp sterling £",
    "jpy": "jpy yen ¥",
    "cny": "cny yuan renminbi",
    "inr": "inr rupee rupees",
    "percent": "% percent percentage",
    "mph": "mph",
    "kmh": "kmh kph km/h",
    "w": "w watt watts",
    "kw": "kw kilowatt kilowatts",
    "kwh": "kwh",
    "v": "v volt volts",
    "a": "amp amps ampere amperes",
    "hz": "hz hertz",
    "ghz": "ghz gigahertz",
    "mhz": "mhz megahertz",
    "cal": "cal calorie calories kcal",
    "j": "j joule joules",
    "pa": "pa pascal pascals",
    "psi": "psi",
    "bar": "bar bars",
    "acre": "acre acres",
    "hectare": "ha hectare hectares",
    "degree": "degree degrees °",
    "radian": "rad radian radians",
}.items():
    for _spelling in _spellings.split():
        UNITS[_spelling] = _canonical
# abbreviations that are also words count as units only right after a number ("5 m", "30 c")
_BARE_UNIT_ABBREVIATIONS = frozenset(k for k in UNITS if len(k) == 1) | {"ms", "ha", "pa", "mi"}

_ANTONYM_PAIRS = """
increase decrease|increase reduce|raise lower|rise fall|up down|in out|on off|open close
install uninstall|encrypt decrypt|compress decompress|import export|upload download
enable disable|lock unlock|connect disconnect|add remove|add delete|create delete|buy sell
gain lose|win lose|won lost|push pull|start stop|begin end|first last|before after
maximum minimum|max min|largest smallest|biggest smallest|largest tiniest|bigger smaller
larger smaller|more less|more fewer|most least|highest lowest|higher lower|high low
hottest coldest|hotter colder|hot cold|warm cool|fastest slowest|faster slower|fast slow
oldest newest|oldest youngest|older younger|old new|old young|early late|earliest latest
advantages disadvantages|advantage disadvantage|pros cons|strengths weaknesses|benefits risks
benefits drawbacks|good bad|best worst|better worse|happy sad|positive negative|true false
ascending descending|asc desc|north south|east west|left right|above below|over under
inside outside|internal external|input output|send receive|sent received|give take
today tomorrow|today yesterday|tomorrow yesterday|past future|next previous|next last
he she|him her|his her|his hers|himself herself|man woman|men women|male female|boy girl
father mother|husband wife|brother sister|son daughter|king queen|mr mrs|mr ms
day night|morning evening|summer winter|spring autumn|spring fall|light dark|white black
heavy light|long short|wide narrow|thick thin|deep shallow|rich poor|cheap expensive
easy hard|easy difficult|simple complex|safe dangerous|legal illegal|allow deny|accept reject
include exclude|approve reject|success failure|succeed fail|pass fail|valid invalid
love hate|like dislike|agree disagree|always never|all none|everyone nobody|everything nothing
sunrise sunset|entry exit|enter exit|arrive depart|arrival departure|import export
attack defend|offense defense|buyer seller|borrow lend|lender borrower|client server
encode decode|serialize deserialize|zip unzip|mount unmount|show hide|expand collapse
minimize maximize|upper lower|uppercase lowercase|front back|top bottom|head tail
""".replace("\n", "|")
ANTONYMS: dict[str, frozenset[str]] = {}
for _pair in filter(None, (p.strip() for p in _ANTONYM_PAIRS.split("|"))):
    _a, _b = _pair.split()
    ANTONYMS[_a] = ANTONYMS.get(_a, frozenset()) | {_b}
    ANTONYMS[_b] = ANTONYMS.get(_b, frozenset()) | {_a}

#: Function words per language; a text's language is the one whose words it uses most.
LANGUAGE_WORDS: dict[str, frozenset[str]] = {
    lang: frozenset(words.split())
    for lang, words in {
        "en": "the is are was what how why who which where when do does did can you i my "
        "a an of to in for with and this that it be me please tell give write",
        "fr": "le la les est sont un une des du de et que qui quoi comment pourquoi je tu "
        "vous mon ma mes ce cette dans pour avec écris donne dis quelle quel",
        "de": "der die das ist sind ein eine und wie was warum wer wo ich du mein dein "
        "nicht mit für auf dem den des es geht schreib gib",
        "es": "el la los las es son un una y que qué cómo por qué quién dónde yo tú mi "
        "con para en del este esta cuéntame dame escribe",
        "it": "il lo la gli le è sono un una e che cosa come perché chi dove io tu mio "
        "con per nel della del questo questa",
        "pt": "o a os as é são um uma e que como por quem onde eu tu meu minha com para "
        "no na do da este esta",
        "nl": "de het een is zijn en wat hoe waarom wie waar ik jij mijn met voor op van dit",
    }.items()
}

STOPWORDS = (LANGUAGE_WORDS["en"] - {"write", "give", "tell", "please"}) | _words(
    "am were been being has have had will would should could may might must shall there their "
    "them they we us our your its his her on at by from as into than then so if or but about "
    "any some such more most other only own same too very just also how's what's whats i'm im "
    "it's let let's lets yes ok okay hi hello hey thanks thank which whose whom these those "
    "here all each few both between through during "
)


@dataclass(frozen=True)
class TextFeatures:
    """What the guards compare, extracted once per text (stored texts are re-read often)."""

    words: tuple[str, ...]
    numbers: Counter[str] = field(compare=False)
    negations: int
    entities: frozenset[str]
    units: frozenset[str]
    script: str
    language: str | None


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).replace("\u2019", "'")


def _plain(word: str) -> str:
    """Lower case, possessive dropped, apostrophes removed ("France's" -> "france",
    "doesn't" -> "doesnt")."""
    word = word.lower()
    if word.endswith("'s"):
        word = word[:-2]
    return word.replace("'", "")


@lru_cache(maxsize=4096)
def features(text: str) -> TextFeatures:
    """Extract the features of ``text`` (memoized: stored texts are compared repeatedly)."""
    text = _fold(text)
    raw_words = _WORD.findall(text)
    words = tuple(w.lower() for w in raw_words)
    plain = [_plain(w) for w in raw_words]

    numbers: Counter[str] = Counter(_normal_number(m) for m in _NUMBER.findall(text))
    for word in plain:
        if word in NUMBER_WORDS:
            numbers[NUMBER_WORDS[word]] += 1

    negations = sum(1 for w in plain if w in NEGATIONS)
    entities = _entities(text, raw_words)
    units = _units(text, words)
    return TextFeatures(
        words=words,
        numbers=numbers,
        negations=negations,
        entities=entities,
        units=units,
        script=_script(text),
        language=_language(words),
    )


def _normal_number(token: str) -> str:
    token = token.lower().rstrip("stndrh") or token
    if re.fullmatch(r"[-+]?\d{1,3}(,\d{3})+", token):
        token = token.replace(",", "")
    token = token.replace(",", ".")
    try:
        value = float(token)
    except ValueError:
        return token
    return str(int(value)) if value.is_integer() else repr(value)


def _entities(text: str, raw_words: list[str]) -> frozenset[str]:
    """Capitalised words (not merely sentence-initial), acronyms, mixed-case, quoted code."""
    sentence_initial = {m.group(1) for m in _SENTENCE_START.finditer(text)}
    found: set[str] = set()
    for word in raw_words:
        has_upper = any(c.isupper() for c in word)
        if not has_upper:
            continue
        low = _plain(word)
        if word in sentence_initial and low in STOPWORDS | NEGATIONS:
            continue
        if word in sentence_initial and word[1:].islower() and low in _COMMON_VERBS:
            continue
        if low in ("i", "i'm", "im"):
            continue
        found.add(low)
    for match in _CODE.finditer(text):
        quoted = next(g for g in match.groups() if g is not None)
        found.add("`" + quoted.strip().lower())
    return frozenset(found)


_COMMON_VERBS = _words(
    "explain summarize summarise list give write tell translate convert make create show "
    "describe compare calculate compute find define recommend suggest plan generate name sort "
    "divide multiply add bake map transfer answer compose help fix check read draft can could "
    "should would will is are do does did has have was were why how what who which where when "
    "whats hows please is there "
)


def _units(text: str, words: tuple[str, ...]) -> frozenset[str]:
    found: set[str] = set()
    for index, word in enumerate(words):
        unit = UNITS.get(word)
        if unit is None:
            continue
        if word in _BARE_UNIT_ABBREVIATIONS:
            previous = words[index - 1] if index else ""
            if not (previous.replace(".", "").isdigit() or previous in NUMBER_WORDS):
                continue
        found.add(unit)
    for symbol in ("$", "€", "£", "¥", "%", "°c", "°f", "km/h"):
        if symbol in text.lower():
            found.add(UNITS[symbol])
    return frozenset(found)


def _script(text: str) -> str:
    """The Unicode script of most letters (LATIN, CYRILLIC, CJK, ARABIC...)."""
    counts: Counter[str] = Counter()
    for char in text:
        if char.isalpha():
            try:
                name = unicodedata.name(char)
            except ValueError:
                continue
            counts[name.split()[0]] += 1
    return counts.most_common(1)[0][0] if counts else ""


def _language(words: tuple[str, ...]) -> str | None:
    """The language whose function words the text uses most; ``None`` when unclear."""
    if not words:
        return None
    scores = {lang: sum(1 for w in words if w in vocab) for lang, vocab in LANGUAGE_WORDS.items()}
    best = max(scores.values())
    if best == 0:
        return None
    leaders = [lang for lang, score in scores.items() if score == best]
    return leaders[0] if len(leaders) == 1 else None


def _content(words: tuple[str, ...]) -> list[str]:
    """Content words in their plain form ("why's" is "why", a stopword; "France's" is
    "france"); negations and numbers are left to their own guards."""
    plain = (_plain(w) for w in words)
    return [w for w in plain if w not in STOPWORDS and w not in NEGATIONS and not w.isdigit()]


def _has_negative_form(a: set[str], b: set[str]) -> str | None:
    """A word in ``a`` that is a prefixed negative of a word in ``b`` (possible/impossible)."""
    for word in a:
        for prefix in _NEG_PREFIXES:
            if word.startswith(prefix) and len(word) - len(prefix) >= 4:
                stem = word[len(prefix) :].lstrip("-")
                if stem in b and word not in b:
                    return f"{stem!r} vs {word!r}"
    return None


def _swapped_roles(a: tuple[str, ...], b: tuple[str, ...]) -> str | None:
    """Two words on opposite sides of the same pivot word in each text, swapped."""
    shared = set(_content(a)) & set(_content(b))
    if len(shared) < 2:
        return None
    pivots = (set(a) & set(b)) - {"the", "a", "an"}
    for pivot in pivots:
        ia, ib = a.index(pivot), b.index(pivot)
        left_a, right_a = set(a[:ia]) & shared, set(a[ia + 1 :]) & shared
        left_b, right_b = set(b[:ib]) & shared, set(b[ib + 1 :]) & shared
        for x in left_a & right_b - left_b:
            for y in right_a & left_b - right_b:
                if x != y and pivot not in (x, y):
                    return f"{x!r} and {y!r} swap sides of {pivot!r}"
    return None


def _antonym(a: tuple[str, ...], b: tuple[str, ...]) -> str | None:
    only_a = set(a) - set(b)
    only_b = set(b) - set(a)
    for word in only_a:
        opposite = ANTONYMS.get(word)
        if opposite and opposite & only_b:
            return f"{word!r} vs {sorted(opposite & only_b)[0]!r}"
    return None


def block_reason(query: str, stored: str) -> str | None:
    """Why ``query`` must not be answered with the answer to ``stored``; ``None`` if no guard
    objects. Each check is symmetric."""
    fa, fb = features(query), features(stored)
    if fa.script != fb.script:
        return f"script differs ({fa.script or 'none'} vs {fb.script or 'none'})"
    if fa.language and fb.language and fa.language != fb.language:
        return f"language differs ({fa.language} vs {fb.language})"
    if fa.numbers != fb.numbers:
        return f"numbers differ ({_show(fa.numbers)} vs {_show(fb.numbers)})"
    if fa.negations != fb.negations:
        return f"negation differs ({fa.negations} vs {fb.negations})"
    words_a, words_b = set(fa.words), set(fb.words)
    if reason := _has_negative_form(words_a, words_b) or _has_negative_form(words_b, words_a):
        return f"negation differs ({reason})"
    missing = {e for e in fa.entities if not _mentioned(e, fb)} | {
        e for e in fb.entities if not _mentioned(e, fa)
    }
    if missing:
        return f"named entities differ ({', '.join(sorted(missing))})"
    if fa.units != fb.units:
        return f"units differ ({_show(fa.units)} vs {_show(fb.units)})"
    if reason := _antonym(fa.words, fb.words):
        return f"opposite words ({reason})"
    if reason := _swapped_roles(fa.words, fb.words):
        return f"reversed roles ({reason})"
    only_a, only_b = differing_words(query, stored)
    added = [
        w for w in (only_b if not only_a else only_a if not only_b else ()) if w not in FRAMING
    ]
    if added:
        return f"added words change the question ({', '.join(added)})"
    wh_a, wh_b = words_a & _DISTINCT_QUESTIONS, words_b & _DISTINCT_QUESTIONS
    if wh_a and wh_b and wh_a != wh_b:
        return f"question words differ ({_show(frozenset(wh_a))} vs {_show(frozenset(wh_b))})"
    return None


#: Words that only frame a question ("explain", "what's the best way", "the command to"):
#: one question may add them without changing what it asks. Any other added word ("a
#: *vegan* recipe", "a *signed* commit") blocks the hit: a qualifier changes the answer.
FRAMING = _words(
    "explain explanation describe define definition mean meaning tell show give know want "
    "need help please exactly actually really simply basically briefly brief quick quickly "
    "way best good command method approach syntax step example acronym term calculate compute "
    "find list name suggest recommend compose write make create get use using possible "
    "correct right proper properly detail kind "
)

#: Question words that ask for different kinds of answer (what/which/how may stand for any).
_DISTINCT_QUESTIONS = frozenset({"who", "when", "where", "why"})


def _stem(word: str) -> str:
    """A light stem: possessive and plural endings off, so "world's" equals "world"."""
    word = word.rstrip("'")
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        word = word[:-1]
    return word


def differing_words(query: str, stored: str) -> tuple[list[str], list[str]]:
    """Content words (stemmed) that only ``query`` has, and those that only ``stored`` has."""
    a = {_stem(w) for w in _content(features(query).words)}
    b = {_stem(w) for w in _content(features(stored).words)}
    return sorted(a - b), sorted(b - a)


def _mentioned(entity: str, other: TextFeatures) -> bool:
    """An entity of one text is matched by the same word (any case) in the other."""
    if entity.startswith("`"):
        return entity in other.entities
    return entity in other.entities or entity in {_plain(w) for w in other.words}


def _show(values: Counter[str] | frozenset[str]) -> str:
    return ", ".join(sorted(values)) or "none"
