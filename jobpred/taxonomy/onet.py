"""O*NET-SOC 2019 lookups over the tables shipped in ``jobpred/taxonomy/data`` (built by tools/build_taxonomy.py).

    from jobpred.taxonomy import Taxonomy
    tax = Taxonomy.load()
    tax.title("29-1141.00")            # 'Registered Nurses'
    tax.to_code("Registered Nurses")   # '29-1141.00' (also accepts a code)
    tax.related("29-1141.00")[:3]      # [('29-1171.00', 1), ...]  (related code, O*NET Index)

Everything here is read-only and small (~1 MB of Parquet); :meth:`Taxonomy.load` caches one instance per process.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

import polars as pl

DATA_DIR = Path(__file__).parent / "data"
CODE_RE = re.compile(r"^\d{2}-\d{4}\.\d{2}$")

# O*NET "Required Level of Education" categories (RL scale, 1-12), used to gate occupations by degree.
EDUCATION_LEVELS = {
    1: "Less than a High School Diploma",
    2: "High School Diploma",
    3: "Post-Secondary Certificate",
    4: "Some College Courses",
    5: "Associate's Degree",
    6: "Bachelor's Degree",
    7: "Post-Baccalaureate Certificate",
    8: "Master's Degree",
    9: "Post-Master's Certificate",
    10: "First Professional Degree",
    11: "Doctoral Degree",
    12: "Post-Doctoral Training",
}


def read_table(name: str) -> pl.DataFrame:
    """One packaged table: occupations, related, titles, education, career_changers, esco_crosswalk,
    esco_occupations."""
    return pl.read_parquet(DATA_DIR / f"{name}.parquet")


def _norm_title(title: str) -> str:
    return " ".join(title.casefold().split())


@dataclass(frozen=True)
class Occupation:
    code: str
    title: str
    job_zone: int | None
    data_level: bool


class Taxonomy:
    """The 1,016 O*NET-SOC 2019 occupations and their relations."""

    def __init__(self) -> None:
        occ = read_table("occupations")
        self.occupations: dict[str, Occupation] = {
            r["code"]: Occupation(r["code"], r["title"], r["job_zone"], r["data_level"])
            for r in occ.iter_rows(named=True)
        }
        self.descriptions: dict[str, str] = dict(zip(occ["code"], occ["description"]))
        self._by_title = {_norm_title(o.title): c for c, o in self.occupations.items()}
        self.data_level_codes: list[str] = sorted(c for c, o in self.occupations.items() if o.data_level)

        rel = read_table("related").sort(["code", "index"])
        self._related: dict[str, list[tuple[str, int]]] = {}
        for code, group in rel.group_by("code", maintain_order=True):
            self._related[code[0]] = list(zip(group["related_code"], group["index"].cast(int)))
        ccm = read_table("career_changers").sort(["code", "index"])
        self._changers: dict[str, list[tuple[str, int]]] = {}
        for code, group in ccm.group_by("code", maintain_order=True):
            self._changers[code[0]] = list(zip(group["related_code"], group["index"].cast(int)))

    @classmethod
    @functools.cache
    def load(cls) -> Taxonomy:
        return cls()

    # -- identity -----------------------------------------------------------------------------------
    def __contains__(self, code: object) -> bool:
        return code in self.occupations

    def __len__(self) -> int:
        return len(self.occupations)

    def title(self, code: str) -> str:
        return self.occupations[code].title

    def titles(self) -> list[str]:
        """Every official title once, sorted (the choices of a constrained answer)."""
        return sorted({o.title for o in self.occupations.values()})

    def job_zone(self, code: str) -> int | None:
        occ = self.occupations.get(code)
        return occ.job_zone if occ else None

    @staticmethod
    def major_group(code: str) -> str:
        """SOC major group, the first two digits ('29' = Healthcare Practitioners and Technical)."""
        return code[:2]

    def to_code(self, value: str | None) -> str | None:
        """An O*NET-SOC 2019 code or official title (any case/spacing) -> its code; anything else -> None.

        This is the strict mapping used for scoring: alternate titles are *not* accepted here (that is the
        normaliser's job), so a prediction that is not an O*NET-SOC 2019 title counts as invalid.
        """
        if not value or not isinstance(value, str):
            return None
        value = value.strip()
        if CODE_RE.match(value):
            return value if value in self.occupations else None
        return self._by_title.get(_norm_title(value))

    # -- relations ----------------------------------------------------------------------------------
    def related(self, code: str) -> list[tuple[str, int]]:
        """O*NET Related Occupations of ``code`` as (related code, Index), Index 1 = most related; [] if none."""
        return self._related.get(code, [])

    def related_index(self, code: str, other: str) -> int | None:
        for related_code, index in self.related(code):
            if related_code == other:
                return index
        return None

    def career_changers(self, code: str) -> list[tuple[str, int]]:
        """Career Changers Matrix: occupations people from ``code`` moved to, Index 1 = most common."""
        return self._changers.get(code, [])
