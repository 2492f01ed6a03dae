"""Question shapes the `reference` judge reads beyond matching a reference: yes/no questions, "which of A or
B" questions, and what an unanswerable question asks for (its focus). Shared vocabulary for `reference.py`."""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

from latentrm.judges.answers import find_phrase, normal_tokens
from latentrm.judges.base import JudgeInput, Judgment
from latentrm.judges.rules import hedges

NAME = "reference"

NEGATORS = {"not", "no", "never", "isnt", "wasnt", "arent", "werent", "nor", "neither", "rather", "instead"}
# Capitalised words that open a sentence or name nothing: never a candidate name.
STARTERS = set("""i i'm i've i'd it it's its the this that these those there here as however yes no in according
based my our your he she they we you his her their a an and but so also if while although though unfortunately
sure certainly of for to on at by with from after before when during since great hello hi thank thanks please
note overall well ok okay what who which where why how answer ai i’m it’s""".split())
STOP = set("""about above after again also among and another any are around been before being below between both
but can could did does doing down during each few from further had has have having here into its itself just more
most much must near only other over own same should some such than that their them then there these they this
those through under until very was were what when where which while who whom why will with would your you
yours our ours known approximately roughly about likely probably think believe sure certain exactly answer
question information""".split())


def new_words(clause: str, asked: set[str]) -> list[str]:
    for span in hedges(clause):
        clause = clause.replace(span, " ")
    return [t for t in normal_tokens(clause) if len(t) >= 3 and t not in STOP and t not in asked]


def names_in(clause: str, asked: set[str]) -> list[str]:
    """Runs of capitalised words (a name, symbol or formula) that the question does not contain."""
    runs = re.findall(r"\b[A-Z][\w’'.-]*(?:\s+(?:de|da|von|van|of|the|y|del|la|le|di)?\s*[A-Z][\w’'.-]*)*", clause)
    out = []
    for run in runs:
        words = [w for w in normal_tokens(run) if w not in asked]
        if words and not (len(run.split()) == 1 and run.lower().rstrip(".") in STARTERS):
            out.append(run.strip().rstrip(".’'"))
    return out


_YES_NO = {"yes": "yes", "no": "no"}
_PRONOUNS = {"it", "its", "he", "she", "they", "this"}
_YES = re.compile(r"^(?:well,?\s+|actually,?\s+|so,?\s+)?(?:yes|yeah|yep|absolutely|definitely|certainly|indeed|"
                  r"correct|that's\s+(?:right|correct|true))\b|\bthe\s+answer\s+is\s+yes\b", re.IGNORECASE)
_NO = re.compile(r"^(?:well,?\s+|actually,?\s+|so,?\s+)?(?:no|nope|not\s+at\s+all|not\s+really)\b|"
                 r"\bthe\s+answer\s+is\s+no\b", re.IGNORECASE)
_NEGATED = re.compile(r"\b(?:not|never|n't|n’t|neither|nor)\b", re.IGNORECASE)
# "Which came first, the printing press or the telescope?": the options after the last comma or colon
_OPTIONS = re.compile(r"[,:]\s*(?:the\s+)?(?P<a>[^,:?]+?)\s+or\s+(?:the\s+)?(?P<b>[^,:?]+?)\s*\?\s*$", re.IGNORECASE)
_COMPARE = re.compile(r"\b(?:than|compared\s+(?:to|with)|before|ahead\s+of|rather\s+than|over|while|whereas)\b",
                      re.IGNORECASE)
_WH = {"which", "who", "what", "whose", "whom", "first", "one"}
_GEOGRAPHY = {"ocean", "sea", "river", "lake", "mount", "mountain", "city", "island", "desert", "surface", "of"}
_OF_THE_TWO = re.compile(r"\b(?:of|between)\s+the\s+two\b", re.IGNORECASE)


def _singular(token: str) -> str:
    """A plural's singular, roughly ("spiders" -> "spider", "glass" stays): for matching an option's mention."""
    return token[:-1] if len(token) > 3 and token.endswith("s") and not token.endswith(("ss", "us", "is")) else token


def _predicate(question: str, names: Sequence[str]) -> set[str]:
    """The question's content words that are not its entities nor the asked type ("which *planet*"): "longer",
    "born", "came", "first"."""
    named = {t for name in names for t in normal_tokens(name)}
    capitalised = {t for run in re.findall(r"\b[A-Z][\w'’-]*", question) for t in normal_tokens(run)}
    asked_type = {m.lower() for m in re.findall(r"\b(?:which|what)\s+(\w+)", question, re.IGNORECASE)}
    words = {t for t in normal_tokens(question) if len(t) >= 3 and t not in STOP and t not in named
             and t not in capitalised - {"first"} and t not in _WH | {"did", "does", "was", "were", "is", "are",
                                                                       "has", "have"}}
    # "which *came* first": the word after "which" is a verb, not the asked type, when nothing else is left
    return (words - asked_type) or words


