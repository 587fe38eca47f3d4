"""Build the compact O*NET / ESCO tables that ship inside the package.

The source files (O*NET 29.3 text release, the Career Changers Matrix, the official ESCO -> O*NET-SOC 2019
crosswalk, ESCO 1.2.0 occupations) are not part of a user's checkout; this script turns them into a few
zstd-compressed Parquet files under ``jobpred/taxonomy/data/`` that *are* committed. Run it only when the
O*NET release changes:

    python tools/build_taxonomy.py --source DIR   # DIR: the O*NET 29.3 / CCM / ESCO tables (see NOTICE)
"""

from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path

import polars as pl

OUT = Path(__file__).resolve().parents[1] / "jobpred" / "taxonomy" / "data"


def _tsv(path: Path) -> pl.DataFrame:
    return pl.read_csv(path, separator="\t", infer_schema_length=0, quote_char=None, encoding="utf8-lossy")


def _titles(onet: Path, occ: pl.DataFrame) -> pl.DataFrame:
    """Every O*NET title of every occupation once per (code, title), with what O*NET says about it: the
    strongest source (official > reported > short > alternate), how many of O*NET's title sources list it
    (the Source(s) column of Alternate Titles, codes 01-10) and whether My Next Move shows it."""
    alt = _tsv(onet / "Alternate Titles.tsv").select(
        pl.col("O*NET-SOC Code").alias("code"),
        pl.col("Alternate Title").alias("title"),
        pl.col("Short Title").alias("short_title"),
        pl.col("Source(s)").str.split(",").list.len().cast(pl.Int8).alias("n_sources"),
    )
    reported = _tsv(onet / "Sample of Reported Titles.txt").select(
        pl.col("O*NET-SOC Code").alias("code"),
        pl.col("Reported Job Title").alias("title"),
        (pl.col("Shown in My Next Move") == "Y").alias("next_move"),
    )
    short = alt.filter(pl.col("short_title").is_not_null() & (pl.col("short_title") != "")).select(
        "code", pl.col("short_title").alias("title"), "n_sources"
    )
    rank = {"official": 0, "reported": 1, "short": 2, "alternate": 3}
    rows = pl.concat(
        [
            occ.select("code", "title", pl.lit("official").alias("source"), pl.lit(1, pl.Int8).alias("n_sources")),
            reported.select("code", "title", pl.lit("reported").alias("source"), pl.lit(1, pl.Int8).alias("n_sources")),
            short.select("code", "title", pl.lit("short").alias("source"), "n_sources"),
            alt.select("code", "title", pl.lit("alternate").alias("source"), "n_sources"),
        ]
    ).with_columns(pl.col("source").replace_strict(rank, return_dtype=pl.Int8).alias("_rank"))
    return (
        rows.group_by("code", "title", maintain_order=True)
        .agg(pl.col("source").sort_by("_rank").first(), pl.col("n_sources").max())
        .join(reported.select("code", "title", "next_move"), on=["code", "title"], how="left")
        .with_columns(pl.col("next_move").fill_null(False), pl.lit(1.0, pl.Float32).alias("share"))
    )


def _esco_titles(esco: pl.DataFrame, crosswalk: pl.DataFrame) -> pl.DataFrame:
    """ESCO 1.2.0 preferred and alternative labels (English) of the ESCO occupations that the official
    crosswalk maps to at most two O*NET occupations, each label once per O*NET code; ``share`` is 1 / the
    number of codes. They fill in European wordings O*NET lacks ("shop assistant", "stock broker"); the
    normaliser gives them the lowest weight of all sources."""
    codes = crosswalk.group_by("esco_code").agg(pl.col("code").unique())
    codes = codes.filter(pl.col("code").list.len() <= 2)
    labels = esco.select(
        pl.col("code").alias("esco_code"),
        pl.concat_list(pl.col("preferredLabel"), pl.col("altLabels").fill_null("").str.split("\n")).alias("title"),
    ).explode("title").filter(pl.col("title").str.strip_chars() != "")
    return (
        labels.join(codes, on="esco_code")
        .with_columns((1.0 / pl.col("code").list.len()).cast(pl.Float32).alias("share"))
        .explode("code")
        .group_by("code", "title", maintain_order=True)
        .agg(pl.col("share").max())
        .select("code", "title", pl.lit("esco").alias("source"), pl.lit(1, pl.Int8).alias("n_sources"),
                pl.lit(False).alias("next_move"), "share")
    )


