"""Made-up researchers: faker names in several locales, faker-edu institutions, invented contributions.

Every candidate is checked against the real-name list (full name and surname,
accent- and case-folded); collisions are rejected and counted. Names from
locales that write another script are romanised (faker's romanised Japanese and
Chinese names; a small Cyrillic transliteration table for Russian and Ukrainian).
"""

from __future__ import annotations

import random
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from latentrm.data.entities import Entity, fold, surname
from latentrm.errors import LatentrmError

# locale -> nationality adjective used in prompts
LOCALES: dict[str, str] = {
    "en_US": "American", "en_GB": "British", "de_DE": "German", "fr_FR": "French", "it_IT": "Italian",
    "es_ES": "Spanish", "nl_NL": "Dutch", "sv_SE": "Swedish", "no_NO": "Norwegian", "da_DK": "Danish",
    "fi_FI": "Finnish", "pl_PL": "Polish", "cs_CZ": "Czech", "pt_BR": "Brazilian", "tr_TR": "Turkish",
    "en_IN": "Indian", "ja_JP": "Japanese", "zh_CN": "Chinese", "ru_RU": "Russian", "uk_UA": "Ukrainian",
}
FIELDS: dict[str, tuple[str, list[str]]] = {
    "physics": ("physicist", ["spin-lattice echo imaging", "cold-atom interferometry", "plasma wake focusing",
                              "phonon drag spectroscopy", "neutron lens calibration"]),
    "chemistry": ("chemist", ["asymmetric cobalt catalysis", "ionic liquid crystallisation",
                              "photoredox ring expansion", "boron cluster synthesis"]),
    "biology": ("biologist", ["tidal-zone symbiosis", "mitochondrial drift mapping", "root-microbe signalling",
                              "lichen genome assembly"]),
    "mathematics": ("mathematician", ["sparse lattice sieves", "non-commutative tiling theory",
                                      "stochastic knot invariants", "tropical moduli counting"]),
    "astronomy": ("astronomer", ["brown-dwarf occultation surveys", "pulsar timing arrays",
                                 "dust-lane photometry"]),
    "geology": ("geologist", ["deep-crust fluid dating", "glacial varve chronology", "basalt magnetostratigraphy"]),
    "computer science": ("computer scientist", ["lock-free garbage collection", "probabilistic type inference",
                                                "compressed suffix routing"]),
    "neuroscience": ("neuroscientist", ["grid-cell remapping", "dendritic spike imaging",
                                        "sleep spindle decoding"]),
    "economics": ("economist", ["regional wage-shock modelling", "auction design for water rights"]),
    "genetics": ("geneticist", ["barley drought-tolerance loci", "transposon silencing in maize"]),
}
TITLES = ("Dr.", "Professor", "", "")
_CYRILLIC = dict(zip(
    "абвгдеёжзийклмнопрстуфхцчшщъыьэюяієїґ",
    ["a", "b", "v", "g", "d", "e", "yo", "zh", "z", "i", "y", "k", "l", "m", "n", "o", "p", "r", "s", "t", "u",
     "f", "kh", "ts", "ch", "sh", "shch", "", "y", "", "e", "yu", "ya", "i", "ye", "yi", "g"], strict=True))


def romanise(text: str) -> str:
    """Transliterate Cyrillic; other scripts are expected to be romanised by faker already."""
    out = []
    for char in text:
        lower = char.lower()
        if lower in _CYRILLIC:
            latin = _CYRILLIC[lower]
            out.append(latin.capitalize() if char.isupper() else latin)
        else:
            out.append(char)
    return "".join(out)


def is_latin(text: str) -> bool:
    return all(not c.isalpha() or "LATIN" in unicodedata.name(c, "") for c in text)


@dataclass
class FakeStats:
    generated: int = 0
    rejected_collisions: int = 0
    rejected_duplicates: int = 0