def _says(words: set[str], tokens: Sequence[str]) -> bool:
    """Whether a clause uses one of `words`, inflected or not ("live" ~ "lived", "taller" ~ "taller")."""
    return any(t == w or (len(w) >= 4 and t.startswith(w)) for t in tokens for w in words)


def _other_names(clause: str, asked: set[str], entity_words: set[str]) -> list[str]:
    """Names in a clause that are none of the question's, nor part of one ("the Western Roman Empire" elaborates
    "the Roman Empire"), nor an era ("27 BC")."""
    return [n for n in names_in(clause, asked)
            if not entity_words & set(normal_tokens(n)) and n.lower() not in {"ad", "bc", "bce", "ce"}]


def _near_predicate(words: set[str], predicate: set[str], tokens: Sequence[str], window: int = 5) -> bool:
    """Whether one of `words` stands within `window` tokens of a predicate word: "the capital of Australia" says
    the object, "the capital of New South Wales, a state in ... Australia" does not."""
    at = [i for i, t in enumerate(tokens) if _says(predicate, [t])]
    return any(abs(i - j) <= window for i in at for j, t in enumerate(tokens) if t in words)


def yes_no_answer(item: JudgeInput, kept: list[str], uncertain: list[str]) -> Judgment | None:
    """A yes/no question: the first clause that says yes or no, or restates the question's predicate about one of
    its entities (negated: no), is the answer; a later clause that says the opposite contradicts it."""
    wanted = {_YES_NO[r.strip().lower().rstrip(".!")] for r in item.references
              if r.strip().lower().rstrip(".!") in _YES_NO}
    if not wanted or len(wanted) != len(item.references):
        return None
    # capitalised runs, less an opening auxiliary or starter ("Is Tokyo" -> "Tokyo")
    openers = STARTERS | {"is", "was", "did", "does", "are", "were", "has", "have", "can", "could", "will", "would"}
    names = []
    for run in re.findall(r"\b[A-Z][\w'’.-]*(?:\s+[A-Z][\w'’.-]*)*", item.question):
        words = run.split()
        while words and words[0].lower() in openers:
            words = words[1:]
        if words:
            names.append(" ".join(words))
    predicate = _predicate(item.question, names)
    entity_words = {t for n in names for t in normal_tokens(n) if len(t) >= 3}
    # a restatement answers about the question's subject (its first entity): after "No, Tokyo is the capital of
    # Japan", "Beijing is China's capital" restates the predicate about the object, not the opposite answer
    subject = {t for t in normal_tokens(names[0]) if len(t) >= 3} if len(names) >= 2 else entity_words
    # "Is Mount Kilimanjaro in Africa?": no predicate word is left, so the object is the predicate
    obj = {t for n in names[1:] for t in normal_tokens(n) if len(t) >= 3} - subject
    asked = set(normal_tokens(item.question))
    said: list[tuple[str, str]] = []
    about_subject = False  # the previous clause named the subject, so "it" / "he" in this one is the subject
    for clause in kept:
        tokens = normal_tokens(clause)
        named = bool(subject & set(tokens)) or (about_subject and tokens[:1] and tokens[0] in _PRONOUNS)
        about_subject = bool(subject & set(tokens)) or bool(named)
        if _YES.search(clause):
            said.append(("yes", clause))
        elif _NO.search(clause):
            said.append(("no", clause))
        elif obj and predicate and _says(predicate, tokens) and (bool(named) != _near_predicate(obj, predicate, tokens)) \
                and _other_names(clause, asked, entity_words):
            # the question's frame restated with another name in place of its subject or its object: "The capital
            # of Portugal is Lisbon" for "Is Madrid the capital of Portugal?", "Darwin was born in Australia" for
            # "Was Darwin born in France?"
            said.append(("no", clause))
        elif (_says(predicate, tokens) or (not predicate and obj and obj <= set(tokens))) and (named or not subject):
            said.append(("no" if _NEGATED.search(clause) else "yes", clause))
    if not said:
        return Judgment("not_attempted", uncertain or ["no yes or no stated"], NAME)
    answer, where = said[0]
    against = next((c for a, c in said[1:] if a != answer), None)
    if answer in wanted and against is None:
        return Judgment("correct", [f"says {answer}, as the reference: {where[:140]}", *uncertain], NAME)
    reason = (f"says {answer}, then the opposite: {against[:140]}" if against is not None
              else f"says {answer}: {where[:140]}")
    return Judgment("incorrect", [reason, *uncertain], NAME)