_WORD = re.compile(r"[^\w]+")
_STOP = {"of", "and", "the", "a", "an", "in", "for", "to", "on", "or"}


def _words(text: str) -> list[str]:
    return _WORD.sub(" ", text.casefold()).split()


def _contraction(short: str, word: str) -> bool:
    """"tech" / "technician", "mgr" / "manager": same first letter, the letters in order, shorter."""
    if len(short) < 2 or len(short) >= len(word) or short[0] != word[0]:
        return False
    it = iter(word)
    return all(ch in it for ch in short)


def _abbreviations(titles: list[str]) -> pl.DataFrame:
    """Abbreviations O*NET spells out itself: alternate titles of the form "X (Y)" where X and Y differ in
    one short word of one side that is the initials ("CT" / "Computed Tomography") or a contraction
    ("Tech" / "Technician") of the other side's words. One row per abbreviation with its most frequent
    expansion, kept when that expansion has at least 60% of the abbreviation's pairs."""
    pairs: dict[tuple[str, str], int] = {}
    for title in titles:
        m = re.fullmatch(r"(.+?)\s*\(([^()]+)\)\s*", title)
        if not m:
            continue
        a, b = _words(m.group(1)), _words(m.group(2))
        short, long = (a, b) if len(" ".join(a)) < len(" ".join(b)) else (b, a)
        while short and long and short[0] == long[0]:
            short, long = short[1:], long[1:]
        while short and long and short[-1] == long[-1]:
            short, long = short[:-1], long[:-1]
        if len(short) != 1 or not 1 <= len(long) <= 6 or short[0].isdigit():
            continue
        s, content = short[0], [w for w in long if w not in _STOP]
        initials = "".join(w[0] for w in long), "".join(w[0] for w in content)
        if (len(s) >= 2 and s in initials) or (len(long) == 1 and _contraction(s, long[0])):
            pairs[(s, " ".join(long))] = pairs.get((s, " ".join(long)), 0) + 1
    df = pl.DataFrame([(s, e, n) for (s, e), n in pairs.items()], schema=["short", "expansion", "pairs"], orient="row")
    df = df.with_columns(pl.col("pairs").sum().over("short").alias("_total"))
    df = df.sort(["short", "pairs", "expansion"], descending=[False, True, False]).unique("short", keep="first")
    return df.filter(pl.col("pairs") >= 0.6 * pl.col("_total")).drop("_total").sort("short")


