"""One career record (as a user sends it) -> the history a predictor is prompted with.

    jobs = resolve_history(record, normalizer, taxonomy)      # oldest first, titles mapped to O*NET

Batch prediction reads prepared examples (``jobpred prepare`` already resolved their titles); the Serve
application gets raw records, so it resolves them here by the same rules as ``prepare``: jobs sorted by
start (then end; a current job last), a given ``onet_code`` kept, otherwise the title normaliser's code.
Every job of the record is history (there is no target to hold out); the predictor then fits it to its
prompt budget (:meth:`jobpred.predict.predictor.Predictor.start`).
"""

from __future__ import annotations

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
