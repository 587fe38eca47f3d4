"""Title normalisation throughput: the lookup path (exact/stripped keys) vs the fuzzy path, cold cache.

Run as:
    python -m benchmarks.bench_normalize [--n 20000]

Titles are drawn from the synthetic generator (O*NET alternate titles with people-style noise); the lookup
set is those the normaliser resolves without fuzzy matching, the fuzzy set those with a typo. Each title is
distinct and the cache is off, so every call does the full work (prepare's real cost is lower: careers repeat
titles and the cache absorbs the repeats).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from benchmarks.common import machine, markdown_table, write_results


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
    lookup = [t for t in clean if norm(t).method in ("exact", "stripped")][: args.n]
    typo = []
    for t in clean:
        if len(t) > 6:
            j = 1 + int(rng.integers(len(t) - 2))
            typo.append(t[:j] + t[j + 1:])
    typo = list(dict.fromkeys(typo))[: args.n // 10]  # fuzzy calls are ~100x dearer; time fewer

    rows = []
    for name, titles in (("lookup", lookup), ("fuzzy (typo)", typo)):
        t0 = time.perf_counter()
        methods = [norm(t).method for t in titles]
        seconds = time.perf_counter() - t0
        rows.append({"path": name, "titles": len(titles), "seconds": round(seconds, 2),
                     "titles_per_s": round(len(titles) / seconds),
                     "resolved_by_fuzzy_%": round(100 * methods.count("fuzzy") / len(titles), 1),
                     "no_match_%": round(100 * methods.count("none") / len(titles), 1)})
    base = rows[0]["titles_per_s"]
    for r in rows:
        r["ratio_vs_lookup"] = round(r["titles_per_s"] / base, 4)
    print(f"machine: {machine()}; normaliser build {build_s:.2f}s")
    print(markdown_table(rows))
    print(f"results: {write_results('normalize', {'build_s': round(build_s, 2), 'rows': rows})}")


if __name__ == "__main__":
    main()