def build(source: Path) -> dict[str, int]:
    onet = source / "onet_29_3"
    occ = _tsv(onet / "Occupation Data.txt").rename(
        {"O*NET-SOC Code": "code", "Title": "title", "Description": "description"}
    )
    zones = _tsv(onet / "Job Zones.txt").select(
        pl.col("O*NET-SOC Code").alias("code"), pl.col("Job Zone").cast(pl.Int8).alias("job_zone")
    )
    occ = occ.join(zones, on="code", how="left").with_columns(
        pl.col("job_zone").is_not_null().alias("data_level"),
        pl.col("code").str.slice(0, 2).alias("major_group"),
    )

    related = _tsv(onet / "Related Occupations.txt").select(
        pl.col("O*NET-SOC Code").alias("code"),
        pl.col("Related O*NET-SOC Code").alias("related_code"),
        pl.col("Relatedness Tier").alias("tier"),
        pl.col("Index").cast(pl.Int8).alias("index"),
    )

    titles = _titles(onet, occ)
    ete = _tsv(onet / "Education, Training, and Experience.tsv")
    ete = ete.filter(pl.col("Scale ID").is_in(["RL", "RW"])).select(
        pl.col("O*NET-SOC Code").alias("code"),
        pl.col("Scale ID").alias("scale"),
        pl.col("Category").cast(pl.Int8).alias("category"),
        pl.col("Data Value").cast(pl.Float32).alias("percent"),
    )

    ccm = _tsv(source / "onet_career_changers_matrix" / "Career Changers Matrix.tsv").select(
        pl.col("O*NET-SOC Code").alias("code"),
        pl.col("Related O*NET-SOC Code").alias("related_code"),
        pl.col("Index").cast(pl.Int8).alias("index"),
    )

    esco_x = _tsv(source / "onet_esco_crosswalk" / "ESCO_to_ONET-SOC.tsv").select(
        pl.col("ESCO/ISCO Code").alias("esco_code"),
        pl.col("ESCO/ISCO Title").alias("esco_title"),
        pl.col("O*NET-SOC 2019 Code").alias("code"),
    )
    esco_raw = pl.read_csv(source / "esco_1_2_0" / "occupations_en.csv", infer_schema_length=0)
    esco_occ = esco_raw.select(
        pl.col("conceptUri").alias("concept_uri"),
        pl.col("code").alias("esco_code"),
        pl.col("preferredLabel").alias("label"),
    )
    esco_titles = _esco_titles(esco_raw, esco_x)

    tables = {
        "occupations": occ,
        "related": related,
        "titles": pl.concat([titles, esco_titles]),
        "abbreviations": _abbreviations(titles["title"].to_list()),
        "education": ete,
        "career_changers": ccm,
        "esco_crosswalk": esco_x,
        "esco_occupations": esco_occ,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    counts = {}
    for name, df in tables.items():
        df.write_parquet(OUT / f"{name}.parquet", compression="zstd", compression_level=19)
        counts[name] = df.height
    (OUT / "VERSION.json").write_text(
        json.dumps(
            {
                "onet": "29.3 (May 2025), O*NET-SOC 2019",
                "career_changers_matrix": "O*NET 25.x, O*NET-SOC 2019",
                "esco_crosswalk": "O*NET ESCO v1.1.0 -> O*NET-SOC 2019",
                "esco": "1.2.0",
                "rows": counts,
                "derived": "title_index, title_heads, title_ranked, semantic_words, semantic_occupations and "
                           "normalizer.json are computed from these O*NET and ESCO tables, the project's curated "
                           "table of common titles (common_titles.tsv, not O*NET data) and the tuning lists "
                           "under tests/assets by tools/build_taxonomy.py; the attribution in NOTICE covers them",
                "attribution": "Includes information from the O*NET 29.3 Database by USDOL/ETA, used under "
                               "CC BY 4.0; O*NET is a trademark of USDOL/ETA. Uses the ESCO classification "
                               "of the European Commission.",
            },
            indent=2,
        )
        + "\n"
    )
    return counts


def _write(df: pl.DataFrame, name: str) -> None:
    df.write_parquet(OUT / f"{name}.parquet", compression="zstd", compression_level=19)


def normaliser_tables(dims: int = 96) -> dict[str, int]:
    """The normaliser's index (``title_index``: key, code, weight; ``title_heads``: code, head noun), as
    :meth:`TitleNormalizer.index_titles` makes it of the packaged titles and the curated table of common titles
    (``data/common_titles.tsv``), and LSA vectors for the normaliser's semantic fall-back: a word x occupation matrix of the normaliser's
    own keys (each O*NET / ESCO title of an occupation, weighted by how strongly it is listed) plus the
    occupation's O*NET description (weight 0.3 a word), positive PMI, truncated SVD to ``dims``; word and
    occupation vectors are unit rows stored as int8 with a per-row scale."""
    import numpy as np

    from jobpred.taxonomy.normalize import TitleNormalizer

    norm = TitleNormalizer(semantic=False, cache_size=0, titles=read_table_packaged("titles"))
    _write(pl.DataFrame([(k, c, w) for k, votes in norm._votes.items() for c, w in votes.items()],
                        schema={"key": pl.String, "code": pl.String, "weight": pl.Float32}, orient="row"),
           "title_index")
    _write(pl.DataFrame([(c, h) for c, hs in norm._heads.items() for h in sorted(hs)],
                        schema={"code": pl.String, "head": pl.String}, orient="row"), "title_heads")
    codes = sorted(norm.taxonomy.occupations)
    col = {c: j for j, c in enumerate(codes)}
    counts: dict[tuple[str, int], float] = {}
    for key, votes in norm._votes.items():
        for code, w in votes.items():
            for word in set(key.split()):
                counts[(word, col[code])] = counts.get((word, col[code]), 0.0) + math.log1p(w)
    for code, text in norm.taxonomy.descriptions.items():
        for word in norm._key(text).split():
            counts[(word, col[code])] = counts.get((word, col[code]), 0.0) + 0.3
    per_word: dict[str, int] = {}
    for word, _ in counts:
        per_word[word] = per_word.get(word, 0) + 1
    vocab = sorted(w for w, n in per_word.items() if n >= 2 and len(w) > 1)
    row = {w: i for i, w in enumerate(vocab)}
    m = np.zeros((len(vocab), len(codes)), dtype=np.float64)  # (V, O)
    for (word, j), v in counts.items():
        if word in row:
            m[row[word], j] += v
    total = m.sum()
    pmi = np.log(np.maximum(m * total, 1e-12) / np.outer(m.sum(1), m.sum(0)).clip(1e-12))
    ppmi = np.where(m > 0, np.maximum(pmi, 0.0), 0.0)
    evals, evecs = np.linalg.eigh(ppmi.T @ ppmi)  # (O, O): cheaper than an SVD of (V, O)
    top = np.argsort(-evals)[:dims]
    sv = np.sqrt(np.maximum(evals[top], 1e-12))
    occ_vecs = evecs[:, top] * sv  # (O, d)
    word_vecs = ppmi @ evecs[:, top]  # (V, d) = U S
    tables = {"semantic_words": (vocab, word_vecs), "semantic_occupations": (codes, occ_vecs)}
    for name, (labels, vecs) in tables.items():
        vecs = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
        scale = np.abs(vecs).max(axis=1) / 127.0
        q = np.round(vecs / scale[:, None]).astype(np.int8)
        pl.DataFrame({"word" if name == "semantic_words" else "code": labels,
                      "vec": q.tolist(), "scale": scale.astype(np.float32)},
                     schema_overrides={"vec": pl.List(pl.Int8)}).write_parquet(
            OUT / f"{name}.parquet", compression="zstd", compression_level=19)
    return {"semantic_words": len(vocab), "semantic_occupations": len(codes), "dims": dims}


ASSETS = OUT.parents[2] / "tests" / "assets"
TUNING = ("messy_titles.tsv", "tuning_titles.tsv", "tuning2_titles.tsv")  # never untuned_titles.tsv: that list measures, only
SCORE_THRESHOLD = 0.86  # where the chosen probability threshold sits on the score scale (min_match_score)


def read_titles(path: Path) -> list[tuple[str, set[str] | None]]:
    """(raw title, acceptable codes or None for "must be no match") of an evaluation list, English rows."""
    df = pl.read_csv(path, separator="\t", quote_char=None, infer_schema_length=0)
    return [(raw, None if exp == "NONE" else set(exp.split("|")))
            for raw, exp, note in df.iter_rows() if note != "non-english"]


def _examples(norm, rows, weight: float) -> tuple[list, list, list, list]:
    """Features of every candidate of every title, 1 where the candidate is acceptable, the title's index."""
    x, y, w, group = [], [], [], []
    for i, (raw, ok) in enumerate(rows):
        for feats, code in norm._candidate_features(raw):
            x.append(feats)
            y.append(float(ok is not None and code in ok))
            w.append(weight)
            group.append(i)
    return x, y, w, group


def _never_seen(n: int, seed: int):
    """O*NET titles taken out of the index, as queries whose right answers are the codes that list them."""
    from jobpred.taxonomy import normalize

    titles = read_table_packaged("titles")
    alt = titles.filter(pl.col("source") == "alternate")
    pick = alt.select("title").unique(maintain_order=True).sample(n, seed=seed)["title"].to_list()
    gold: dict[str, set[str]] = {}
    for code, title in titles.filter(pl.col("title").is_in(pick)).select("code", "title").iter_rows():
        gold.setdefault(title, set()).add(code)
    keep = titles.filter(~pl.col("title").is_in(pick))
    return normalize.TitleNormalizer(cache_size=0, titles=keep), [(t, gold[t]) for t in pick]


def _typos(n: int, seed: int) -> list[tuple[str, set[str]]]:
    """O*NET alternate titles with one typo in one word of five letters or more (a letter dropped,
    doubled or swapped with the next), as queries whose right answers are the codes that list the title."""
    import random

    rng = random.Random(seed)
    titles = read_table_packaged("titles").filter(pl.col("source") == "alternate")
    gold: dict[str, set[str]] = {}
    for code, title in titles.select("code", "title").iter_rows():
        gold.setdefault(title, set()).add(code)
    out = []
    for title in rng.sample(sorted(gold), n):
        words = title.split()
        long = [i for i, w in enumerate(words) if len(w) >= 5 and w.isalpha()]
        if not long:
            continue
        i = rng.choice(long)
        w, j = words[i], rng.randrange(1, len(words[i]) - 1)
        words[i] = rng.choice([w[:j] + w[j + 1:], w[:j] + w[j] + w[j:], w[:j] + w[j + 1] + w[j] + w[j + 2:]])
        out.append((" ".join(words), gold[title]))
    return out


def read_table_packaged(name: str) -> pl.DataFrame:
    return pl.read_parquet(OUT / f"{name}.parquet")


def _fit_logistic(x, y, w, l2: float = 0.05, steps: int = 50):
    """Weighted L2-regularised logistic regression by Newton's method (a few features, ~10k rows)."""
    import numpy as np

    x, y, w = np.asarray(x), np.asarray(y), np.asarray(w)
    beta = np.zeros(x.shape[1])
    reg = np.full(x.shape[1], l2)
    reg[0] = 0.0  # no penalty on the intercept
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(x @ beta)))
        grad = x.T @ (w * (p - y)) + reg * beta
        hess = (x * (w * p * (1 - p))[:, None]).T @ x + np.diag(reg + 1e-9)
        step = np.linalg.solve(hess, grad)
        beta -= step
        if np.abs(step).max() < 1e-8:
            break
    return beta


