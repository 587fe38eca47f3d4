"""What ``POST /v1/predict`` accepts and returns.

Body: one career record in the project's schema (:class:`jobpred.schema.CareerRecord`), a JSON array of
them, or ``{"records": [...]}``. The predictor comes from the ``predictor`` query parameter or a top-level
``"predictor"`` field (the query parameter wins). Every problem is a :class:`BadRequest` whose message names
the field (``records.2.experience.0.title: ...``); the app turns it into a 4xx, never a 5xx.

Response of one record (a batch returns ``{"predictions": [...], "latency_ms"}``):

    {"person_id", "reason", "occupation": {"code", "title"}, "top_k": [{"code", "title", "score"}, ...],
     "related": [{"code", "title"}, ...], "model", "adapter", "latency_ms",
     "predictor", "history_jobs_dropped", "answer_method"}

``history_jobs_dropped`` > 0 says the history was cut to its most recent jobs by the prompt budget rule;
``answer_method`` says how the answer became an O*NET code (exact | normalised | nearest | history | prior).
"""

from __future__ import annotations

import json

from pydantic import ValidationError

from jobpred.schema import CareerRecord


class BadRequest(ValueError):
    """A client error: ``status`` (400/404/413/422) and a message that names the field."""

    def __init__(self, status: int, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.status, self.field = status, field


def _validation_message(exc: ValidationError, prefix: str) -> tuple[str, str]:
    err = exc.errors(include_url=False)[0]
    parts = ([*prefix.split(".")] if prefix else []) + [str(p) for p in err["loc"]]
    where = ".".join(parts)
    msg = err["msg"].removeprefix("Value error, ")
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return where, f"{msg}{more}"


def parse_predict_body(raw: bytes, max_batch: int) -> tuple[list[CareerRecord], bool, str | None]:
    """(records, is_batch, predictor field) of a request body; BadRequest for anything malformed."""
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(400, "body", f"not valid JSON ({str(exc)[:120]})") from None
    except RecursionError:
        raise BadRequest(400, "body", "JSON nested too deeply") from None
    predictor = None
    if isinstance(data, dict) and "records" in data:
        predictor, items, batch, prefix = data.get("predictor"), data["records"], True, "records"
        if not isinstance(items, list):
            raise BadRequest(422, "records", "must be a list of career records")
    elif isinstance(data, list):
        items, batch, prefix = data, True, "records"
    elif isinstance(data, dict):
        predictor, items, batch, prefix = data.get("predictor"), [data], False, ""
    else:
        raise BadRequest(422, "body", "must be a career record object, a list of them, or {\"records\": [...]}")
    if predictor is not None and not isinstance(predictor, str):
        raise BadRequest(422, "predictor", "must be a string")
    if not items:
        raise BadRequest(422, "records", "is empty")
    if len(items) > max_batch:
        raise BadRequest(413, "records", f"{len(items)} records; at most {max_batch} per request")
    records = []
    for i, item in enumerate(items):
        try:
            records.append(CareerRecord.model_validate(item))
        except ValidationError as exc:
            where, msg = _validation_message(exc, f"{prefix}.{i}" if batch else "")
            raise BadRequest(422, where or "record", msg) from None
    return records, batch, predictor
