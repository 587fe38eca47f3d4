"""Title normalisation: throughput of the lookup path (a key hit) vs the fuzzy path, and accuracy on the lists.

Run as:
    python -m benchmarks.bench_normalize [--n 20000]

Throughput: titles are drawn from the synthetic generator (O*NET alternate titles with people-style noise);
the lookup set is those the normaliser resolves by a key hit (exact or stripped), one title per distinct
key, the fuzzy set those with a typo. The per-title cache is off (``cache_size=0``), so no call is answered
from an earlier identical title; a key hit reads the key's stored ranking (data/title_ranked.parquet) or
scores it, each key once (prepare's real cost is lower: careers repeat titles and the cache absorbs them).

Accuracy (issue 18): top-1 (a title that must be "no match" is right when refused), wrong answers
(a code that is not acceptable) and "no match", on the tuning lists (tests/assets/messy_titles.tsv,
tuning_titles.tsv, tuning2_titles.tsv: the models and threshold are fitted on them) and the untuned list
(tests/assets/untuned_titles.tsv, never used while tuning), with and without the semantic fall-back.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from benchmarks.common import REPO, LoadAverage, machine, markdown_table, write_results

LISTS = ("messy_titles.tsv", "tuning_titles.tsv", "tuning2_titles.tsv", "untuned_titles.tsv")


def _accuracy(norm, path) -> dict:
    import polars as pl

    df = pl.read_csv(path, separator="\t", quote_char=None, infer_schema_length=0)
    right = wrong = refused = n = 0
    for raw, expected, note in df.iter_rows():
        if note == "non-english":
            continue
        code = norm(raw).code
        good = code is None if expected == "NONE" else code in expected.split("|")
        n, right, wrong, refused = n + 1, right + good, wrong + (code is not None and not good), refused + (code is None)
    return {"titles": n, "top1_%": round(100 * right / n, 1), "wrong_%": round(100 * wrong / n, 1),
            "no_match_%": round(100 * refused / n, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000, help="titles per path")
    args = parser.parse_args()

    from jobpred.config import SynthConfig
    from jobpred.data.synth import CareerSynthesizer
    from jobpred.taxonomy import TitleNormalizer

    started = time.perf_counter()
    norm = TitleNormalizer(cache_size=0)
    build_s = time.perf_counter() - started
    synth = CareerSynthesizer(SynthConfig(persons=1, typo_rate=0.0))
    rng = np.random.default_rng(0)
    occ = rng.integers(0, synth.world.n, size=args.n * 3)
    clean = list(dict.fromkeys(synth._titles(rng, occ).to_list()))
    probe = TitleNormalizer(cache_size=0)
    by_key: dict[str, str] = {}
    for t in clean:
        if probe(t).method in ("exact", "stripped"):
            by_key.setdefault(probe._key(t), t)
    lookup = list(by_key.values())[: args.n]
    typo = []
    for t in clean:
        if len(t) > 6:
            j = 1 + int(rng.integers(len(t) - 2))
            typo.append(t[:j] + t[j + 1:])
    typo = list(dict.fromkeys(typo))[: args.n // 10]  # fuzzy calls are ~100x dearer; time fewer

    rows = []
    with LoadAverage() as load:
        for name, titles in (("lookup (one title per key)", lookup), ("fuzzy (typo)", typo)):
            t0 = time.perf_counter()
            methods = [norm(t).method for t in titles]
            seconds = time.perf_counter() - t0
            rows.append({"path": name, "titles": len(titles), "seconds": round(seconds, 2),
                         "titles_per_s": round(len(titles) / seconds),
                         "resolved_by_fuzzy_or_semantic_%": round(
                             100 * sum(m in ("fuzzy", "semantic") for m in methods) / len(titles), 1),
                         "no_match_%": round(100 * methods.count("none") / len(titles), 1)})
    base = rows[0]["titles_per_s"]
    for r in rows:
        r["ratio_vs_lookup"] = round(r["titles_per_s"] / base, 4)

    lexical = TitleNormalizer(semantic=False)
    full = TitleNormalizer()
    accuracy = []
    for name in LISTS:
        path = REPO / "tests" / "assets" / name
        role = "untuned" if name.startswith("untuned") else "tuning"
        accuracy.append({"list": name, "role": role, "matcher": "lexical + semantic", **_accuracy(full, path)})
        accuracy.append({"list": name, "role": role, "matcher": "lexical only", **_accuracy(lexical, path)})
    print(f"machine: {machine()}; {load.summary()}; normaliser build {build_s:.2f}s; threshold {full.min_score}")
    print(markdown_table(rows))
    print(markdown_table(accuracy))
    print(f"results: {write_results('normalize', {'build_s': round(build_s, 2), 'rows': rows, 'accuracy': accuracy, **load.summary()})}")


if __name__ == "__main__":
    main()