def _fit_choice(x, y, w, group, l2: float = 0.05, steps: int = 60):
    """Conditional logit (a softmax over each title's candidates) by damped Newton's method: maximises the
    log-probability of the title's acceptable candidates among all its candidates. A ranking model should
    compare a title's candidates with each other, which a per-candidate logistic regression does not (a
    title with 30 candidates outweighs one with 2, and "how many codes list this key" leaks into every score).
    Titles without an acceptable candidate teach the ranking nothing and are dropped."""
    import numpy as np

    x, y, w, group = np.asarray(x), np.asarray(y), np.asarray(w), np.asarray(group)
    keep = np.isin(group, np.unique(group[y > 0]))
    x, y, w, group = x[keep], y[keep], w[keep], group[keep]
    _, g = np.unique(group, return_inverse=True)  # (N,) title index, 0..G-1
    n_g = g.max() + 1
    gw = np.zeros(n_g)
    gw[g] = w  # one weight per title

    def objective(beta):
        z = x @ beta
        zmax = np.full(n_g, -np.inf)
        np.maximum.at(zmax, g, z)
        e = np.exp(z - zmax[g])
        all_, ok = np.zeros(n_g), np.zeros(n_g)
        np.add.at(all_, g, e)
        np.add.at(ok, g, e * y)
        loss = -(gw * (np.log(ok) - np.log(all_))).sum() + 0.5 * l2 * (beta[1:] ** 2).sum()
        return loss, e / all_[g], e * y / ok[g]

    beta = np.zeros(x.shape[1])
    reg = np.full(x.shape[1], l2)
    reg[0] = 1.0  # the intercept cancels in a softmax; keep it at 0
    loss, p, q = objective(beta)
    for _ in range(steps):
        wx = gw[g][:, None]
        mean_p = np.zeros((n_g, x.shape[1]))
        mean_q = np.zeros((n_g, x.shape[1]))
        np.add.at(mean_p, g, p[:, None] * x)
        np.add.at(mean_q, g, q[:, None] * x)
        grad = -(gw[:, None] * (mean_q - mean_p)).sum(0) + reg * beta
        d = x - mean_p[g]  # (N, F) deviations from each title's expectation under p
        hess = (d * (wx[:, 0] * p)[:, None]).T @ d + np.diag(reg + 1e-9)  # Fisher: the covariance under p
        step = np.linalg.solve(hess, grad)
        for damp in (1.0, 0.5, 0.25, 0.1, 0.03):  # backtracking: the Fisher matrix over-trusts some steps
            new_loss, new_p, new_q = objective(beta - damp * step)
            if new_loss <= loss:
                break
        else:
            break
        beta, loss, p, q = beta - damp * step, new_loss, new_p, new_q
        if np.abs(damp * step).max() < 1e-6:
            break
    return beta


