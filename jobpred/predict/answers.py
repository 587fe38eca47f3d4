"""Generated answer text -> a ranked list of valid O*NET-SOC 2019 occupations (never free text).

    ranker = AnswerRanker(top_k=10)
    ranked = ranker.rank("Registered nurse", history_codes=["31-1131.00"])
    ranked.codes[0], ranked.method          # '29-1141.00', 'exact'

Method ("generate, then map", chosen over constrained decoding; the comparison on the validation split
is in ``docs/predict.md``; ``python -m benchmarks.bench_predict --answers N`` reruns it):

1. **First choice.** The model's answer text is mapped strictly (an official title or code: ``exact``),
   else through the title normaliser (alternate titles, abbreviations, typos: ``normalised``). An output
   without an answer block offers phrases instead (quoted strings, "is a X", its last line:
   :func:`jobpred.predict.steps.parse_step`), mapped the same way (``exact_phrase``, ``normalised_phrase``).
   If nothing maps, the normaliser's nearest occupation is taken when its match score is at least
   ``nearest_min_score`` (``nearest``); otherwise the most recent occupation of the history (``history``:
   "stays"), and with no known history the occupation most often moved into in O*NET's Career Changers
   Matrix (``prior``). So the first choice is always a valid code, and ``method`` says how it was found.
2. **The rest of the top-k**: the first choice's O*NET Related Occupations (Index order), then its Career
   Changers Matrix destinations, then the history's occupations (most recent first) and their related
   occupations; duplicates dropped.

``scores`` are a display confidence, not a probability: the first choice's match score (1.0 for exact),
the Related Occupation with Index i gets first/(i+1) -- the credit AccRM gives it --, later ones less.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from jobpred import taxonomy  # taxonomy.TitleNormalizer: the normaliser loads on first use

_FILL_SCORE = 0.05  # score of candidates that only fill the list (history, changers)
FALLBACK_METHODS = ("history", "prior")
"""Ranking methods whose first choice does not come from the model's output."""


@dataclass(frozen=True)
class RankedAnswer:
    codes: list[str]  # best first; codes[0] is always a valid O*NET-SOC 2019 code
    titles: list[str]
    scores: list[float]
    method: str  # exact | normalised | exact_phrase | normalised_phrase | nearest | history | prior


class AnswerRanker:
    """Builds the taxonomy and the title normaliser once (about a second); then :meth:`rank` per answer."""

    def __init__(self, top_k: int = 10, min_score: float = 0.86, nearest_min_score: float = 0.6) -> None:
        self.top_k = top_k
        self.nearest_min_score = nearest_min_score
        self.taxonomy = taxonomy.Taxonomy.load()
        self.normalizer = taxonomy.TitleNormalizer(min_score=min_score, top_k=3)
        into = Counter(dst for src in self.taxonomy.occupations for dst, _ in self.taxonomy.career_changers(src))
        self.prior = into.most_common(1)[0][0] if into else sorted(self.taxonomy.occupations)[0]

    def first_choice(self, answer: str | None, history_codes: list[str],
                     alternatives: tuple[str, ...] = ()) -> tuple[str, float, str]:
        """(code, match score, method) of the answer text (else of the first alternative phrase that
        maps), with the documented fall-backs."""
        texts = [t for t in (answer, *alternatives) if t and t.strip()]
        for text in texts:
            code = self.taxonomy.to_code(text)
            if code is not None:
                return code, 1.0, "exact" if text == answer else "exact_phrase"
            match = self.normalizer(text)
            if match.code is not None:
                return match.code, match.score, "normalised" if text == answer else "normalised_phrase"
        for text in texts:
            match = self.normalizer(text)
            if match.candidates and match.candidates[0].score >= self.nearest_min_score:
                return match.candidates[0].code, match.candidates[0].score, "nearest"
        known = [c for c in history_codes if c in self.taxonomy]
        if known:
            return known[-1], _FILL_SCORE, "history"
        return self.prior, _FILL_SCORE, "prior"

    def rank(self, answer: str | None, history_codes: list[str] | None = None,
             alternatives: tuple[str, ...] = ()) -> RankedAnswer:
        """Ranked occupations for one generated answer; ``history_codes`` oldest first (None allowed inside);
        ``alternatives``: other phrases of the output that may name the occupation (tried after ``answer``)."""
        history = [c for c in (history_codes or []) if c]
        first, score, method = self.first_choice(answer, history, alternatives)
        ranked: dict[str, float] = {first: score}
        for code, index in self.taxonomy.related(first):
            ranked.setdefault(code, score / (index + 1))
        for code, _ in self.taxonomy.career_changers(first):
            ranked.setdefault(code, _FILL_SCORE * score)
        for past in reversed(history):
            ranked.setdefault(past, _FILL_SCORE * score)
            for code, index in self.taxonomy.related(past):
                ranked.setdefault(code, _FILL_SCORE * score / (index + 1))
        codes = list(ranked)[: self.top_k]
        return RankedAnswer(codes, [self.taxonomy.title(c) for c in codes],
                            [round(ranked[c], 4) for c in codes], method)

    def related(self, code: str, n: int = 10) -> list[tuple[str, str]]:
        """(code, title) of the O*NET Related Occupations of ``code``, most related first."""
        return [(c, self.taxonomy.title(c)) for c, _ in self.taxonomy.related(code)[:n]]