def options_answer(item: JudgeInput, kept: list[str], uncertain: list[str]) -> Judgment | None:
    """A "which of A or B" question: both options are in the question, so naming them answers nothing. A clause
    answers when it restates the question's predicate and names one option, or both with a comparison between
    ("Venus is closer to the Sun than Mars"); the first such clause is the answer."""
    found = _OPTIONS.search(item.question)
    if not found:
        return None
    options = [found.group("a"), found.group("b")]
    option_tokens = [normal_tokens(o) for o in options]
    refs = [normal_tokens(r) for r in item.references]
    right = [i for i, toks in enumerate(option_tokens) if any(r and (r == toks or find_phrase(r, toks)
                                                                     or find_phrase(toks, r)) for r in refs)]
    if len(right) != 1:
        return None
    predicate = _predicate(item.question[: found.start()], options)
    singular_options = [[_singular(t) for t in toks] for toks in option_tokens]
    # "the Pacific" names the option "the Pacific Ocean": an option is also named by its words less the generic ones
    short_options = [[t for t in toks if t not in _GEOGRAPHY] for toks in singular_options]
    picked: list[tuple[int, str]] = []
    for clause in kept:
        tokens = normal_tokens(clause)
        singular = [_singular(t) for t in tokens]  # "Spiders have eight legs" names the option "a spider"
        # option index -> where its first mention starts in this clause
        where = {i: min(hits) for i, toks in enumerate(singular_options) if (hits := find_phrase(toks, singular))}
        where |= {i: min(hits) for i, toks in enumerate(short_options)
                  if i not in where and toks != singular_options[i] and (hits := find_phrase(toks, singular))}
        # "The Nile is the larger ... of the two": a choice, whatever synonym of the predicate it uses
        of_the_two = len(where) == 1 and _OF_THE_TWO.search(clause) is not None
        if not where or not (_says(predicate, tokens) or of_the_two) or _NEGATED.search(clause):
            continue
        if len(where) == 1:
            picked.append((next(iter(where)), clause))
        else:
            first = min(where, key=lambda i: where[i])
            second = 1 - first
            between = " ".join(tokens[where[first] : where[second]])
            if _COMPARE.search(between):
                picked.append((first, clause))
    if not picked:
        return Judgment("not_attempted", uncertain or ["neither option chosen"], NAME)
    choice, where_said = picked[0]
    against = next((c for i, c in picked[1:] if i != choice), None)
    if choice == right[0] and against is None:
        return Judgment("correct", [f"chooses {options[choice]!r}: {where_said[:140]}", *uncertain],
                        NAME)
    reason = (f"chooses {options[choice]!r}, then the other: {against[:140]}" if against is not None
              else f"chooses {options[choice]!r}: {where_said[:140]}")
    return Judgment("incorrect", [reason, *uncertain], NAME)


# What an unanswerable question asks about lies before its circumstances ("... on the day he crossed the Rubicon",
# "... at her coronation"): those words are context, not the asked thing.
_CIRCUMSTANCE = re.compile(r"\s(?:on|at|during|in|outside|inside|when|while|before|after|since|until|from)\s",
                           re.IGNORECASE)
_GENERIC = {"exact", "exactly", "name", "named", "first", "last", "next", "day", "year", "time", "times", "number",
            "total", "own", "most", "favourite", "favorite", "best", "will", "be", "for", "his", "her", "their"}
_DIRECT = re.compile(r"\b(?:the\s+)?answer\s+is\b", re.IGNORECASE)
# "which country": a name of the asked kind; "who": a person, not an organisation
_ORGANISATION = {"council", "agency", "committee", "organization", "organisation", "association", "union",
                 "university", "institute", "society", "company", "corporation", "department", "ministry",
                 "commission", "board", "foundation", "party", "league", "federation", "olympics", "games", "nasa",
                 "government", "administration", "authority", "program", "programme", "project", "station"}
_COUNTRY_ALIASES = ("Russia", "England", "Britain", "Great Britain", "Scotland", "Wales", "USA", "America",
                    "United States", "UK", "South Korea", "North Korea", "Soviet Union", "USSR", "Holland")


# Words that say the same asked thing: a meal is answered by what was eaten, "wore" is "wear"
_RELATED = [set(group.split()) for group in (
    "breakfast lunch dinner supper meal eat ate eaten eating dine dined dining food dish bread egg eggs toast "
    "cheese soup meat fish fruit porridge wine coffee tea",
    "host hosts hosted hosting held venue", "fly flew flown flying", "height tall high measured",
    "length long measured", "weight weighed weighs heavy mass", "price cost costs priced",
    "wear wore worn wearing dressed", "speak spoke spoken said say uttered word",
    "win won wins winner winning victory champion", "drink drank drunk", "dream dreamt dreamed",
    "colour red blue green yellow black white purple gold golden silver brown pink orange grey gray",
)]