def evaluate(norm, rows) -> dict[str, float]:
    """Top-1 accuracy (a "must be no match" row is right when refused), wrong-answer and refusal rates."""
    right = wrong = refused = 0
    for raw, ok in rows:
        code = norm(raw).code
        refused += code is None
        good = code is None if ok is None else code in ok
        right += good
        wrong += code is not None and not good
    n = len(rows)
    return {"n": n, "top1": round(right / n, 4), "wrong": round(wrong / n, 4), "refused": round(refused / n, 4)}


def _title_rows(examples, rank_coef):
    """One row per title of candidate examples (x, y, w, title id): the confidence features of its first-
    ranked candidate under ``rank_coef`` (as :meth:`TitleNormalizer._title_features` makes them), whether
    that candidate is acceptable, the title's weight and id."""
    import numpy as np

    from jobpred.taxonomy.normalize import _CONF_FROM_RANK

    x, y, w, g = examples
    out_x, out_y, out_w, out_g = [], [], [], []
    if len(g) == 0:
        return np.zeros((0, len(_CONF_FROM_RANK) + 3)), np.zeros(0), np.zeros(0), np.zeros(0, dtype=int)
    order = np.argsort(g, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(g[order]) != 0])
    for a, b in zip(starts, np.r_[starts[1:], len(order)]):
        idx = order[a:b]
        z = x[idx] @ rank_coef
        p = np.exp(z - z.max())
        p /= p.sum()
        rank = np.argsort(-p, kind="stable")
        p1, p2 = p[rank[0]], (p[rank[1]] if len(rank) > 1 else 0.0)
        out_x.append([1.0, p1, p1 - p2] + [x[idx[rank[0]], i] for i in _CONF_FROM_RANK])
        out_y.append(y[idx[rank[0]]])
        out_w.append(w[idx[0]])
        out_g.append(g[idx[0]])
    return np.asarray(out_x), np.asarray(out_y), np.asarray(out_w), np.asarray(out_g)


