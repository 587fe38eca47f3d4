"""Raw job titles, as people write them, -> O*NET-SOC 2019 occupations, with a calibrated confidence.

    from jobpred.taxonomy import TitleNormalizer
    norm = TitleNormalizer()
    norm("Sr. Software Engineer")      # Match(code='15-1252.00', title='Software Developers', score=0.97, ...)
    norm("asdf qwerty").code            # None: below the threshold we say "no match" instead of guessing
    norm("Uber Driver").candidates      # the top candidates with their scores, whether accepted or not

The index holds every O*NET 29.3 title of every occupation (official, alternate, short, reported) and
ESCO 1.2.0's English labels through the official crosswalk, canonicalised: Unicode NFKC, case-folded,
punctuation to spaces, possessives dropped, abbreviations expanded ("Sr." -> "senior", "RN" ->
"registered nurse"), plurals folded, compound words split where O*NET writes them apart ("frontend" ->
"front end"). A title "X (Y)" is also indexed as X, and as Y where Y spells X out or abbreviates it.
The project's own curated table of common real-world titles (``data/common_titles.tsv``, written from general
knowledge, not O*NET data) is indexed too, as the strongest source: it names the occupation a title means
where O*NET lists it only in passing ("Owner": Urologists), under many occupations ("Mechanic") or not at all
("Cloud Engineer"); two ranking features say whether it lists a candidate for the matched key, and first.

A query is tried as a list of *variants*, best first (the first that is a key wins): the whole title; the
title without its parenthetical context ("(React)", "(Night Shift)"); the part before a context separator
("- ICU", "at Walmart", "to the CEO", ", Remote"); each side of a combined title ("Server/Bartender");
"head of X" as "X manager"; each without seniority and level words ("Senior", "Associate", "II"), which
are stripped only when what remains is an O*NET title; then with the abbreviations O*NET itself spells
out ("SRE" -> "site reliability engineer") and company names of the gig economy ("Uber") replaced.
No key: rapidfuzz similarity against keys sharing a rare word (typo-tolerant), then a semantic fall-back
(LSA word vectors built from O*NET's titles and descriptions, ``data/semantic_*.parquet``).

Occupations whose official title holds the query's head noun and half its words are candidates too, even
where O*NET does not list the title for them. Every candidate gets features (how it matched, string
similarity, how much of the key's weight it holds, how strongly O*NET lists the title, whether the title's
head noun -- "driver", "assistant" -- is one of the occupation's own, how the title reads against the
occupation's official title, ...). A ranking model (a softmax over the title's candidates) orders them and
a confidence model gives the probability that the first is right; both are fitted by
``tools/build_taxonomy.py --calibrate`` on the tuning lists (``data/normalizer.json``). ``score`` is that
probability rescaled piecewise-linearly so that the threshold chosen on out-of-fold scores of the tuning
lists sits at 0.86 (the project's ``min_match_score``; :meth:`TitleNormalizer.probability` gives the
probability back); below ``min_score`` the answer is "no match".
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field

import numpy as np
import polars as pl

from jobpred.taxonomy.onet import DATA_DIR, Taxonomy, read_table
from jobpred.taxonomy.semantic import Semantic
from jobpred.taxonomy.title_index import TitleIndex
from jobpred.taxonomy.title_text import (  # the text rules: canonical forms, qualifiers, head nouns
    _LEAD_OF,
    BRANDS,
    QUALIFIERS,
    _context_free,
    _head,
    _overlap,
    _strip_qualifiers,
    canonical_keep_of,
    head_nouns,
)

FEATURES = ("intercept", "stripped", "fuzzy", "semantic", "fuzzy_similarity", "semantic_similarity",
            "similarity_gap", "share", "log_weight", "head_agrees", "rewritten", "query_words", "coverage",
            "affinity", "data_level", "base_code", "log_candidates", "prior", "fuzzy_head_similarity",
            "semantic_head_similarity", "bare_head", "official_overlap", "official_head", "official_extra", "unlisted",
            "curated", "curated_default")
_CONF_FROM_RANK = [FEATURES.index(n) for n in ("stripped", "fuzzy", "semantic", "fuzzy_similarity",
                                                "semantic_similarity", "share", "head_agrees",
                                                "log_weight", "rewritten", "data_level", "bare_head",
                                                "official_overlap", "official_head", "official_extra",
                                                "unlisted", "curated", "curated_default")]
CONF_FEATURES = ("intercept", "rank_p1", "rank_margin") + tuple(FEATURES[i] for i in _CONF_FROM_RANK)
# The models before tools/build_taxonomy.py --calibrate has fitted them (feature orders: FEATURES, CONF_FEATURES).
_UNCALIBRATED = {"threshold": 0.5, "probability_threshold": 0.5,
                 "rank_coef": [-2.0, -0.5, -1.0, -2.0, 2.0, 1.0, -5.0, 3.0, 0.5, 1.5, -0.5, 0.5, 1.0, 1.0, 0.5, 0.3, -0.3,
                               0.5, 1.0, 1.0, 0.0, 1.0, 0.5, -0.5, -1.0, 1.0, 1.0],
                 "conf_coef": [-3.0, 4.0, 2.0] + [0.0] * 17}


@dataclass
class Candidate:
    code: str
    title: str
    score: float


@dataclass
class Match:
    """One normalised title; ``code`` is None when no candidate scored at least ``min_score``."""

    input: str
    code: str | None
    title: str | None
    score: float  # calibrated probability that ``code`` (or, for no match, the best candidate) is right
    method: str  # exact | stripped | fuzzy | semantic | none
    matched: str | None = None  # the canonical O*NET key (or query variant) that matched
    candidates: list[Candidate] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Cand:
    """A candidate before scoring: the raw facts the confidence model reads."""

    code: str
    method: str
    sim: float  # string similarity (exact keys 1), or the cosine of the semantic fall-back
    share: float  # this code's share of the key's weight (fuzzy: of the candidates' similarity mass)
    weight: float  # how strongly O*NET lists the matched title for this code
    variant: int  # 0 whole title, 1 context set aside, 2 qualifiers stripped, 3 rewritten / expanded
    key: str | None = None


class TitleNormalizer(TitleIndex):
    """Maps raw titles to O*NET-SOC 2019 codes; build once per process (a second or two), then call it.

    Args:
        min_score: below this score (0-1) the answer is "no match" (``code=None``); None: 0.86, where the
            threshold chosen on the tuning lists sits (``data/normalizer.json``; see :meth:`probability`).
        top_k: how many candidates each :class:`Match` lists.
        cache_size: distinct raw titles remembered (career data repeats titles a lot).
        semantic: use the semantic fall-back for titles with no lexical match.
        titles: a titles table (columns code, title, source, n_sources, next_move, share) to index instead
            of the packaged one, e.g. the packaged one plus a company's own titles, or minus a held-out set.
    """

    def __init__(self, min_score: float | None = None, top_k: int = 5, cache_size: int = 500_000,
                 semantic: bool = True, titles: pl.DataFrame | None = None) -> None:
        from rapidfuzz import fuzz, process

        self._fuzz, self._process = fuzz, process
        path = DATA_DIR / "normalizer.json"
        self.calibration = json.loads(path.read_text()) if path.exists() else _UNCALIBRATED
        if self.calibration.get("rank_features", list(FEATURES)) != list(FEATURES):  # fitted on other features
            self.calibration = _UNCALIBRATED
        self._t_prob, self._t_score = self.calibration["probability_threshold"], self.calibration["threshold"]
        self.min_score = self._t_score if min_score is None else min_score
        self.top_k, self.cache_size = top_k, cache_size
        self.taxonomy = Taxonomy.load()
        self._title_of = {c: o.title for c, o in self.taxonomy.occupations.items()}  # the lookup path's titles
        self._abbrev = dict(read_table("abbreviations").select("short", "expansion").iter_rows())
        self._build_index(titles)
        # variant rank -> key -> (codes, scores): the stored rankings of whole-title (0) and stripped (1) hits
        self._ranked: dict[int, dict[str, tuple[tuple[str, ...], tuple[float, ...]]]] = {}
        if titles is None and (DATA_DIR / "title_ranked.parquet").exists():
            ranked = read_table("title_ranked")
            keys = ranked["key"].to_list()
            for variant, suffix in ((0, ""), (1, "_stripped")):
                if f"scores{suffix}" not in ranked.columns:  # a table of an older build
                    continue
                # tuples, not lists: the garbage collector stops tracking them (400k lists slow every call)
                codes = [tuple(row) for row in ranked[f"codes{suffix}"].to_list()]
                scores = [tuple(round(x, 4) for x in row) for row in ranked[f"scores{suffix}"].to_list()]
                self._ranked[variant] = dict(zip(keys, zip(codes, scores)))
        self._semantic = Semantic() if semantic else None
        self._rank_coef = np.asarray(self.calibration["rank_coef"], dtype=np.float64)
        self._conf_coef = np.asarray(self.calibration["conf_coef"], dtype=np.float64)
        self._cache: dict[str, Match] = {}
        self._key_cache: dict[tuple[str, int], Match] = {}

    # -- index ----------------------------------------------------------------------------------------
    def __call__(self, raw: str | None) -> Match:
        if raw is None:
            return Match("", None, None, 0.0, "none")
        hit = self._cache.get(raw)
        if hit is None:
            hit = self._match(raw)
            if len(self._cache) < self.cache_size:
                self._cache[raw] = hit
        return hit

    def many(self, raws: list[str | None]) -> list[Match]:
        return [self(r) for r in raws]

    # -- matching -------------------------------------------------------------------------------------
    def _match(self, raw: str) -> Match:
        raw = raw[:300]  # titles are short; a 200,000-character one is not worth matching in full
        whole = self._key(raw)
        if whole in self._votes:  # the lookup path: one canonicalisation, one dict hit, a cached ranking
            return self._keyed(raw, whole, 0)
        method, key, cands, query, heads = self._gather(raw, whole)
        if method in ("exact", "stripped"):
            return self._keyed(raw, key, cands)
        return self._result(raw, method, key, self._scored(cands, query, heads))

    def _gather(self, raw: str, whole: str | None = None) -> tuple[str, str | None, list[_Cand] | int, str, set[str]]:
        """(method, key, candidates, query, head nouns) of one raw title, before scoring; for a key hit
        the candidates are the variant rank of the key (see :meth:`_keyed`)."""
        whole = self._key(raw) if whole is None else whole
        if not whole:
            return "none", None, [], "", set()
        core = whole
        for key, variant in self._variants(raw, whole):
            if key in self._votes:
                return ("exact" if variant == 0 else "stripped"), key, variant, whole, set()
            if variant == -1:
                core = key
        heads = self._query_heads(raw)
        cands = self._fuzzy(core)
        cands += self._official_candidates(core, heads, 2, {c.code for c in cands})
        # The semantic fall-back only where no fuzzy match both reads alike and agrees on the head noun.
        # A text of more than six words is not a title ("Ignore all previous instructions and ..."): the
        # fall-back would find an occupation in any sentence.
        if self._semantic is not None and len(core.split()) <= 6 and not any(
                c.sim >= 0.75 and heads & self._heads.get(c.code, set()) for c in cands):
            cands = [_Cand(code, "semantic", sim, share, 0.0, 3) for code, sim, share in self._semantic.nearest(
                core, heads, self._idf, self._heads, self.top_k)] + cands
        method = "fuzzy" if cands and cands[0].method == "fuzzy" else "semantic"
        return method, core, cands, core, heads

    def _variants(self, raw: str, whole: str):
        """Query keys to try, best first, each with its variant rank (see :class:`_Cand`); rank -1 marks
        the core of the title (context set aside, qualifiers stripped) that fuzzy and semantic matching use."""
        seen = {whole}
        yield whole, 0
        outside, inner = _context_free(raw) if any(c in raw for c in "([{") else (raw, [])
        head = _head(outside)
        texts: list[tuple[str, int]] = [(t, 1) for t in dict.fromkeys((outside, head)) if t != raw]
        lead = _LEAD_OF.match(canonical_keep_of(head)) if " of " in head.casefold() else None
        if lead:
            texts += [(f"{lead.group(1)} manager", 3), (f"{lead.group(1)} director", 3)]
        parts = [p for p in re.split(r"\s*/\s*", head) if p.strip()] if "/" in head else []
        if len(parts) > 1:
            last = parts[-1].split()
            first = parts[0].split()
            if len(last) > 1 and all(len(p.split()) == 1 for p in parts[:-1]):  # "UX/UI Designer"
                texts += [(f"{p} {' '.join(last[1:])}", 1) for p in parts[:-1]] + [(parts[-1], 1)]
            elif len(first) > 1 and all(len(p.split()) == 1 for p in parts[1:]):  # "Farm Owner/Operator"
                texts += [(parts[0], 1)] + [(f"{' '.join(first[:-1])} {p}", 1) for p in parts[1:]]
            else:
                texts += [(p, 1) for p in parts]
        texts += [(s, 3) for s in inner]
        keys = [(whole, 0)]
        for text, rank in texts:
            key = self._key(text)
            if key and key not in seen:
                seen.add(key)
                keys.append((key, rank))
                yield key, rank
        for key, rank in list(keys):
            stripped = _strip_qualifiers(key)
            if stripped and stripped not in seen:
                seen.add(stripped)
                keys.append((stripped, max(rank, 2)))
                yield stripped, max(rank, 2)
        head_key = self._key(head) or whole
        core = _strip_qualifiers(head_key) or head_key
        for key, rank in list(keys):
            if rank > 2:
                continue
            words = key.split()
            swapped = [BRANDS.get(w) or self._abbrev.get(w, w) for w in words]
            if swapped != words:
                new = self._key(" ".join(swapped))
                for k in (new, _strip_qualifiers(new)):
                    if k and k not in seen:
                        seen.add(k)
                        yield k, 3
                if key == core:
                    core = _strip_qualifiers(new) or new
        yield core, -1

    def _query_heads(self, raw: str) -> set[str]:
        outside = _context_free(raw)[0]
        heads = {self._split(h) for h in head_nouns(_head(outside) or outside)}
        for h in list(heads):
            if h not in self._by_word and len(h) > 3:  # a typo: its closest vocabulary word stands in
                heads.update(w for w, score in self._closest(h)[:1] if score >= 85)
        return heads

    def _closest(self, word: str) -> list[tuple[str, float]]:
        """The vocabulary words closest to a word O*NET never uses (edit-distance ratio >= 80, at most 3),
        searched among words of about its length; remembered."""
        hit = self._close_cache.get(word)
        if hit is None:
            n = len(word)
            choices = self._vocab_window.get(n)
            if choices is None:
                choices = [w for k in range(n - 2, n + 3) for w in self._vocab_by_len.get(k, ())]
                self._vocab_window[n] = choices
            hit = [(w, s) for w, s, _ in self._process.extract(word, choices, scorer=self._fuzz.ratio,
                                                                limit=3, score_cutoff=80)]
            if len(self._close_cache) < 100_000:
                self._close_cache[word] = hit
        return hit

    def _keyed(self, raw: str, key: str, variant: int) -> Match:
        """The match of a key hit. Its ranking depends only on (key, variant): whole-title and stripped
        hits of the packaged index are read from ``data/title_ranked.parquet`` (written with
        :meth:`ranked_key`), rewritten ones (variant 3) computed once and remembered."""
        hit = self._key_cache.get((key, variant))
        if hit is None:
            stored = self._ranked.get(min(variant, 1) if variant < 3 else 3, {}).get(key)
            if stored is not None:
                k = self.top_k
                title = self._title_of
                out = [Candidate(c, title[c], s) for c, s in zip(stored[0][:k], stored[1][:k])]
            else:
                out = self.ranked_key(key, variant)
            hit = self._decide(key, "exact" if variant == 0 else "stripped", key, out)
            if len(self._key_cache) < 1_000_000:
                self._key_cache[(key, variant)] = hit
        return Match(raw, hit.code, hit.title, hit.score, hit.method, hit.matched, hit.candidates)

    def ranked_key(self, key: str, variant: int = 0) -> list[Candidate]:
        """The ranked candidates of an index key, scored, whatever ``min_score``."""
        cands, heads = self._key_candidates(key, variant)
        return self._candidates(self._scored(cands, key, heads))

    def _key_candidates(self, key: str, variant: int) -> tuple[list[_Cand], set[str]]:
        """(candidates, head nouns) of a key hit: every code that lists the key, and the occupations whose
        official title names it without listing it ("engineering manager" is listed only under
        production managers and maintenance supervisors; Architectural and Engineering Managers is meant)."""
        votes = self._votes[key]
        total = sum(votes.values())
        cands = [_Cand(c, "exact", 1.0, w / total, w, variant, key) for c, w in votes.items()]
        heads = {self._split(h) for h in head_nouns(key)}
        return cands + self._official_candidates(key, heads, variant, votes), heads

    def _official_candidates(self, query: str, heads: set[str], variant: int, listed) -> list[_Cand]:
        return [_Cand(code, "official", overlap, 0.0, 0.0, variant)
                for code, overlap in self._official_codes(query, heads, listed)]

    def _fuzzy(self, query: str) -> list[_Cand]:
        fuzz, process = self._fuzz, self._process
        # Candidate keys: those sharing a word with the query. A word O*NET never uses is probably a typo:
        # its closest vocabulary words (edit-distance ratio >= 80) stand in for it ("acountant").
        postings: list[list[int]] = []
        for w in query.split():
            if len(w) <= 2:
                continue
            if w in self._by_word:
                postings.append(self._by_word[w])
                continue
            close = self._closest(w)
            if close:  # one posting list per query word, however many spellings stand in for it
                postings.append([i for c, _ in close for i in self._by_word[c]])
        # The rarest words carry the identity of a title ("forklift", not "operator"): pool from the two
        # shortest posting lists only, which keeps the pool small for titles full of common words.
        postings.sort(key=len)
        pool = {i for plist in postings[:2] for i in plist}
        scored: dict[str, float] = {}
        if pool:
            choices = [self._keys[i] for i in pool]
            # token_set alone rewards any shared word; averaging with token_sort penalises extra words.
            for key, _, _ in process.extract(query, choices, scorer=fuzz.token_set_ratio, limit=30,
                                             score_cutoff=60):
                s = _overlap(query, key)
                if s >= 60:
                    scored[key] = s / 100.0
        best: dict[str, _Cand] = {}
        mass = sum(scored.values()) or 1.0
        for key, s in scored.items():
            total = sum(self._votes[key].values())
            for code, w in self._votes[key].items():
                c = _Cand(code, "fuzzy", s, s / mass * w / total, w, 2, key)
                if code not in best or (c.sim, c.share) > (best[code].sim, best[code].share):
                    best[code] = c
        return sorted(best.values(), key=lambda c: (c.sim, c.share), reverse=True)[: 3 * self.top_k]

    def _calibration_candidates(self, raw: str) -> tuple[list[_Cand], str, set[str]]:
        """(candidates, query, head nouns) of a raw title; a key hit offers every code of the key."""
        _, key, cands, query, heads = self._gather(raw[:300])
        if isinstance(cands, int):
            (cands, heads), query = self._key_candidates(key, cands), key
        return cands, query, heads

    def _candidate_features(self, raw: str) -> list[tuple[list[float], str]]:
        """Every candidate of a raw title with its features, unscored (what the calibration fits on)."""
        cands, query, heads = self._calibration_candidates(raw)
        if not cands:
            return []
        best_sim: dict[str, float] = {}
        for c in cands:
            best_sim[c.method] = max(best_sim.get(c.method, 0.0), c.sim)
        return [(self._features(c, query, heads, best_sim, len(cands)), c.code) for c in cands]

    def _title_example(self, raw: str) -> tuple[list[float], str] | None:
        """(confidence features, first candidate's code) of a raw title, or None without candidates."""
        cands, query, heads = self._calibration_candidates(raw)
        scored = self._scored(cands, query, heads)
        return (self._title_features(scored), scored[0][1].code) if scored else None

    # -- scoring --------------------------------------------------------------------------------------
    def _features(self, c: _Cand, query: str, heads: set[str], best_sim: dict[str, float], n_cands: int) -> list[float]:
        words = [w for w in query.split() if w not in QUALIFIERS] or query.split()
        aff = self._affinity(query, c.code)
        key_words = set((c.key or "").split())
        head = bool(heads & self._heads.get(c.code, set()))
        fuzzy, semantic = c.method == "fuzzy", c.method == "semantic"
        curated = self._curated.get(c.key or query, ())  # the codes the curated table lists for the matched key
        return [
            1.0,
            float(c.method == "stripped" or (c.method == "exact" and c.variant > 0)),
            float(fuzzy),
            float(semantic),
            c.sim if fuzzy else 0.0,
            c.sim if semantic else 0.0,
            best_sim[c.method] - c.sim,
            c.share,
            math.log1p(c.weight),
            float(head),
            float(c.variant >= 3 and not semantic),  # the query rewritten (semantic candidates carry rank 3)
            min(len(words), 4) / 4.0,
            sum(w in key_words for w in words) / len(words) if not semantic else 0.0,
            aff / (1.0 + aff),
            float(self.taxonomy.occupations[c.code].data_level),
            float(c.code.endswith(".00")),
            math.log(n_cands),
            self._prior.get(c.code, 0.0),
            float(fuzzy and head) * c.sim,
            float(semantic and head) * c.sim,
            self._head_spread.get(words[0], 0.0) if len(words) == 1 else 0.0,
            *self._official_match(words, heads, c.code),
            float(c.method == "official"),
            float(c.code in curated),
            float(bool(curated) and curated[0] == c.code),
        ]

    def _affinity(self, query: str, code: str) -> float:
        """How much the occupation's own O*NET titles use the query's words (idf-weighted)."""
        weights = self._word_weight.get(code, {})
        return sum(weights.get(w, 0.0) for w in set(query.split()))

    def _scored(self, cands: list[_Cand], query: str, heads: set[str]) -> list[tuple[float, _Cand, list[float]]]:
        """Candidates ranked by the ranking model: (its probability among the title's candidates, candidate,
        features)."""
        if not cands:
            return []
        best_sim: dict[str, float] = {}
        for c in cands:
            best_sim[c.method] = max(best_sim.get(c.method, 0.0), c.sim)
        feats = [self._features(c, query, heads, best_sim, len(cands)) for c in cands]
        z = np.asarray(feats) @ self._rank_coef
        p = np.exp(z - z.max())
        p /= p.sum()  # a softmax over the title's candidates: how the ranking model was fitted
        return sorted(zip(p.tolist(), cands, feats), key=lambda pcf: pcf[0], reverse=True)

    @staticmethod
    def _title_features(scored: list[tuple[float, _Cand, list[float]]]) -> list[float]:
        """What the confidence model reads: the ranking probabilities of the first two candidates and the
        first one's features (how it matched, similarity, share, head noun, coverage, ...)."""
        p1, _, f = scored[0]
        p2 = scored[1][0] if len(scored) > 1 else 0.0
        return [1.0, p1, p1 - p2] + [f[i] for i in _CONF_FROM_RANK]

    def _candidates(self, scored: list[tuple[float, _Cand, list[float]]]) -> list[Candidate]:
        """Distinct codes, best first; the first one's score is the confidence, the others scaled alike."""
        if not scored:
            return []
        conf = 1.0 / (1.0 + math.exp(-float(np.dot(self._conf_coef, self._title_features(scored)))))
        if scored[0][1].method == "semantic":
            # The semantic fall-back proposes, it does not decide: on the tuning lists every title it would
            # have answered was nonsense ("Ignore previous instructions ..."); its guess stays below the threshold.
            conf = min(conf, 0.99 * self._t_prob)
        p1 = scored[0][0]
        seen: dict[str, float] = {}
        for p, c, _ in scored:
            seen.setdefault(c.code, self._scale(conf * p / p1 if p1 > 0 else 0.0))
        return [Candidate(c, self.taxonomy.title(c), round(s, 4)) for c, s in list(seen.items())[: self.top_k]]

    def _scale(self, p: float) -> float:
        """A probability -> the score: piecewise linear, the probability threshold chosen on the tuning
        lists (``probability_threshold``) at the score threshold (``threshold``, 0.86), 0 and 1 fixed."""
        t, s = self._t_prob, self._t_score
        return p * s / t if p < t else s + (p - t) * (1.0 - s) / (1.0 - t)

    def probability(self, score: float) -> float:
        """The calibrated probability that a candidate with this ``score`` is right (inverse of the scale)."""
        t, s = self._t_prob, self._t_score
        return score * t / s if score < s else t + (score - s) * (1.0 - t) / (1.0 - s)

    def _decide(self, raw: str, method: str, key: str | None, out: list[Candidate]) -> Match:
        if not out or out[0].score < self.min_score:
            return Match(raw, None, None, out[0].score if out else 0.0, "none", key, out)
        return Match(raw, out[0].code, out[0].title, out[0].score, method, key, out)

    def _result(self, raw: str, method: str, key: str | None, scored: list[tuple[float, _Cand, list[float]]]) -> Match:
        out = self._candidates(scored)
        if scored and scored[0][1].method in ("fuzzy", "semantic"):
            method, key = scored[0][1].method, scored[0][1].key or key
        return self._decide(raw, method, key, out)
