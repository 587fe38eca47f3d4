"""Synthetic career records grounded in O*NET, for demos, tests, load tests and benchmarks.

Run as:
    jobpred synth --persons 1000 --seed 0 --out data/synth.jsonl        # or --out DIR for Parquet parts

How a career is drawn (vectorised over the persons of a partition; numpy + polars, no per-person Python):
- hidden traits per person: ambition, loyalty, propensity to change careers, propensity to go back to
  school -- written to ``<out>.traits.parquet``, never into the records;
- a first degree (O*NET's RL education scale) and a first occupation the degree allows, near the top Job
  Zone it opens;
- each next job is one of: *stay* (same occupation, new employer; loyalty), *related* (O*NET Related
  Occupations, rank r drawn with weight 1/r, tilted toward higher Job Zones by ambition and toward the
  same major group by loyalty), *changer* (the Career Changers Matrix, same weighting),
  *promotion* (same SOC major group, one Job Zone up; ambition, more likely after a new degree), or a
  *career change* to any occupation the person's education allows (change propensity). A move the
  person's education does not allow falls back to the best-ranked related occupation it does, else stays;
- going back to school raises the education level mid-career (a gap of one to two and a half years);
- tenures are log-normal (loyal people stay longer), with gaps; the last job is usually current;
- raw titles are drawn from the occupation's official, alternate and short O*NET titles, with the noise
  people add ("Sr.", "II", "Lead", case, " - Remote", abbreviations) and occasional typos.

Deterministic for (seed, partition_size): partition k uses ``numpy.random.default_rng([seed, k])``.
Memory is bounded by one partition (``synth.partition_size`` persons), so 1M persons stream.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from jobpred.config import SynthConfig
from jobpred.data.world import DEGREES, FIELDS, LEVEL_PROBS, LEVELS, World
from jobpred.storage import location

MOVES = ("stay", "related", "changer", "promotion", "change")
_ENTRY_ZONE = {2: 2, 3: 3, 5: 3, 6: 4, 8: 4, 11: 5}  # highest Job Zone a first job reaches, per degree
_DEGREE_YEARS = {2: 4, 3: 1, 5: 2, 6: 4, 8: 2, 11: 5}
_COMPANY_A = np.array(["Blue", "North", "Summit", "Pioneer", "Golden", "Harbor", "Metro", "Evergreen",
                       "Riverside", "Union", "Atlas", "Cedar", "Prairie", "Lakeside", "Keystone", "Apex"])
_COMPANY_B = np.array(["Health", "Logistics", "Foods", "Systems", "Construction", "Financial", "Retail",
                       "Manufacturing", "Energy", "Labs", "Services", "Media", "Hospitality", "Partners"])
_COMPANY_C = np.array(["Inc.", "LLC", "Group", "Co.", "Corp.", "Ltd."])
_SCHOOLS = {2: "High School", 3: "Technical Institute", 5: "Community College", 6: "State University",
            8: "State University", 11: "University"}


def _rank_probs(k: int) -> np.ndarray:
    p = 1.0 / np.arange(1, k + 1)
    return p / p.sum()


class CareerSynthesizer:
    """Generates partitions of career records; see the module docstring for the model."""

    def __init__(self, cfg: SynthConfig) -> None:
        self.cfg = cfg
        self.world = World.load()
        w = self.world
        # First-job candidates per degree level: occupations it allows, weighted toward its top zone.
        self._first: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for level in LEVELS:
            cap = _ENTRY_ZONE[int(level)]
            ok = np.flatnonzero((w.education <= level) & (w.zone <= cap))
            weight = np.exp(-(cap - w.zone[ok]).astype(float))
            self._first[int(level)] = (ok, weight / weight.sum())

    # -- careers as codes -------------------------------------------------------------------------
    def _traits(self, rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
        cfg = self.cfg
        jobs = rng.integers(cfg.min_jobs, cfg.max_jobs + 1, size=n)
        long = rng.random(n) < cfg.long_career_rate
        jobs[long] = rng.integers(60, 121, size=int(long.sum()))
        return {
            "ambition": rng.beta(2, 2, n),
            "loyalty": rng.beta(2, 2, n),
            "change_propensity": rng.beta(1.5, 3, n),
            "back_to_school": rng.beta(1, 6, n),
            "education_level": rng.choice(LEVELS, size=n, p=LEVEL_PROBS).astype(np.int8),
            "n_jobs": jobs.astype(np.int32),
            "long_career": long,
        }

    def _allowed(self, cand: np.ndarray, level: np.ndarray) -> np.ndarray:
        # One level of slack: people do get jobs slightly above their formal education.
        return (cand >= 0) & (self.world.education[np.maximum(cand, 0)] <= level + 1)

    def _pick(self, rng, options: np.ndarray, cur: np.ndarray, traits) -> np.ndarray:
        """One of ``options`` (n, k) per person: weight 1/rank, tilted by the person's traits.

        Ambitious people lean to options in a higher Job Zone, unambitious ones to lower; loyal people lean
        to options in their current SOC major group. This is what makes the whole history informative:
        the direction of past moves predicts the next one beyond what the last job alone says.
        """
        w = self.world
        valid = options >= 0
        safe = np.where(valid, options, 0)
        dz = w.zone[safe].astype(float) - w.zone[cur][:, None]  # (n, k) zone step of each option
        same = (w.major[safe] == w.major[cur][:, None]).astype(float)  # (n, k)
        tilt = 2.5 * (traits["ambition"][:, None] - 0.5) * dz + 2.0 * (traits["loyalty"][:, None] - 0.5) * same
        weight = np.where(valid, _rank_probs(options.shape[1])[None, :] * np.exp(tilt), 0.0)
        total = weight.sum(1, keepdims=True)
        cum = np.cumsum(weight, 1) / np.where(total > 0, total, 1)
        choice = (rng.random((len(cur), 1)) > cum).sum(1).clip(0, options.shape[1] - 1)
        return np.where(total[:, 0] > 0, options[np.arange(len(cur)), choice], -1)

    def _step(self, rng, cur, traits, level, new_degree) -> tuple[np.ndarray, np.ndarray]:
        """One move for each person in ``cur`` (n,) -> (next occupation (n,), move kind (n,))."""
        w, n = self.world, len(cur)
        up = (0.05 + 0.45 * traits["ambition"] + 0.3 * new_degree) * (w.zone[cur] < 5)
        weights = np.stack(
            [0.15 + 0.35 * traits["loyalty"], np.full(n, 0.35), np.full(n, 0.25), up,
             0.02 + 0.25 * traits["change_propensity"]], axis=1
        )  # (n, 5) in MOVES order
        cum = np.cumsum(weights / weights.sum(1, keepdims=True), axis=1)
        kind = (rng.random((n, 1)) > cum).sum(1).clip(0, 4)
        nxt = cur.copy()
        rel = self._pick(rng, w.related[cur], cur, traits)
        chg = self._pick(rng, w.changers[cur], cur, traits)
        nxt = np.where(kind == 1, np.where(rel >= 0, rel, cur), nxt)
        nxt = np.where(kind == 2, np.where(chg >= 0, chg, np.where(rel >= 0, rel, cur)), nxt)
        for i in np.flatnonzero(kind == 3):  # promotions: few per step, grouped lookups
            pool = w.by_group_zone.get((int(w.major[cur[i]]), int(w.zone[cur[i]]) + 1))
            nxt[i] = rng.choice(pool) if pool is not None else nxt[i] if rel[i] < 0 else rel[i]
        ch = np.flatnonzero(kind == 4)
        nxt[ch] = rng.integers(0, w.n, size=len(ch))
        # Education gate: fall back to the best-ranked related occupation allowed, else stay.
        bad = np.flatnonzero(~self._allowed(nxt, level))
        for i in bad:
            options = w.related[cur[i]]
            ok = options[self._allowed(options, np.full(20, level[i]))]
            nxt[i] = ok[0] if len(ok) else cur[i]
            kind[i] = 1 if len(ok) else 0
        return nxt, kind

    def _careers(self, rng: np.random.Generator, traits: dict[str, np.ndarray]):
        """Occupation sequences: (jobs table as arrays, degrees earned mid-career)."""
        n = len(traits["n_jobs"])
        level = traits["education_level"].copy()
        cur = np.empty(n, dtype=np.int64)
        for lv in np.unique(level):
            idx = np.flatnonzero(level == lv)
            ok, p = self._first[int(lv)]
            cur[idx] = rng.choice(ok, size=len(idx), p=p)
        persons, seq, codes, kinds, school = [np.arange(n)], [np.zeros(n, np.int32)], [cur.copy()], \
            [np.full(n, -1)], [np.zeros(n, bool)]
        degrees: list[tuple[int, int, int]] = []  # (person, before job seq, new level)
        for t in range(1, int(traits["n_jobs"].max())):
            active = np.flatnonzero(traits["n_jobs"] > t)
            goes = (rng.random(len(active)) < 0.3 * traits["back_to_school"][active]) & (level[active] < 11)
            for i in active[goes]:
                level[i] = LEVELS[np.searchsorted(LEVELS, level[i]) + 1]
                degrees.append((int(i), t, int(level[i])))
            sub = {k: v[active] for k, v in traits.items()}
            nxt, kind = self._step(rng, cur[active], sub, level[active], goes.astype(float))
            cur[active] = nxt
            persons.append(active), seq.append(np.full(len(active), t, np.int32)), codes.append(nxt)
            kinds.append(kind), school.append(goes)
        jobs = {
            "person": np.concatenate(persons), "seq": np.concatenate(seq), "occ": np.concatenate(codes),
            "move": np.concatenate(kinds), "after_school": np.concatenate(school),
        }
        order = np.lexsort((jobs["seq"], jobs["person"]))
        return {k: v[order] for k, v in jobs.items()}, degrees, level

    # -- dates ---------------------------------------------------------------------------------------
    def _dates(self, rng, jobs, traits) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Start/end months (months since year 0) per job, and each person's career start month."""
        cfg, p = self.cfg, jobs["person"]
        mu = np.log(30) + 0.8 * (traits["loyalty"][p] - 0.5)
        tenure = np.clip(rng.lognormal(mu, 0.6), 3, 240)
        tenure[traits["long_career"][p]] = rng.integers(1, 7, size=int(traits["long_career"][p].sum()))
        gap = rng.geometric(0.5, size=len(p)) - 1 + np.where(jobs["after_school"], rng.integers(12, 31, len(p)), 0)
        span = tenure + gap
        total = np.bincount(p, weights=span, minlength=len(traits["n_jobs"]))
        last = cfg.last_year * 12 + 11
        room = last - cfg.first_year_min * 12
        scale = np.minimum(1.0, room / np.maximum(total, 1))  # squeeze careers that would start too early
        span = np.maximum(np.round(span * scale[p]), 1)
        tenure = np.maximum(np.minimum(np.round(tenure * scale[p]), span), 1)
        total = np.bincount(p, weights=span, minlength=len(total))
        slack = np.maximum(room - total, 0)
        career_start = last - total - np.floor(rng.random(len(total)) * np.minimum(slack, 36))
        offset = np.cumsum(span) - span  # exclusive prefix sum, restarted per person below
        first = np.searchsorted(p, np.arange(len(total)))
        start = career_start[p] + offset - offset[first][p] + (span - tenure)
        end = start + tenure - 1
        is_last = np.append(p[1:] != p[:-1], True)
        current = is_last & (rng.random(len(p)) < 0.75)
        end = np.where(current | (end > last), -1, end)
        return start.astype(np.int64), end.astype(np.int64), career_start.astype(np.int64)

    # -- text ----------------------------------------------------------------------------------------
    def _titles(self, rng, occ: np.ndarray) -> pl.Series:
        w, cfg, n = self.world, self.cfg, len(occ)
        count = w.title_offset[occ + 1] - w.title_offset[occ]
        raw = pl.Series("title", w.title_text[w.title_offset[occ] + (rng.random(n) * count).astype(np.int64)])
        noise = np.where(rng.random(n) < cfg.title_noise, rng.integers(1, 9, n), 0)
        s = pl.DataFrame({"t": raw, "k": noise})
        t = pl.col("t")
        abbreviated = (t.str.replace("Manager", "Mgr").str.replace("Assistant", "Asst.")
                       .str.replace("Representative", "Rep").str.replace("Senior", "Sr."))
        out = s.select(
            pl.when(pl.col("k") == 1).then(pl.lit("Sr. ") + t)
            .when(pl.col("k") == 2).then(pl.lit("Senior ") + t)
            .when(pl.col("k") == 3).then(t + pl.lit(" II"))
            .when(pl.col("k") == 4).then(pl.lit("Lead ") + t)
            .when(pl.col("k") == 5).then(t.str.to_uppercase())
            .when(pl.col("k") == 6).then(t.str.to_lowercase())
            .when(pl.col("k") == 7).then(t + pl.lit(" - Remote"))
            .when(pl.col("k") == 8).then(abbreviated)
            .otherwise(t)
        ).to_series()
        typo = np.flatnonzero(rng.random(n) < cfg.typo_rate)
        if len(typo):  # drop one inner character
            vals = out.to_numpy().copy()
            for i in typo:
                v = vals[i]
                if len(v) > 4:
                    j = 1 + int(rng.integers(len(v) - 2))
                    vals[i] = v[:j] + v[j + 1:]
            out = pl.Series("title", vals)
        return out.alias("title")

    @staticmethod
    def _fmt(months: pl.Expr, year_only: pl.Expr) -> pl.Expr:
        year = (months // 12).cast(pl.String)
        month = (months % 12 + 1).cast(pl.String).str.zfill(2)
        return (pl.when(months < 0).then(None)
                .when(year_only).then(year)
                .otherwise(pl.concat_str([year, month], separator="-")))

    # -- a partition ---------------------------------------------------------------------------------
    def partition(self, k: int, first_person: int, n: int) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Persons ``first_person .. first_person+n-1`` as (records, traits)."""
        cfg, w = self.cfg, self.world
        rng = np.random.default_rng([cfg.seed, k])
        traits = self._traits(rng, n)
        start_level = traits["education_level"].copy()
        jobs, degrees, final_level = self._careers(rng, traits)
        start, end, career_start = self._dates(rng, jobs, traits)
        ids = np.array([f"syn{cfg.seed}-{first_person + i:08d}" for i in range(n)], dtype=object)
        year_only = rng.random(n) < 0.1
        p = jobs["person"]
        codes = np.array(w.codes, dtype=object)[jobs["occ"]]
        has_code = rng.random(len(p)) < cfg.code_rate
        company = (_COMPANY_A[rng.integers(0, len(_COMPANY_A), len(p))] + " "
                   + _COMPANY_B[rng.integers(0, len(_COMPANY_B), len(p))] + " "
                   + _COMPANY_C[rng.integers(0, len(_COMPANY_C), len(p))])
        job_df = pl.DataFrame({
            "person": p, "seq": jobs["seq"], "title": self._titles(rng, jobs["occ"]), "company": company,
            "s": start, "e": end, "y": year_only[p],
            "onet_code": pl.Series(np.where(has_code, codes, None).tolist(), dtype=pl.String),
        })
        job_df = job_df.with_columns(
            start=self._fmt(pl.col("s"), pl.col("y")), end=self._fmt(pl.col("e"), pl.col("y"))
        )
        experience = job_df.group_by("person", maintain_order=True).agg(
            pl.struct("title", "company", "start", "end", "onet_code").alias("experience")
        )
        education = self._education(rng, traits, start_level, degrees, career_start, jobs, start, year_only)
        records = (
            pl.DataFrame({"person": np.arange(n), "person_id": ids})
            .join(education, on="person", how="left")
            .join(experience, on="person", how="left")
            .select("person_id", "education", "experience")
        )
        trait_df = pl.DataFrame({
            "person_id": ids, **{k: traits[k] for k in ("ambition", "loyalty", "change_propensity",
                                                         "back_to_school", "n_jobs", "long_career")},
            "education_level_start": start_level, "education_level_end": final_level,
        })
        return records, trait_df

    def _education(self, rng, traits, start_level, degrees, career_start, jobs, job_start, year_only):
        """First degree before the career, plus degrees earned mid-career (in the gap before a job)."""
        n = len(start_level)
        first_occ = jobs["occ"][np.searchsorted(jobs["person"], np.arange(n))]
        rows_p, rows_lv, rows_end, rows_major = list(range(n)), list(start_level), \
            list(career_start - rng.integers(0, 7, n)), list(self.world.major[first_occ])
        job_index = {(int(pp), int(s)): i for i, (pp, s) in enumerate(zip(jobs["person"], jobs["seq"]))}
        for person, seq, lv in degrees:
            i = job_index[(person, seq)]
            rows_p.append(person), rows_lv.append(lv), rows_end.append(job_start[i] - 1)
            rows_major.append(self.world.major[jobs["occ"][i]])
        lv = np.array(rows_lv)
        end = np.array(rows_end)
        start = end - np.vectorize(_DEGREE_YEARS.get)(lv) * 12 + 1
        degree = np.array([DEGREES[int(v)][int(rng.integers(len(DEGREES[int(v)])))] for v in lv], dtype=object)
        field = np.array([None if v == 2 else FIELDS.get(f"{m:02d}", "General Studies")
                          for v, m in zip(lv, rows_major)], dtype=object)
        school = np.array([_SCHOOLS[int(v)] for v in lv], dtype=object)
        df = pl.DataFrame({
            "person": np.array(rows_p), "degree": pl.Series(degree.tolist(), dtype=pl.String),
            "field": pl.Series(field.tolist(), dtype=pl.String),
            "institution": pl.Series(school.tolist(), dtype=pl.String), "s": start, "e": end,
            "y": year_only[np.array(rows_p)],
        })
        df = df.sort(["person", "s"]).with_columns(
            start=self._fmt(pl.col("s"), pl.col("y")), end=self._fmt(pl.col("e"), pl.col("y"))
        )
        return df.group_by("person", maintain_order=True).agg(
            pl.struct("degree", "field", "institution", "start", "end").alias("education")
        )

    def partitions(self) -> Iterator[tuple[pl.DataFrame, pl.DataFrame]]:
        size = self.cfg.partition_size
        for k, first in enumerate(range(0, self.cfg.persons, size)):
            yield self.partition(k, first, min(size, self.cfg.persons - first))


def traits_path(out: Path) -> Path:
    """Where the hidden traits of ``out`` go: a sibling file, never inside the records."""
    return out.with_name(out.name + ".traits.parquet")


def write_synthetic(cfg: SynthConfig, out: str | Path, progress: bool = True) -> dict:
    """Write ``cfg.persons`` records to ``out`` (``*.jsonl`` file, else a Parquet directory) + traits."""
    out = location(out)
    started = time.perf_counter()
    synth = CareerSynthesizer(cfg)
    jsonl = out.suffix == ".jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    if not jsonl:
        out.mkdir(parents=True, exist_ok=True)
        for old in out.glob("part-*.parquet"):
            old.unlink()
    writer: pq.ParquetWriter | None = None
    persons = jobs = 0
    from tqdm import tqdm

    bar = tqdm(total=cfg.persons, unit="person", disable=not progress, desc="synth")
    with (out.open("wb") if jsonl else io.BytesIO()) as sink:
        for k, (records, traits) in enumerate(synth.partitions()):
            if jsonl:
                records.write_ndjson(sink)
            else:
                records.write_parquet(str(out / f"part-{k:05d}.parquet"), compression="zstd")
            table = traits.to_arrow()
            writer = writer or pq.ParquetWriter(str(traits_path(out)), table.schema, compression="zstd")
            writer.write_table(table)
            persons += records.height
            jobs += int(records["experience"].list.len().sum())
            bar.update(records.height)
    bar.close()
    if writer:
        writer.close()
    return {"persons": persons, "experiences": jobs, "out": str(out), "traits": str(traits_path(out)),
            "seconds": round(time.perf_counter() - started, 2)}
