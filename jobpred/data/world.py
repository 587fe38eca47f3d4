"""The O*NET "world" synthetic careers move in: occupations as array indices, with their transition tables.

Built once per process from the packaged taxonomy (about 1 s) and then used by :mod:`jobpred.data.synth`
with numpy only. All tables index the 923 data-level O*NET-SOC 2019 occupations (the ones with Job Zones
and Related Occupations); ``-1`` pads missing entries.
"""

from __future__ import annotations

import functools

import numpy as np
import polars as pl

from jobpred.taxonomy import Taxonomy, read_table

# Education levels a synthetic person can hold, on O*NET's RL scale (1-12), with the degree names used.
DEGREES: dict[int, list[str]] = {
    2: ["High School Diploma", "GED"],
    3: ["Certificate", "Vocational Diploma"],
    5: ["AA", "AS", "Associate of Applied Science"],
    6: ["BSc", "BA", "Bachelor of Science", "B.Eng"],
    8: ["MSc", "MBA", "MA", "M.Eng"],
    11: ["PhD", "MD", "JD"],
}
LEVELS = np.array(sorted(DEGREES), dtype=np.int8)  # (6,) 2,3,5,6,8,11
LEVEL_PROBS = np.array([0.30, 0.12, 0.13, 0.30, 0.12, 0.03])

# What people study before working in a SOC major group (first two digits of the code).
FIELDS: dict[str, str] = {
    "11": "Business Administration", "13": "Finance", "15": "Computer Science", "17": "Engineering",
    "19": "Biology", "21": "Social Work", "23": "Law", "25": "Education", "27": "Fine Arts",
    "29": "Nursing", "31": "Health Sciences", "33": "Criminal Justice", "35": "Culinary Arts",
    "37": "Facilities Management", "39": "Cosmetology", "41": "Marketing", "43": "Business Administration",
    "45": "Agriculture", "47": "Construction Technology", "49": "Automotive Technology",
    "51": "Manufacturing Technology", "53": "Logistics", "55": "Military Science",
}
_ZONE_EDUCATION = {1: 1, 2: 2, 3: 3, 4: 6, 5: 8}  # fallback where O*NET has no RL data for a code


def _typical_education(codes: list[str], zones: np.ndarray) -> np.ndarray:
    """The RL category at which half of incumbents are covered (the median required education)."""
    rl = read_table("education").filter(pl.col("scale") == "RL").sort(["code", "category"])
    rl = rl.with_columns((pl.col("percent").cum_sum().over("code")).alias("cum"))
    median = rl.filter(pl.col("cum") >= 50).group_by("code").agg(pl.col("category").min())
    lookup = dict(zip(median["code"], median["category"]))
    return np.array(
        [lookup.get(c, _ZONE_EDUCATION[int(z)]) for c, z in zip(codes, zones)], dtype=np.int8
    )


class World:
    """Arrays over the data-level occupations; see the module docstring."""

    def __init__(self) -> None:
        tax = Taxonomy.load()
        self.codes: list[str] = tax.data_level_codes
        self.n = len(self.codes)
        index = {c: i for i, c in enumerate(self.codes)}
        self.zone = np.array([tax.job_zone(c) for c in self.codes], dtype=np.int8)  # (n,) 1..5
        self.major = np.array([int(c[:2]) for c in self.codes], dtype=np.int8)  # (n,) SOC major group
        self.education = _typical_education(self.codes, self.zone)  # (n,) RL category
        self.related = np.full((self.n, 20), -1, dtype=np.int32)  # (n, 20) by O*NET Index
        self.changers = np.full((self.n, 10), -1, dtype=np.int32)  # (n, 10) Career Changers Matrix
        for c, i in index.items():
            for related, rank in tax.related(c):
                if related in index:
                    self.related[i, rank - 1] = index[related]
            for target, rank in tax.career_changers(c):
                if target in index and rank <= 10:
                    self.changers[i, rank - 1] = index[target]
        # Occupations per (major group, job zone), for "promotion" moves within a field.
        self.by_group_zone: dict[tuple[int, int], np.ndarray] = {}
        for i in range(self.n):
            self.by_group_zone.setdefault((int(self.major[i]), int(self.zone[i])), []).append(i)  # type: ignore[arg-type]
        self.by_group_zone = {k: np.array(v) for k, v in self.by_group_zone.items()}
        self._titles(index)

    def _titles(self, index: dict[str, int]) -> None:
        """Raw-title pools per occupation (official, alternate, short titles), as flat array + offsets."""
        titles = read_table("titles").filter(pl.col("code").is_in(self.codes))
        titles = titles.with_columns(pl.col("code").replace_strict(index, return_dtype=pl.Int32).alias("i"))
        titles = titles.sort(["i", "source", "title"])
        self.title_text = titles["title"].to_numpy()  # (T,) object
        counts = np.bincount(titles["i"].to_numpy(), minlength=self.n)
        self.title_offset = np.concatenate([[0], np.cumsum(counts)])  # (n+1,)

    @classmethod
    @functools.cache
    def load(cls) -> World:
        return cls()