def _fit_models(tuning, onet, typo):
    """(ranking, confidence) coefficients fitted on candidate examples (x, y, w, title id) of the tuning
    titles, the held-out O*NET titles and the typos; the O*NET ones count less in the confidence model
    (0.25 a title against 1) than in the ranking (0.3 a candidate), being less like a resume's titles."""
    import numpy as np

    cat = [np.concatenate(parts) for parts in zip(tuning, onet, typo)]
    rank_coef = _fit_choice(*cat)
    rows = [_title_rows(e, rank_coef) for e in (tuning, onet, typo)]
    cx = np.concatenate([r[0] for r in rows])
    cy = np.concatenate([r[1] for r in rows])
    cw = np.concatenate([np.full(len(r[1]), weight) for r, weight in zip(rows, (1.0, 0.25, 0.25))])
    return rank_coef, _fit_logistic(cx, cy, cw)


def _choose_threshold(prob, right, none) -> tuple[float, list[dict]]:
    """The probability threshold, and the curve (threshold, top-1, wrong, no match) it was read from: among
    the thresholds at which a wrong answer is rarer than a "no match" (issue 18), the highest of those with
    the best top-1. Top-1 is flat over a wide range of thresholds once most titles are key hits, and within it
    a higher threshold only turns wrong answers into "no match" (no confident nonsense). Per title: ``prob``
    of its first candidate (-1: no candidate), whether that candidate is acceptable, whether the title must
    be refused."""
    import numpy as np

    n = len(prob)
    curve = []
    for t in np.round(np.arange(0.05, 1.0, 0.01), 2):
        answered = prob >= t
        wrong = int((answered & ~right).sum())
        refused = int((~answered).sum())
        top1 = int((answered & right).sum() + (~answered & none).sum())
        curve.append({"t": float(t), "top1": round(top1 / n, 4),
                      "wrong": round(wrong / n, 4), "no_match": round(refused / n, 4)})
    allowed = [p for p in curve if p["wrong"] < p["no_match"]]
    if not allowed:
        return 0.99, curve
    best = max(p["top1"] for p in allowed)
    chosen = max(p["t"] for p in allowed if p["top1"] == best)
    return chosen, curve