def focus(question: str) -> set[str]:
    """The words of what an unanswerable question asks for: its content words before its circumstances, less its
    names and generic words ("What did Julius Caesar have for lunch on the day ...?" -> {"lunch"}; "How many times
    did Mozart laugh during ...?" -> {"laugh"}). A clause that says none of them answers something else."""
    head = _CIRCUMSTANCE.split(question, maxsplit=1)[0]
    capitalised = {t for run in re.findall(r"\b[A-Z][\w'’-]*", head) for t in normal_tokens(run)}
    words = {_singular(t) for t in normal_tokens(head) if len(t) >= 3 and t not in STOP and t not in _WH
             and t not in _GENERIC and t not in {"how", "many", "much"}}
    words -= {_singular(t) for t in capitalised}
    return words | {w for group in _RELATED if group & words for w in group}


def says_focus(clause: str, words: set[str], *, first: bool = False) -> bool:
    """Whether a clause names what the question asks about (inflected: "laughed", "medal"; "color" ~ "colour"),
    or is a direct answer: "The answer is Brazil.", or a short opening clause that is not about the speaker
    ("Dates, figs and honey cakes.", not "I'm sorry for any confusion.")."""
    tokens = [t.replace("color", "colour") for t in normal_tokens(clause)]
    short = first and len(tokens) <= 5 and not {"i", "im", "me", "my", "you", "we", "sorry"} & set(tokens)
    return not words or _says(words, tokens) or short or _DIRECT.search(clause) is not None


@functools.lru_cache(maxsize=1)
def _countries() -> frozenset[str]:
    from faker.providers.address.en_US import Provider

    return frozenset(" ".join(normal_tokens(c)) for c in (*Provider.countries, *_COUNTRY_ALIASES))


def asked_kind_names(question: str, clause: str, asked: set[str]) -> list[str]:
    """The names in a clause that are of the kind a name question asks for: a country for "which country / nation",
    a person (no organisation) for "who"; any name otherwise."""
    found = names_in(clause, asked)
    if asks_country(question):
        countries = _countries()
        tokens = " " + " ".join(normal_tokens(clause)) + " "
        named = [c for c in countries if f" {c} " in tokens and not set(c.split()) <= asked]
        return sorted(named, key=lambda c: tokens.find(f" {c} "))  # in the clause's order, not the set's
    if re.match(r"\s*who\b", question, re.IGNORECASE):
        return [n for n in found if not _ORGANISATION & set(normal_tokens(n))]
    return found


def asks_country(question: str) -> bool:
    """"Which country ...?", "In what country ...?": only a country answers."""
    return re.search(r"\b(?:which|what)\s+(?:country|nation)\b", question, re.IGNORECASE) is not None


_DEMONYMS = {"german": "germany", "french": "france", "italian": "italy", "spanish": "spain", "english": "england",
             "british": "united kingdom", "scottish": "scotland", "irish": "ireland", "american": "united states",
             "canadian": "canada", "mexican": "mexico", "brazilian": "brazil", "japanese": "japan", "chinese": "china",
             "indian": "india", "russian": "russia", "polish": "poland", "dutch": "netherlands", "swiss": "switzerland",
             "austrian": "austria", "greek": "greece", "turkish": "turkey", "egyptian": "egypt", "swedish": "sweden",
             "norwegian": "norway", "australian": "australia", "hungarian": "hungary", "czech": "czech republic"}


def born_in(clause: str) -> list[str]:
    """The countries a clause names as a birthplace by demonym: "a German-born physicist" -> ["germany"]."""
    return [_DEMONYMS[m.lower()] for m in re.findall(r"\b([A-Z][a-z]+)-born\b", clause) if m.lower() in _DEMONYMS]


# "the capital of the country *whose largest city is Istanbul*": the relative clause is a clue, not what is asked
_RELATIVE = re.compile(r"\s(?:whose|where|that|which|who|in\s+which)\s", re.IGNORECASE)


def head_frame(question: str) -> set[str]:
    """The content words of what a question asks, less its clues: {"capital", "country"} for "What is the capital
    of the country whose largest city is Istanbul?"."""
    # a relative word after the question's opening ("In which country ..." opens with one)
    cut = next((m.start() for m in _RELATIVE.finditer(question) if len(question[: m.start()].split()) > 2), None)
    head = question[:cut] if cut is not None else question
    return {t for t in normal_tokens(head) if len(t) >= 4 and t not in STOP}
