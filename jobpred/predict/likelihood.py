"""The 'ranked' answer mode: candidate occupations ranked by the model's likelihood of each title.

    codes = candidate_codes(taxonomy, history_codes, generated_code, k=32)
    # each candidate: the predictor's last prompt + its answer block with the candidate's title, scored
    # in one prefill (vLLM prompt logprobs, one generated token); per candidate the logprobs of the title
    # and the closing tag, the tokens from ``score_from`` on:
    logprobs = recover_shared_positions(rows)            # positions the prefix cache served, from siblings
    ranked = rank_by_likelihood(taxonomy, {code: sum(lp) ...}, top_k=10)   # method 'likelihood'

Why: a 135M model that has learned the mapping still drifts from the exact O*NET wording when it
generates, and every unmapped answer falls back to a rule. Scoring the titles instead makes every first
choice the model's (LABOR-LLM, arXiv 2406.17972, ranks next occupations by a fine-tuned LLM's likelihood of
each title the same way), gives a ranked top-k with probabilities, and keeps the reason: the title is scored
after the reason the predictor wrote (joint) or was given (two-model).

The candidates are what the history makes plausible, so a candidate list needs no training data and
Serve builds the same one: the generated answer's occupation (when it mapped), the history's occupations
(most recent first), the most recent one's O*NET Related Occupations and Career Changers moves, then the
earlier jobs' and the generated answer's related occupations, up to ``k``.

The score of a title is the sum of the logprobs of its tokens and of the closing ``</answer>`` (so a title
that is the prefix of a longer one is not favoured): log P(title | prompt), the sequence probability. The
top-k's ``scores`` are those probabilities renormalised over the candidates.

Prompt logprobs and vLLM's prefix cache: the candidates of one prompt share everything before the title, so
the engine reads that prefix from its cache (``skip_reading_prefix_cache`` false; a seven-fold saving on
the CPU, docs/predict.md). vLLM then leaves the logprobs of cache-served positions unset (garbage), and a
cached block may reach into a title when two candidates' titles start with the same tokens. Such positions
are detected (the logprob's token is not the prompt's token, :mod:`jobpred.llm.engine` sets None) and filled
from a candidate that computed the same position after the same tokens (same context, same value).
"""

from __future__ import annotations

import math

from jobpred.predict.answers import RankedAnswer

LIKELIHOOD_METHOD = "likelihood"
"""``RankedAnswer.method`` of a first choice ranked by the model's likelihood."""


def candidate_codes(taxonomy, history_codes: list[str | None], generated: str | None, k: int) -> list[str]:
    """Up to ``k`` distinct valid O*NET codes, most plausible first (see the module docstring)."""
    history = [c for c in reversed(history_codes) if c and c in taxonomy]  # most recent first
    out: dict[str, None] = {}

    def add(codes) -> None:
        for code in codes:
            if len(out) < k:
                out.setdefault(code, None)

    if generated and generated in taxonomy:
        add([generated])
    add(history)
    if history:
        add(c for c, _ in taxonomy.related(history[0]))
        add(c for c, _ in taxonomy.career_changers(history[0]))
    for code in history[1:] + ([generated] if generated in taxonomy else []):
        add(c for c, _ in taxonomy.related(code)[:5])
    return list(out)


def recover_shared_positions(token_ids: list[list[int]], logprobs: list[list[float | None]]) -> list[list[float | None]]:
    """Fill the unset logprobs of each candidate's scored positions from a candidate that has the same
    scored tokens up to and including that position and computed it; positions nobody computed stay None.

    ``token_ids[i]`` / ``logprobs[i]``: candidate i's scored positions (all candidates of one prompt share the
    tokens before them)."""
    known: dict[tuple[int, ...], float] = {}
    for ids, lps in zip(token_ids, logprobs):
        for j, lp in enumerate(lps):
            if lp is not None:
                known.setdefault(tuple(ids[: j + 1]), lp)
    return [[lp if lp is not None else known.get(tuple(ids[: j + 1])) for j, lp in enumerate(lps)]
            for ids, lps in zip(token_ids, logprobs)]


def rank_by_likelihood(taxonomy, scores: dict[str, float | None], top_k: int) -> RankedAnswer | None:
    """The candidates with a score, most likely first (ties: candidate order); None when none has one."""
    scored = [(code, s) for code, s in scores.items() if s is not None and math.isfinite(s)]
    if not scored:
        return None
    order = sorted(range(len(scored)), key=lambda i: (-scored[i][1], i))
    best = scored[order[0]][1]
    total = sum(math.exp(s - best) for _, s in scored)
    codes = [scored[i][0] for i in order[:top_k]]
    probs = [round(math.exp(scored[i][1] - best) / total, 4) for i in order[:top_k]]
    return RankedAnswer(codes, [taxonomy.title(c) for c in codes], probs, LIKELIHOOD_METHOD)
