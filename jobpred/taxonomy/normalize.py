"""Raw job titles, as people write them, -> O*NET-SOC 2019 occupations.

    from jobpred.taxonomy import TitleNormalizer
    norm = TitleNormalizer()
    norm("Sr. Software Engineer")      # Match(code='15-1252.00', title='Software Developers', score=1.0, ...)
    norm("asdf qwerty").code            # None: below the threshold we say "no match" instead of guessing

How a title is matched, cheapest first (the first that hits wins):
1. **exact**: the title is canonicalised (Unicode NFKC, case-folded, punctuation to spaces, abbreviations
   expanded -- "Sr." -> "senior", "Mgr" -> "manager", "RN" -> "registered nurse" --, plurals folded) and
   looked up among the official, alternate and short titles of O*NET 29.3, canonicalised the same way.
2. **stripped**: the same after removing seniority and level words ("senior", "II", "level 3", "lead") and
   context after a separator ("Registered Nurse - ICU", "Cashier at Walmart", "Driver (CDL-A)").
3. **fuzzy**: rapidfuzz token-set/token-sort similarity against keys sharing a word with the query; a
   word O*NET never uses is replaced by its closest vocabulary words first (catches "Acountant").
A key can belong to several occupations ("truck driver" is an alternate title of five): candidates are
ordered by match score, then by the source of the O*NET title (official titles outvote alternates), then
by how much the occupation's own O*NET titles use the query's words (idf-weighted): "forklift operator"
goes to the occupation with many forklift titles.

``score`` is the string-match quality in [0, 1]: 1.0 for an exact key, 0.97 for a stripped key, the
rapidfuzz similarity / 100 for fuzzy matches. Below ``min_score`` the result has ``code = None``.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import defaultdict
from dataclasses import asdict, dataclass, field

from jobpred.taxonomy.onet import Taxonomy, read_table

# Abbreviations expanded token by token (after case folding and punctuation removal).
ABBREVIATIONS: dict[str, str] = {
    "sr": "senior", "snr": "senior", "jr": "junior", "jnr": "junior",
    "mgr": "manager", "mngr": "manager", "mgmt": "management", "asst": "assistant", "assoc": "associate",
    "admin": "administrative", "adm": "administrative", "exec": "executive", "dir": "director",
    "vp": "vice president", "svp": "vice president", "evp": "vice president", "avp": "vice president",
    "ceo": "chief executive officer", "cfo": "chief financial officer", "cto": "chief technology officer",
    "coo": "chief operating officer", "cio": "chief information officer",
    "eng": "engineer", "engr": "engineer", "dev": "developer", "swe": "software engineer",
    "sde": "software engineer", "sw": "software", "sys": "systems", "sysadmin": "systems administrator",
    "devops": "devops engineer", "qa": "quality assurance", "qc": "quality control",
    "tech": "technician", "techn": "technician", "coord": "coordinator", "supv": "supervisor",
    "supvr": "supervisor", "spvr": "supervisor", "spec": "specialist", "rep": "representative",
    "reps": "representative", "cust": "customer", "svc": "service", "svcs": "services", "ops": "operations",
    "acct": "accountant", "acctg": "accounting", "hr": "human resources", "it": "information technology",
    "rn": "registered nurse", "lpn": "licensed practical nurse", "lvn": "licensed vocational nurse",
    "cna": "certified nursing assistant", "np": "nurse practitioner", "pa": "physician assistant",
    "emt": "emergency medical technician", "md": "physician", "dds": "dentist", "pharmd": "pharmacist",
    "cpa": "certified public accountant", "gm": "general manager", "pm": "project manager",
    "dba": "database administrator", "ux": "user experience", "ui": "user interface",
    "hvac": "heating air conditioning", "cdl": "commercial", "ft": "", "pt": "", "w": "with",
    "&": "and", "dept": "department", "mfg": "manufacturing", "maint": "maintenance", "prod": "production",
    "elec": "electrical", "mech": "mechanical", "gen": "general", "intl": "international",
    "natl": "national", "mktg": "marketing", "equip": "equipment", "const": "construction",
    "env": "environmental", "envr": "environmental", "sped": "special education", "hs": "high school",
    "ap": "accounts payable", "ar": "accounts receivable", "tsa": "transportation security", "sls": "sales", "ofc": "office", "recpt": "receptionist",
}

# Words that qualify a title without changing the occupation; dropped in the "stripped" pass.
QUALIFIERS = frozenset(
    ["senior", "junior", "lead", "principal", "staff", "trainee", "intern", "internship", "entry", "level", "mid", "i", "ii", "iii", "iv", "v", "vi", "1", "2", "3", "4", "5", "6", "temp", "temporary", "contract", "contractor", "freelance", "part", "full", "time", "remote", "experienced", "experience", "night", "day", "shift", "weekend", "1st", "2nd", "3rd", "master"]
)
_SEPARATORS = re.compile(r"\s(?:-|–|—|\||@|at|for|with)\s|[(\[{,;/]")
_NON_WORD = re.compile(r"[^\w&]+")
_STOPWORDS = frozenset({"of", "the", "a", "an", "in", "for", "to", "on"})


def _singular(word: str) -> str:
    if len(word) <= 3 or word.endswith(("ss", "us", "is")):
        return word
    if word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith("s"):
        return word[:-1]
    return word


def canonical(text: str) -> str:
    """Case-folded, punctuation-free, abbreviation-expanded, singular form of a title."""
    text = unicodedata.normalize("NFKC", text).casefold().replace("&", " and ")
    words: list[str] = []
    for token in _NON_WORD.sub(" ", text).split():
        expanded = ABBREVIATIONS.get(token, token)
        words.extend(_singular(w) for w in expanded.split() if w not in _STOPWORDS)
    return " ".join(words)


def _overlap(a: str, b: str, **kwargs) -> float:
    from rapidfuzz import fuzz

    return 0.5 * (fuzz.token_set_ratio(a, b, **kwargs) + fuzz.token_sort_ratio(a, b, **kwargs))


def _strip_qualifiers(key: str) -> str:
    return " ".join(w for w in key.split() if w not in QUALIFIERS)


def _head(raw: str) -> str:
    """The part of a raw title before context such as ' - ICU', ' at Walmart', '(CDL-A)', ', Remote'."""
    return _SEPARATORS.split(raw, maxsplit=1)[0]


@dataclass
class Candidate:
    code: str
    title: str
    score: float


@dataclass
class Match:
    """One normalised title; ``code`` is None when nothing scored at least ``min_score``."""

    input: str
    code: str | None
    title: str | None
    score: float
    method: str  # exact | stripped | fuzzy | none
    matched: str | None = None  # the canonical O*NET key that matched
    candidates: list[Candidate] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


_SOURCE_WEIGHT = {"official": 3, "alternate": 1, "short": 1, "reported": 1}


class TitleNormalizer:
    """Maps raw titles to O*NET-SOC 2019 codes; build once per process (about 1 s), then call it.

    Args:
        min_score: below this match score (0-1) the answer is "no match" (``code=None``).
        top_k: how many candidates each :class:`Match` lists.
        cache_size: distinct raw titles remembered (career data repeats titles a lot).
    """

    def __init__(self, min_score: float = 0.86, top_k: int = 5, cache_size: int = 500_000) -> None:
        from rapidfuzz import fuzz, process

        self._fuzz, self._process = fuzz, process
        self.min_score, self.top_k, self.cache_size = min_score, top_k, cache_size
        self.taxonomy = Taxonomy.load()
        titles = read_table("titles")
        votes: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for code, title, source in titles.select("code", "title", "source").iter_rows():
            key = canonical(title)
            if key:
                # one vote per (key, code), the strongest source: "Teacher" and "Teachers" are one key
                votes[key][code] = max(votes[key][code], _SOURCE_WEIGHT[source])
        self._votes = {k: dict(v) for k, v in votes.items()}
        # Stripped index: keys with qualifiers removed, only where that does not create a new ambiguity.
        self._stripped: dict[str, dict[str, int]] = {}
        for key, codes in self._votes.items():
            s = _strip_qualifiers(key)
            if s and s != key and s not in self._votes:
                bucket = self._stripped.setdefault(s, {})
                for code, n in codes.items():
                    bucket[code] = bucket.get(code, 0) + n
        self._keys = list(self._votes)
        # For ambiguous keys: how strongly each occupation's own titles use each word (idf-weighted).
        self._word_weight: dict[str, dict[str, float]] = defaultdict(dict)
        doc_freq: dict[str, int] = defaultdict(int)
        per_code: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for key, codes in self._votes.items():
            for w in set(key.split()):
                doc_freq[w] += 1
                for code in codes:
                    per_code[code][w] += 1
        for code, words in per_code.items():
            for w, n in words.items():
                self._word_weight[code][w] = math.log1p(n) * math.log(len(self._votes) / doc_freq[w])
        self._by_word: dict[str, list[int]] = defaultdict(list)
        for i, key in enumerate(self._keys):
            for w in set(key.split()):
                if len(w) > 2:
                    self._by_word[w].append(i)
        self._vocab = list(self._by_word)
        self._cache: dict[str, Match] = {}

    # -- public -------------------------------------------------------------------------------------
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

    # -- internals ----------------------------------------------------------------------------------
    def _ranked(self, query: str, votes: dict[str, int], score: float) -> list[Candidate]:
        total = sum(votes.values())

        def order(code: str) -> tuple[float, float]:
            return (votes[code] / total, self._affinity(query, code))

        codes = sorted(votes, key=order, reverse=True)[: self.top_k]
        return [Candidate(c, self.taxonomy.title(c), score) for c in codes]

    def _affinity(self, query: str, code: str) -> float:
        """How much the occupation's own O*NET titles use the query's words (ties between codes)."""
        weights = self._word_weight.get(code, {})
        return sum(weights.get(w, 0.0) for w in set(query.split()))

    def _result(self, raw: str, method: str, key: str | None, cands: list[Candidate]) -> Match:
        if not cands or cands[0].score < self.min_score:
            return Match(raw, None, None, cands[0].score if cands else 0.0, "none", key, cands)
        best = cands[0]
        return Match(raw, best.code, best.title, best.score, method, key, cands)

    def _match(self, raw: str) -> Match:
        key = canonical(raw[:300])  # titles are short; a 200,000-character one is not worth matching in full
        if not key:
            return Match(raw, None, None, 0.0, "none")
        if key in self._votes:
            return self._result(raw, "exact", key, self._ranked(key, self._votes[key], 1.0))
        head = canonical(_head(raw[:300])) or key
        for variant in dict.fromkeys([_strip_qualifiers(key), head, _strip_qualifiers(head)]):
            if not variant:
                continue
            votes = self._votes.get(variant) or self._stripped.get(variant)
            if votes:
                return self._result(raw, "stripped", variant, self._ranked(variant, votes, 0.97))
        return self._fuzzy(raw, _strip_qualifiers(key) or key)

    def _fuzzy(self, raw: str, query: str) -> Match:
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
            close = process.extract(w, self._vocab, scorer=fuzz.ratio, limit=3, score_cutoff=80)
            if close:  # one posting list per query word, however many spellings stand in for it
                postings.append([i for c, _, _ in close for i in self._by_word[c]])
        # The rarest words carry the identity of a title ("forklift", not "operator"): pool from the two
        # shortest posting lists only, which keeps the pool small for titles full of common words.
        postings.sort(key=len)
        pool = {i for plist in postings[:2] for i in plist}
        scored: dict[str, float] = {}
        if pool:
            choices = [self._keys[i] for i in pool]
            # token_set alone rewards any shared word; averaging with token_sort penalises extra words.
            # Native scorer first (fast, over the whole pool), the average on its best 30 only.
            for key, _, _ in process.extract(query, choices, scorer=fuzz.token_set_ratio, limit=30,
                                             score_cutoff=60):
                s = _overlap(query, key)
                if s >= 60:
                    scored[key] = s
        # per code: the best (similarity, vote share, word affinity) over its keys, and the key
        best: dict[str, tuple[tuple[float, float, float], str]] = {}
        for key, s in scored.items():
            total = sum(self._votes[key].values())
            for code, n in self._votes[key].items():
                rank = (s / 100.0, n / total, self._affinity(query, code))
                if code not in best or rank > best[code][0]:
                    best[code] = (rank, key)
        ordered = sorted(best.items(), key=lambda kv: kv[1][0], reverse=True)[: self.top_k]
        cands = [Candidate(c, self.taxonomy.title(c), round(rank[0], 4)) for c, (rank, _) in ordered]
        matched = ordered[0][1][1] if ordered else None
        return self._result(raw, "fuzzy", matched, cands)
