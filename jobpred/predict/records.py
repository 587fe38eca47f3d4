"""One career record (as a user sends it) -> the history a predictor is prompted with.

    jobs = resolve_history(record, normalizer, taxonomy)      # oldest first, titles mapped to O*NET
    text, dropped, codes = prompt_history(record, count, context, build, max_tokens, normalizer, taxonomy)

Batch prediction reads prepared examples (``jobpred prepare`` already resolved their titles); the Serve
application gets raw records, so it resolves them here by the same rules as ``prepare``: jobs sorted by
start (then end; a current job last), a given ``onet_code`` kept, otherwise the title normaliser's code.
Every job of the record is history (there is no target to hold out). The prompt budget rule is
:func:`jobpred.llm.budget.fit_history`: the oldest jobs are dropped until prompt + ``max_tokens`` fit.
"""

from __future__ import annotations

from collections.abc import Callable

from jobpred.llm.budget import fit_history
from jobpred.schema import CareerRecord, parse_month


def resolve_history(record: CareerRecord, normalizer, taxonomy) -> list[dict]:
    """The record's jobs, oldest first, each with ``onet_code`` / ``onet_title`` (None when unmapped)."""
    jobs = sorted(record.experience,
                  key=lambda j: (parse_month(j.start), parse_month(j.end) if j.end else 10**9))
    out = []
    for job in jobs:
        code = job.onet_code if job.onet_code in taxonomy else normalizer(job.title).code
        out.append({"title": job.title, "company": job.company, "start": job.start, "end": job.end,
                    "description": job.description, "onet_code": code,
                    "onet_title": taxonomy.title(code) if code else None})
    return out


def prompt_history(
    record: CareerRecord,
    count: Callable[[list[dict]], int],
    context: int,
    build: Callable[[str], list[dict]],
    max_tokens: int,
    normalizer,
    taxonomy,
) -> tuple[str, int, list[str | None]]:
    """(history JSON that fits, jobs dropped, O*NET codes of all jobs oldest first) for one record.

    Raises :class:`jobpred.llm.budget.PromptTooLong` when even the most recent job does not fit.
    """
    jobs = resolve_history(record, normalizer, taxonomy)
    education = [e.model_dump() for e in record.education]
    text, dropped, _ = fit_history(count, context, build, education, jobs, max_tokens)
    return text, dropped, [j["onet_code"] for j in jobs]
