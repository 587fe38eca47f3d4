"""Reason-quality signals that need no judge model: is the reason about *this* person, and does the judge vary?

    grounding(reason, history_json)      # GroundingCheck(score, checked, missing, placeholder)
    judge_spread(judgements)             # per criterion: n, mean, std, share of the most common score

The LLM judge is the paper's method, but a 135M judge gives the literal format placeholder ("your reason")
and a reason about someone else 5/5. Two checks that a model cannot fool:

- **Grounding** (the factuality rubric, done by string matching): the checkable facts a reason names --
  years, and capitalised names (employers, titles, degrees, fields) -- must occur in the history it was
  written from. ``score`` is the share that do (None when the reason names nothing checkable), ``missing``
  lists the ones that do not. A reason that is a format placeholder or names nothing of the history at all
  (no word of any job title, employer or field) is ``placeholder``/``score 0``.
- **Judge spread**: a criterion whose scores barely vary (one score for nearly every candidate) carries no
  signal for selection; ``jobpred reasons`` records the spread and says so instead of using it silently.

Selection can require a grounding score (``reasons.min_grounding``); the oracle rows record it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import polars as pl

from jobpred.llm.prompts import split_history

_YEAR = re.compile(r"\b(?:19|20)\d{2}\b")
_NAME = re.compile(r"\b[A-Z][a-zA-Z&'.-]+(?:\s+(?:of|and|&|the|de)?\s*[A-Z][a-zA-Z&'.-]+)*")
_PLACEHOLDERS = ("your reason", "one o*net-soc 2019 occupation title", "step-by-step account")
_STOP_WORDS = (  # words that name no fact about the person
    "the this that these those they their there then than with from into over after before during while when "
    "where which what who whom whose because since also she her hers him his he it its person people job jobs "
    "role roles work worked working career next occupation occupations history education degree first last "
    "later now present years year months month time step reason answer task")
_STOP = frozenset(_STOP_WORDS.split())
_WORD = re.compile(r"[a-z][a-z'-]{2,}")


@dataclass(frozen=True)
class GroundingCheck:
    score: float | None  # share of checkable facts found in the history; None: nothing checkable
    checked: int
    missing: tuple[str, ...]
    placeholder: bool  # the reason is the format's placeholder, or names nothing of the history


def _history_text(history_json: str) -> tuple[str, set[str]]:
    """The history's text (lower case) and its content words, whatever the rendering."""
    try:
        education, jobs = split_history(history_json)
        text = " ".join(str(v) for item in [*education, *jobs] for v in item.values())
    except (ValueError, KeyError, AttributeError, TypeError):  # not a rendered history: its raw text
        text = history_json
    text = text.lower()
    return text, {w for w in _WORD.findall(text) if w not in _STOP}


def grounding(reason: str | None, history_json: str) -> GroundingCheck:
    """How much of what ``reason`` states about the person is in ``history_json`` (see the module docstring)."""
    if not reason or not reason.strip():
        return GroundingCheck(0.0, 0, (), True)
    low = reason.lower()
    text, words = _history_text(history_json)
    if any(p in low for p in _PLACEHOLDERS) or (words and not words & set(_WORD.findall(low))):
        return GroundingCheck(0.0, 0, (), True)
    facts = set(_YEAR.findall(reason))
    for name in _NAME.findall(reason):
        parts = [w for w in name.split() if w.lower() not in _STOP and len(w) > 2]
        if parts:
            facts.add(" ".join(parts))
    checked = sorted(facts)
    missing = tuple(f for f in checked if f.lower() not in text
                    and not all(w.lower().strip(".'") in words for w in f.split()))
    score = None if not checked else round(1 - len(missing) / len(checked), 3)
    return GroundingCheck(score, len(checked), missing, False)


def grounding_columns(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` (columns ``reason``, ``history_json``) with ``grounding`` (0-1, null: nothing checkable, 0 for a
    placeholder) and ``placeholder`` added."""
    checks = [grounding(r, h or "") for r, h in zip(frame["reason"], frame["history_json"])]
    return frame.with_columns(
        pl.Series("grounding", [c.score for c in checks], pl.Float32),
        pl.Series("placeholder", [c.placeholder for c in checks], pl.Boolean))


def judge_spread(judgements: pl.DataFrame) -> dict[str, dict]:
    """Per criterion, over the ok judgements: n, mean, std and the share of the most common score; ``flat``
    when that share is at least 0.9 or the std under 0.25 (the criterion cannot rank candidates)."""
    ok = judgements.filter(pl.col("status") == "ok")
    out = {}
    for (criterion,), g in ok.group_by("criterion", maintain_order=True):
        scores = g["score"].cast(pl.Float64)
        top = g.group_by("score").len()["len"].max() / g.height
        std = float(scores.std() or 0.0)
        out[criterion] = {"n": g.height, "mean": round(float(scores.mean()), 2), "std": round(std, 2),
                          "mode_share": round(float(top), 2), "flat": bool(top >= 0.9 or std < 0.25)}
    return out
