"""The index a :class:`~jobpred.taxonomy.normalize.TitleNormalizer` matches against: every O*NET title
(official, alternate, short, reported), ESCO label of every occupation and title of the project's curated table
of common titles (``data/common_titles.tsv``), canonical, with its variants
("X (Y)" also as X and as Y where Y spells X out), the key vocabulary and the head nouns of each occupation,
and each occupation's official title as words, against which a title is read (:meth:`_official_match`).

Built once per normaliser from the packaged tables (``data/title_index.parquet``, or ``titles`` given to
the normaliser, as ``tools/build_taxonomy.py`` does to hold titles out).
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from pathlib import Path

import polars as pl

from jobpred.taxonomy.onet import DATA_DIR, read_table
from jobpred.taxonomy.title_text import (  # the text rules: canonical forms, qualifiers, head nouns
    QUALIFIERS,
    _canonical_words,
    _context_free,
    _singular,
    canonical,
    head_nouns,
    official_words,
    stem_match,
)

# "curated": the project's own table of common titles (data/common_titles.tsv), the strongest listing: it says
# which occupation a title means where O*NET lists it only in passing ("Owner") or not at all ("Cloud Engineer").
_SOURCE_WEIGHT = {"curated": 10.0, "official": 8.0, "reported": 4.0, "short": 3.0, "alternate": 1.0, "esco": 0.6}
CURATED = DATA_DIR / "common_titles.tsv"
_TITLE_COLUMNS = ("code", "title", "source", "n_sources", "next_move", "share")


def read_curated(path: Path = CURATED) -> list[tuple[str, tuple[str, ...]]]:
    """The curated table of common titles: (title, acceptable codes, the default first), in file order."""
    df = pl.read_csv(path, separator="\t", comment_prefix="#", quote_char=None, infer_schema_length=0)
    return [(title.strip(), tuple(c.strip() for c in codes.split("|")))
            for title, codes in df.select("title", "codes").iter_rows()]


def curated_titles(path: Path = CURATED) -> pl.DataFrame:
    """The curated table as rows of a titles table (source "curated"): share 1 for a title's default code and
    0.5 for its alternates, so that the default leads the key's weight."""
    rows = [(code, title, "curated", 1, False, 1.0 if i == 0 else 0.5)
            for title, codes in read_curated(path) for i, code in enumerate(codes)]
    return pl.DataFrame(rows, schema={"code": pl.String, "title": pl.String, "source": pl.String,
                                      "n_sources": pl.Int8, "next_move": pl.Boolean, "share": pl.Float32},
                        orient="row")