def _person_name(fake: object, locale: str) -> tuple[str, str]:
    if locale in ("ja_JP", "zh_CN"):
        first, last = fake.first_romanized_name(), fake.last_romanized_name()  # type: ignore[attr-defined]
    else:
        first, last = fake.first_name(), fake.last_name()  # type: ignore[attr-defined]
    first, last = romanise(first), romanise(last)
    return f"{first} {last}", last


def collides(name: str, real_full: set[str], real_surnames: set[str]) -> bool:
    """True when the full name or the surname matches a known real person (folded)."""
    return fold(name) in real_full or surname(name) in real_surnames


def fake_entities(n: int, *, real_full: set[str], real_surnames: set[str], seed: int = 0,
                  locales: Sequence[str] | None = None, stats: FakeStats | None = None) -> list[Entity]:
    """`n` made-up researchers with nationality, field, occupation, institution, department, contribution."""
    from faker import Faker
    from faker_edu import DEPARTMENTS, INSTITUTIONTYPES

    if n <= 0:
        return []
    locales = list(locales or LOCALES)
    unknown = [loc for loc in locales if loc not in LOCALES]
    if unknown:
        raise LatentrmError(f"fake-entity locale(s) {', '.join(unknown)} not supported; use {', '.join(LOCALES)}")
    stats = stats if stats is not None else FakeStats()
    rng = random.Random(seed)
    fakers = {}
    for index, locale in enumerate(locales):
        fake = Faker(locale, providers=["faker.providers.person", "faker.providers.address"])  # fast start
        fake.seed_instance(seed * 7919 + index)
        for provider in fake.providers:  # it_IT builds its city list from a set: order varies per process
            if isinstance(getattr(provider, "cities", None), list):
                provider.cities = sorted(provider.cities)
        fakers[locale] = fake
    # faker-edu's institution_name draws from a Python set (order changes per process),
    # so we draw from its sorted word lists with our own RNG to stay reproducible.
    from faker.providers.address.en import Provider as EnglishAddress

    places = sorted(set(EnglishAddress.countries) | {"Northern", "Eastern", "Western", "Southern", "Central"})
    seen: set[str] = set()
    entities: list[Entity] = []
    attempts = 0
    while len(entities) < n:
        attempts += 1
        if attempts > 50 * n + 1000:
            raise LatentrmError(f"could not make {n} made-up names free of collisions with real people after "
                                f"{attempts} tries; lower --n-fake or add locales")
        locale = locales[attempts % len(locales)]
        fake = fakers[locale]
        name, last = _person_name(fake, locale)
        if not is_latin(name) or len(last) < 2:
            continue
        if collides(name, real_full, real_surnames):
            stats.rejected_collisions += 1
            continue
        if fold(name) in seen:
            stats.rejected_duplicates += 1
            continue
        seen.add(fold(name))
        field_name = rng.choice(sorted(FIELDS))
        occupation, topics = FIELDS[field_name]
        city = romanise(fake.city()) if hasattr(fake, "city") else ""
        plain_city = city and is_latin(city) and not re.search(r"[.()]", city)
        institution = (f"the University of {city}" if plain_city and rng.random() < 0.7
                       else f"{rng.choice(places)} {rng.choice(sorted(INSTITUTIONTYPES))}")
        decade = rng.randrange(1950, 2020, 10)
        facts = {
            "born": str(decade - rng.randint(25, 40)), "nationality": LOCALES[locale], "occupation": occupation, "field": field_name,
            "institution": institution, "department": f"the Department of {rng.choice(sorted(DEPARTMENTS))}",
            "contribution": rng.choice(topics), "decade": f"{decade}s",
            "title_name": f"{rng.choice(TITLES)} {name}".strip(), "locale": locale,
            "descriptor": f"{LOCALES[locale]} {occupation}",
        }
        entity_id = f"fake:{fold(name).replace(' ', '-')}"
        entities.append(Entity(entity_id, name, "fake", "faker", f"{LOCALES[locale]} {occupation}", "", facts))
        stats.generated += 1
    return entities