def calibrate(never_seen: int = 1500, seed: int = 0) -> dict:
    """Fit the normaliser's two models and choose its threshold, on the tuning lists only.

    1. Ranking: a conditional logit (:func:`_fit_choice`) over the candidate features of
       :meth:`jobpred.taxonomy.normalize.TitleNormalizer._candidate_features`, fitted on every candidate
       of the tuning lists' titles (1 = an acceptable code) and of ``never_seen`` O*NET alternate titles
       taken out of the index and ``never_seen / 2`` alternate titles with a typo (weight 0.3 each: they
       teach the fuzzy and semantic paths).
    2. Confidence: a logistic regression, one row per title, of whether the first-ranked candidate is
       acceptable (a title that must be "no match" is 0), on the same titles (the O*NET ones weight 0.25).
    3. Threshold: both models are refitted five times, each time without a fifth of the tuning titles,
       which they then score (out of fold); the threshold is the lowest probability at which a confident
       wrong code is rarer than a "no match" on those out-of-fold scores (issue 18), so every answer that
       can be given at that error rate is given, and the error rate is that of titles the models have not
       seen; of the thresholds that meet that rule, the highest with the best out-of-fold top-1 (top-1 is
       flat over a wide range, where a higher threshold only trades wrong answers for "no match"). Scores are
       the probabilities rescaled so that it sits at ``SCORE_THRESHOLD`` (0.86, the value
       the project's callers pass as ``min_score``).
    Writes ``data/normalizer.json`` and ``data/title_ranked.parquet`` (every key's ranked candidates as a
    whole-title and as a stripped hit: the lookup path reads them instead of scoring); the untuned list
    is never read.
    """
    import numpy as np

    from jobpred.taxonomy.normalize import CONF_FEATURES, FEATURES, TitleNormalizer

    rows = [r for name in TUNING for r in read_titles(ASSETS / name)]
    norm = TitleNormalizer(cache_size=0)
    norm._ranked = {}  # scored by the models being fitted, not by the stored rankings of the last fit
    held_norm, held = _never_seen(never_seen, seed)
    typos = _typos(never_seen // 2, seed)
    tuning = [np.asarray(a) for a in _examples(norm, rows, 1.0)]
    onet = [np.asarray(a) for a in _examples(held_norm, held, 0.3)]
    typo = [np.asarray(a) for a in _examples(norm, typos, 0.3)]
    onet[3] = onet[3] + len(rows)  # distinct title ids across the three sets
    typo[3] = typo[3] + len(rows) + len(held)
    rank_coef, conf_coef = _fit_models(tuning, onet, typo)
    # The threshold is chosen on out-of-fold confidences: each tuning title scored by models fitted without
    # it (5 folds), so its wrong answers are those of a title the models have not seen.
    fold = np.random.default_rng(seed).integers(0, 5, len(rows))
    oof = np.full(len(rows), -1.0)  # -1: no candidate, always "no match"
    right = np.zeros(len(rows), dtype=bool)
    for k in range(5):
        train = [a[fold[tuning[3]] != k] for a in tuning]
        test = [a[fold[tuning[3]] == k] for a in tuning]
        r_k, c_k = _fit_models(train, onet, typo)
        cx, cy, _, cg = _title_rows(test, r_k)
        # a semantic fall-back's guess is never accepted (TitleNormalizer._candidates): it stays "no match"
        oof[cg] = np.where(cx[:, CONF_FEATURES.index("semantic")] > 0, -1.0, 1.0 / (1.0 + np.exp(-(cx @ c_k))))
        right[cg] = cy > 0
    threshold, curve = _choose_threshold(oof, right, np.asarray([ok is None for _, ok in rows]))
    result = {
        "threshold": SCORE_THRESHOLD,
        "probability_threshold": threshold,
        "rank_coef": [round(float(c), 6) for c in rank_coef],
        "conf_coef": [round(float(c), 6) for c in conf_coef],
        "rank_features": list(FEATURES),
        "conf_features": list(CONF_FEATURES),
        "fitted_on": [f"tests/assets/{n}" for n in TUNING] + [f"{never_seen} held-out O*NET alternate titles",
                                                               f"{len(typos)} O*NET alternate titles with a typo"],
        "rule": "among the thresholds at which wrong answers < no-match answers on the tuning lists, scored "
                "out of fold (5 folds), the highest with the best top-1",
        "out_of_fold": curve,
    }
    (OUT / "normalizer.json").write_text(json.dumps(result, indent=2) + "\n")
    norm = TitleNormalizer(cache_size=0, top_k=10, titles=read_table_packaged("titles"))
    ranked = [(k, [c.code for c in whole], [c.score for c in whole], [c.code for c in part], [c.score for c in part])
              for k in norm._votes for whole, part in [(norm.ranked_key(k, 0), norm.ranked_key(k, 1))]]
    _write(pl.DataFrame(ranked, schema={"key": pl.String, "codes": pl.List(pl.String), "scores": pl.List(pl.Float32),
                                        "codes_stripped": pl.List(pl.String), "scores_stripped": pl.List(pl.Float32)},
                        orient="row"), "title_ranked")
    norm = TitleNormalizer(cache_size=0)
    result["tuning"] = {name: evaluate(norm, read_titles(ASSETS / name)) for name in TUNING}
    held_norm._rank_coef, held_norm._conf_coef, held_norm._cache = rank_coef, conf_coef, {}
    held_norm._t_prob, held_norm._t_score, held_norm.min_score = threshold, SCORE_THRESHOLD, SCORE_THRESHOLD
    result["never_seen"] = evaluate(held_norm, held)
    result["typos"] = evaluate(norm, typos)
    return result

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, help="folder holding onet_29_3/ etc. (rebuilds the tables)")
    parser.add_argument("--index", action="store_true",
                        help="rebuild only the normaliser's index and LSA tables from the packaged titles and "
                             "data/common_titles.tsv (after editing the curated table; then --calibrate)")
    parser.add_argument("--calibrate", action="store_true", help="refit the normaliser's confidence model")
    args = parser.parse_args()
    if args.source:
        print(build(args.source))
    if args.source or args.index:
        print(normaliser_tables())
    if args.calibrate or args.source:
        print(json.dumps(calibrate(), indent=2))
