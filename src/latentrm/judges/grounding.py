"""Check a response's key facts against a grounding text (for `real_incorrect`).

Only facts that can be compared without a model are checked, and only when the
grounding text states them too:

- lifespan years (born / died / "(1867-1934)"), off by more than one year;
- nationality in the "X was a(n) ... <nationality>" clause;
- primary occupation in that clause, by occupation group (a physicist is not a
  painter; "scientist" / "researcher" are compatible with any science);
- the field of a Nobel Prize.

A response that states something the grounding text does not mention is not a
contradiction: the grounding text is short, so silence proves nothing.

`supported_facts` lists the overlap with the grounding text (evidence for
`answers_real`): lifespan years, nationality, field, Nobel field, institutions
(matched on their distinctive words: "Princeton University" ~ "Institute for
Advanced Study in Princeton") and named works (quoted titles and the key words
after "discovered / developed / wrote / known for ..." in the grounding text).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

NATIONALITIES = (
    "american|british|english|scottish|welsh|irish|french|german|austrian|swiss|italian|spanish|portuguese|"
    "dutch|belgian|danish|swedish|norwegian|finnish|polish|russian|ukrainian|czech|hungarian|serbian|croatian|"
    "greek|turkish|indian|pakistani|chinese|japanese|korean|canadian|mexican|brazilian|argentine|australian|"
    "nigerian|egyptian|kenyan|south african|israeli|iranian|persian|arab|roman|prussian|soviet|new zealand"
)
OCCUPATION_GROUPS: dict[str, str] = {
    "physicist": "physics", "astronomer": "physics", "astrophysicist": "physics", "cosmologist": "physics",
    "chemist": "chemistry", "crystallographer": "chemistry", "biochemist": "chemistry",
    "mathematician": "math", "statistician": "math", "logician": "math",
    "biologist": "biology", "naturalist": "biology", "botanist": "biology", "geneticist": "biology",
    "microbiologist": "biology", "zoologist": "biology", "ecologist": "biology", "neuroscientist": "biology",
    "computer scientist": "computing", "programmer": "computing", "cryptanalyst": "computing",
    "engineer": "engineering", "inventor": "engineering",
    "physician": "medicine", "doctor": "medicine", "surgeon": "medicine",
    "geologist": "geology", "economist": "economics", "linguist": "linguistics",
    "philosopher": "philosophy", "psychologist": "psychology",
    "painter": "arts", "artist": "arts", "sculptor": "arts",
    "composer": "music", "musician": "music", "singer": "music",
    "novelist": "writing", "writer": "writing", "poet": "writing", "playwright": "writing",
    "actor": "acting", "actress": "acting",
    "politician": "politics", "president": "politics", "statesman": "politics",
    "astronaut": "spaceflight", "explorer": "exploration", "architect": "architecture",
    "entrepreneur": "business", "businessman": "business",
}
GENERIC = {"scientist", "researcher", "professor", "scholar", "pioneer", "academic", "teacher"}
SCIENCE = {"physics", "chemistry", "math", "biology", "computing", "engineering", "medicine", "geology",
           "economics", "linguistics", "psychology"}
_OCC = "|".join(sorted(list(OCCUPATION_GROUPS) + list(GENERIC), key=len, reverse=True))
_YEAR = r"(1[0-9]{3}|20[0-9]{2})"
_LIFESPAN = re.compile(rf"\(\s*(?:born\s+|b\.\s*)?(?:[A-Z][a-z]+\s+\d{{1,2}},\s+)?{_YEAR}\s*[–—-]\s*"
                       rf"(?:[A-Z][a-z]+\s+\d{{1,2}},\s+)?{_YEAR}\s*\)")
# "William Herschel, 1746-1817, was ..." (an unbracketed lifespan right after the name)
_LIFESPAN_COMMA = re.compile(rf"^[^.,]{{0,80}},\s*{_YEAR}\s*[–—-]\s*{_YEAR}\s*,")
_LIVED = re.compile(rf"\blived\s+(?:from\s+)?{_YEAR}\s*(?:to|until|-|–)\s*{_YEAR}\b", re.IGNORECASE)
_BORN = re.compile(rf"\bborn\b[^.;()]{{0,50}}?\b{_YEAR}\b", re.IGNORECASE)
_DIED = re.compile(rf"\b(?:died|passed away|death)\b[^.;()]{{0,50}}?\b{_YEAR}\b", re.IGNORECASE)
_NOBEL = re.compile(r"\bNobel\s+(?:Prize|Peace Prize|Memorial Prize)(?:\s+in\s+(?:the\s+)?(\w+))?", re.IGNORECASE)
_IDENTITY = re.compile(
    rf"\b(?:was|is|were|became)\s+(?:a|an)\s+((?:[\w-]+,?\s+){{0,6}}?(?:{_OCC}))s?\b", re.IGNORECASE)
_NATIONALITY = re.compile(rf"\b({NATIONALITIES})(?:-born)?\b", re.IGNORECASE)
_OCC_WORD = re.compile(rf"\b({_OCC})s?\b", re.IGNORECASE)
_CENTURY = re.compile(r"\b(1[0-9]|2[01]|[1-9])(?:st|nd|rd|th)?[\s-]+century\b", re.IGNORECASE)
# A dated deed of the person: "he published ... in 1978", "she was awarded ... in 1979".
_DEED = re.compile(r"\b(?:he|she|they|his|her)\b[^.;]{0,60}?\b(?:discover\w*|invent\w*|publish\w*|propos\w*|"
                   r"develop\w*|dubbed|won|awarded|received|wrote|founded|formulated|introduced)\b[^.;]{0,60}?"
                   rf"\b{_YEAR}\b", re.IGNORECASE)
# Umbrella nationalities: a "British" answer about an English person is no contradiction.
_UMBRELLA = {"english": "british", "scottish": "british", "welsh": "british", "prussian": "german",
             "persian": "iranian"}
_NOBEL_FIELDS = {"physics": "physics", "chemistry": "chemistry", "literature": "literature", "peace": "peace",
                 "medicine": "medicine", "physiology": "medicine", "economics": "economics",
                 "economic": "economics"}


_INSTITUTION = re.compile(
    r"(?:\b[A-Z][\w.&'-]+\s+){0,3}\b(?:University|Institute|College|Academy|Laborator(?:y|ies)|Society|"
    r"Observatory|Museum|School|Hospital|Polytechnic)\b(?:\s+(?:of|for)\s+(?:the\s+)?[A-Z][\w-]+(?:\s+[A-Z][\w-]+){0,3})?"
    r"|\b(?:MIT|CERN|NASA|IBM|Caltech|Princeton|Harvard|Oxford|Cambridge|Stanford|Berkeley|Sorbonne|Bell Labs|"
    r"Yale|ETH|Columbia|Göttingen|Gottingen)\b")
_INSTITUTION_GENERIC = {"university", "institute", "college", "academy", "laboratory", "laboratories", "society",
                        "observatory", "museum", "school", "hospital", "polytechnic", "of", "for", "the", "royal",
                        "national", "state", "he", "she", "they", "his", "her", "at", "in", "and"}
_TITLE = re.compile(r"[\"“*_]([A-Z][^\"”*_\n]{2,80})[\"”*_]")
_WORK = re.compile(r"\b(?:discover(?:ed|y of)|co-discovered|develop(?:ed|ment of)|formulated|proposed|invent(?:ed|ion of)|"
                   r"introduced|wrote|published|founded|created|designed|built|devised|pioneered|established|"
                   r"predicted|known for|famous for|remembered for)\s+([^.;:,()]{3,120})", re.IGNORECASE)
_WORK_STOP = {"about", "after", "against", "along", "among", "based", "became", "before", "being", "between",
              "during", "early", "either", "field", "first", "forms", "further", "their", "there", "these",
              "those", "through", "under", "where", "which", "while", "would", "other", "theory", "theories",
              "work", "works", "known", "important", "several", "modern", "later", "including", "years",
              "research", "studies", "science", "scientific", "major", "number", "method", "methods",
              "model", "models", "using", "widely", "called", "named", "making", "great", "world", "since",
              "special", "general", "equation", "effect", "concept", "principle", "worked", "working", "nobel",
              "prize", "award", "three", "second", "physics", "chemistry", "medicine"}


def institutions(text: str) -> dict[str, frozenset[str]]:
    """Institution spans in `text`, each with its distinctive (non-generic) words, lower-cased."""
    out: dict[str, frozenset[str]] = {}
    for match in _INSTITUTION.finditer(text):
        key = frozenset(w.lower() for w in re.findall(r"[\w-]+", match.group(0))) - _INSTITUTION_GENERIC
        if key:
            out[match.group(0).strip()] = key
    return out


def work_terms(text: str) -> set[str]:
    """Key words of named works in a grounding text: quoted titles, and words after achievement verbs."""
    terms = {m.group(1).strip().lower() for m in _TITLE.finditer(text)}
    head = re.split(r"\(|\s(?:was|is|were)\s", text, maxsplit=1)[0]  # the person's name ("Alan Turing")
    name = {w.lower() for w in re.findall(r"\w+", head)} if len(head) < 80 else set()
    for match in _WORK.finditer(text):
        for word in re.findall(r"[A-Za-z][\w'-]*", match.group(1)):
            folded = word.lower().removesuffix("'s")
            if len(folded) >= 5 and folded not in _WORK_STOP and folded not in name:
                terms.add(folded)
    return terms


@dataclass
class Facts:
    born: set[int] = field(default_factory=set)
    died: set[int] = field(default_factory=set)
    nationalities: set[str] = field(default_factory=set)
    occupations: set[str] = field(default_factory=set)  # occupation groups, generic words dropped
    nobel: set[str] = field(default_factory=set)
    spans: dict[str, str] = field(default_factory=dict)  # fact -> the span it came from


def extract_facts(text: str, *, identity_only: bool) -> Facts:
    """Facts stated in `text`. With `identity_only`, nationality and occupation come only from the
    first "was a(n) ..." clause (what a response claims the person *is*); otherwise from anywhere."""
    facts = Facts()
    for match in _LIFESPAN.finditer(text):
        facts.born.add(int(match.group(1)))
        facts.died.add(int(match.group(2)))
        facts.spans.setdefault("lifespan", match.group(0))
    for match in _LIFESPAN_COMMA.finditer(text):
        facts.born.add(int(match.group(1)))
        facts.died.add(int(match.group(2)))
        facts.spans.setdefault("lifespan", match.group(0))
    for match in _LIVED.finditer(text):
        facts.born.add(int(match.group(1)))
        facts.died.add(int(match.group(2)))
        facts.spans.setdefault("lifespan", match.group(0))
    for match in _BORN.finditer(text):
        facts.born.add(int(match.group(1)))
        facts.spans.setdefault("born", match.group(0))
    for match in _DIED.finditer(text):
        facts.died.add(int(match.group(1)))
        facts.spans.setdefault("died", match.group(0))
    for match in _NOBEL.finditer(text):
        if match.group(1) and match.group(1).lower() in _NOBEL_FIELDS:
            facts.nobel.add(_NOBEL_FIELDS[match.group(1).lower()])
            facts.spans.setdefault("nobel", match.group(0))
        elif "peace" in match.group(0).lower():
            facts.nobel.add("peace")
            facts.spans.setdefault("nobel", match.group(0))
    if identity_only:
        clause = _IDENTITY.search(text)
        scope = clause.group(0) if clause else ""
        if clause:
            facts.spans["identity"] = clause.group(0)
        words = _OCC_WORD.findall(scope)
        words = [w for w in words if w.lower() not in GENERIC][-1:]  # the head noun: "a chemist and physicist"
        # keeps "physicist"; coordinated nouns are rare in the first clause and both would be in the reference
    else:
        scope = text
        words = _OCC_WORD.findall(scope)
    nationalities = {n.lower() for n in _NATIONALITY.findall(scope)}
    facts.nationalities = nationalities | {_UMBRELLA[n] for n in nationalities if n in _UMBRELLA}
    facts.occupations = {OCCUPATION_GROUPS[w.lower()] for w in words if w.lower() in OCCUPATION_GROUPS}
    return facts


def contradictions(response: str, reference: str) -> list[str]:
    """Facts in `response` that the grounding `reference` contradicts (empty list when none)."""
    ref = extract_facts(reference, identity_only=False)
    said = extract_facts(response, identity_only=True)
    found: list[str] = []
    for kind, stated, truth in (("born", said.born, ref.born), ("died", said.died, ref.died)):
        if stated and truth and not any(abs(s - t) <= 1 for s in stated for t in truth):
            found.append(f"{kind} {sorted(stated)} vs reference {sorted(truth)}"
                         f" ({said.spans.get(kind) or said.spans.get('lifespan', '')})")
    if said.nationalities and ref.nationalities and not (said.nationalities & ref.nationalities):
        found.append(f"nationality {sorted(said.nationalities)} vs reference {sorted(ref.nationalities)}"
                     f" ({said.spans.get('identity', '')})")
    if said.occupations and ref.occupations and not (said.occupations & ref.occupations):
        found.append(f"field {sorted(said.occupations)} vs reference {sorted(ref.occupations)}"
                     f" ({said.spans.get('identity', '')})")
    lifespan = (min(ref.born), max(ref.died)) if ref.born and ref.died else None
    if lifespan:
        first = re.split(r"(?<=[.!?])\s+", response.strip(), maxsplit=1)[0]
        born_century = re.compile(r"\bborn\b[^.;]{0,50}?" + _CENTURY.pattern, re.IGNORECASE)
        for match in list(_CENTURY.finditer(first)) + list(born_century.finditer(response)):
            number = int(match.group(match.lastindex or 1))
            start, end = (number - 1) * 100 + 1, number * 100
            if end < lifespan[0] or start > lifespan[1]:
                found.append(f"{match.group(0).strip()} vs reference lifespan {lifespan[0]}-{lifespan[1]}")
                break
        for match in _DEED.finditer(response):
            year = int(match.group(1))
            if year > lifespan[1] + 1 or year < lifespan[0] + 5:
                found.append(f"'{match.group(0).strip()}' outside reference lifespan {lifespan[0]}-{lifespan[1]}")
                break
    if said.nobel and ref.nobel and not (said.nobel <= ref.nobel):
        found.append(f"Nobel Prize in {sorted(said.nobel - ref.nobel)} vs reference {sorted(ref.nobel)}")
    return found


def supported_facts(response: str, reference: str) -> list[str]:
    """Facts in `response` that the reference confirms (used as evidence for `answers_real`)."""
    ref = extract_facts(reference, identity_only=False)
    said = extract_facts(response, identity_only=True)
    out = [f"born {y}" for y in said.born if any(abs(y - t) <= 1 for t in ref.born)]
    out += [f"died {y}" for y in said.died if any(abs(y - t) <= 1 for t in ref.died)]
    out += [f"nationality {n}" for n in sorted(said.nationalities & ref.nationalities)]
    out += [f"field {o}" for o in sorted(said.occupations & ref.occupations)]
    out += [f"Nobel {f}" for f in sorted(said.nobel & ref.nobel)]
    said_keys = list(institutions(response).values())
    out += [f"institution {span}" for span, key in institutions(reference).items()
            if any(key & other for other in said_keys)]
    lowered = response.lower()
    out += [f"work {term}" for term in sorted(work_terms(reference))
            if re.search(rf"\b{re.escape(term)}\b", lowered)]
    return list(dict.fromkeys(out))