class TitleIndex:
    """The index-building half of the normaliser (its attributes are the normaliser's)."""

    def _build_index(self, titles: pl.DataFrame | None) -> None:
        """The key -> {code: weight} index and each code's head nouns: the packaged ones (written by
        tools/build_taxonomy.py with :meth:`index_titles`), or those of ``titles``."""
        if titles is None:
            votes: dict[str, dict[str, float]] = defaultdict(dict)
            for key, code, w in read_table("title_index").iter_rows():
                votes[key][code] = w
            heads: dict[str, set[str]] = defaultdict(set)
            for code, head in read_table("title_heads").iter_rows():
                heads[code].add(head)
            self._set_vocabulary(list(votes))
        else:
            votes, heads = self.index_titles(titles)
        self._votes = dict(votes)
        self._heads = dict(heads)
        # key -> the codes the curated table lists for it, the default first (the "curated" ranking features)
        self._curated = {self._key(t): codes for t, codes in read_curated()}
        # A title that is nothing but a head noun many occupations share ("Owner", "Mechanic") is vague.
        spread: dict[str, int] = defaultdict(int)
        for hs in self._heads.values():
            for h in hs:
                spread[h] += 1
        self._head_spread = {h: math.log1p(n) / 5.0 for h, n in spread.items()}
        self._keys = list(self._votes)
        # How strongly each occupation's own titles use each word (idf-weighted), for ambiguous keys.
        doc_freq: dict[str, int] = defaultdict(int)
        per_code: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for key, codes in self._votes.items():
            for w in set(key.split()):
                doc_freq[w] += 1
                for code in codes:
                    per_code[code][w] += 1
        n = len(self._votes)
        self._idf = {w: math.log(n / f) for w, f in doc_freq.items()}
        self._word_weight = {code: {w: math.log1p(k) * self._idf[w] for w, k in ws.items()}
                             for code, ws in per_code.items()}
        self._by_word: dict[str, list[int]] = defaultdict(list)
        for i, key in enumerate(self._keys):
            for w in set(key.split()):
                if len(w) > 2:
                    self._by_word[w].append(i)
        self._vocab = list(self._by_word)
        self._vocab_by_len: dict[int, list[str]] = defaultdict(list)
        for w in self._vocab:
            self._vocab_by_len[len(w)].append(w)
        self._close_cache: dict[str, list[tuple[str, float]]] = {}
        self._vocab_window: dict[int, list[str]] = {}
        # How often other occupations lead to this one (O*NET Related Occupations + Career Changers Matrix):
        # a proxy for how common an occupation is, for titles O*NET lists under many ("Mechanic").
        into: dict[str, int] = defaultdict(int)
        for src in self.taxonomy.occupations:
            for dst, _ in self.taxonomy.related(src) + self.taxonomy.career_changers(src):
                into[dst] += 1
        self._prior = {c: math.log1p(n) / 5.0 for c, n in into.items()}
        # Each occupation's official title, as words: what O*NET means by the occupation. A title O*NET also
        # lists under it in passing ("Staff Engineer" under hardware engineers, "Project Manager" under
        # A&E managers) shares few of them; the occupation the title names shares its head and modifiers.
        self._official = {c: tuple(self._split(w) for w in official_words(o.title))
                          for c, o in self.taxonomy.occupations.items()}
        self._official_codes_of: dict[str, set[str]] = defaultdict(set)  # official word -> codes using it
        by_prefix: dict[str, set[str]] = defaultdict(set)  # first 4 letters -> official words
        for c, ws in self._official.items():
            for w in ws:
                self._official_codes_of[w].add(c)
                by_prefix[w[:4]].add(w)
        self._official_by_prefix = dict(by_prefix)
        self._stem_cache: dict[str, frozenset[str]] = {}

    def _stem_hits(self, word: str) -> frozenset[str]:
        """The official-title words of the same stem as ``word`` (:func:`stem_match`); remembered."""
        hit = self._stem_cache.get(word)
        if hit is None:
            hit = frozenset(o for o in self._official_by_prefix.get(word[:4], ()) if stem_match(word, o))
            if len(self._stem_cache) < 100_000:
                self._stem_cache[word] = hit
        return hit

    def _official_match(self, words: list[str], heads: set[str], code: str) -> tuple[float, float, float]:
        """How the query reads against the occupation's official title: (idf-weighted share of the query's
        words the official title uses, 1 if the query's head noun is one of its words, idf-weighted share
        of the official title's words the query leaves out). "Project Manager" reads as Project Management
        Specialists, not as Architectural and Engineering Managers; "Assembler" as Team Assemblers more
        than as Electrical and Electronic Equipment Assemblers."""
        official = self._official.get(code, ())
        idf = self._idf
        total = hit = 0.0
        matched: set[str] = set()
        for w in words:
            weight = idf.get(w, 1.0)
            total += weight
            hits = self._stem_hits(w).intersection(official)
            if hits:
                hit += weight
                matched |= hits
        head = any(self._stem_hits(h).intersection(official) for h in heads)
        o_total = o_left = 0.0
        for o in official:
            weight = idf.get(o, 1.0)
            o_total += weight
            o_left += weight * (o not in matched)
        return (hit / total if total else 0.0), float(head), (o_left / o_total if o_total else 1.0)

    def _official_codes(self, query: str, heads: set[str], listed) -> list[tuple[str, float]]:
        """The (at most 5) occupations not in ``listed`` whose official title has the query's head noun and
        at least half of its (idf-weighted) words, with that share, best first."""
        words = [w for w in query.split() if w not in QUALIFIERS] or query.split()
        codes: set[str] = set()
        for h in heads:
            for o in self._stem_hits(h):
                codes |= self._official_codes_of[o]
        found = []
        for code in codes:
            if code in listed:
                continue
            overlap, head, extra = self._official_match(words, heads, code)
            if head and overlap >= 0.5:
                found.append((overlap, -extra, code))
        found.sort(reverse=True)
        return [(code, overlap) for overlap, _, code in found[:5]]

    def _set_vocabulary(self, keys: list[str]) -> None:
        """Words and adjacent word pairs of the keys: what compound words are split by (:meth:`_split`)."""
        split = [k.split() for k in keys]
        self._vocab_set = {w for ws in split for w in ws}
        self._bigrams = {pair for ws in split for pair in itertools.pairwise(ws)}
        self._compound = {}

    def index_titles(self, titles: pl.DataFrame) -> tuple[dict[str, dict[str, float]], dict[str, set[str]]]:
        """Index a titles table (columns code, title, source, n_sources, next_move, share) and the curated
        table of common titles: each title's keys (itself, and its parts for "X (Y)") with the weight of the
        title for its code, the strongest listing winning; each code's head nouns."""
        titles = pl.concat([titles.select(_TITLE_COLUMNS), curated_titles()], how="vertical_relaxed")
        rows = titles.rows()
        self._set_vocabulary(list({canonical(t) for _, t, *_ in rows}))
        votes: dict[str, dict[str, float]] = defaultdict(dict)
        heads: dict[str, set[str]] = defaultdict(set)
        data_level = {c for c, o in self.taxonomy.occupations.items() if o.data_level}
        seen: dict[str, tuple[list[str], list[tuple[str, float]]]] = {}
        for code, title, source, n_sources, next_move, share in rows:
            w = _SOURCE_WEIGHT[source] * share + 0.5 * (n_sources - 1) + (1.0 if next_move else 0.0)
            w *= 1.0 if code in data_level else 0.5  # "All Other" and military codes: the last resort
            if title not in seen:
                seen[title] = ([self._split(h) for h in head_nouns(title)],
                               [(self._key(t), f) for t, f in self._title_variants(title)])
            title_heads, keys = seen[title]
            heads[code].update(title_heads)
            for key, factor in keys:
                if key and votes[key].get(code, 0.0) < w * factor:
                    votes[key][code] = w * factor
        return votes, heads

    def _title_variants(self, raw: str) -> list[tuple[str, float]]:
        """An O*NET title and what it also names: "CEO (Chief Executive Officer)" -> CEO, Chief Executive
        Officer; "Naval Aircrewman (Special Assignment)" -> only the part outside the brackets."""
        outside, inner = _context_free(raw)
        if not inner:
            return [(raw, 1.0)]
        out = [(raw, 1.0), (outside, 0.9)]
        a, b = canonical(outside).split(), canonical(inner[0]).split()
        initials = "".join(w[0] for w in a)
        abbreviation = len(b) == 1 and (b[0] == initials or b[0] in self._abbrev)  # "Registered Nurse (RN)"
        spelled_out = len(b) >= 2 and (len(a) == 1 or set(a) & set(b))  # "CT Scanner Operator (Computed ...)"
        if len(inner) == 1 and (abbreviation or spelled_out):
            out.append((inner[0], 0.9))
        return out

    def _split(self, word: str) -> str:
        """A compound word in the form O*NET writes it apart: "frontend" -> "front end" (else unchanged)."""
        hit = self._compound.get(word)
        if hit is None:
            hit = word
            if (len(word) >= 6 and word not in self._vocab_set) or len(word) >= 8:
                for i in range(3, len(word) - 2):
                    a, b = word[:i], _singular(word[i:])
                    if (a, b) in self._bigrams:
                        hit = f"{a} {b}"
                        break
            if len(self._compound) < 200_000:
                self._compound[word] = hit
        return hit

    def _key(self, text: str) -> str:
        """The index key of a text: its canonical form with compound words split."""
        compound = self._compound
        return " ".join([compound.get(w) or self._split(w) for w in _canonical_words(text)])

    # -- public -------------------------------------------------------------------------------------
