"""The data contract: career records (input), and the prepared tables every later stage reads.

Input (JSON Lines or Parquet, one person per line/row):

    {"person_id": "p1",
     "education": [{"degree": "BSc", "field": "Computer Science", "institution": "...", "start": "2010", "end": "2014"}],
     "experience": [{"title": "Software Engineer", "company": "...", "start": "2014-06", "end": "2017-03",
                     "description": "...", "onet_code": "15-1252.00"}]}

``title`` and ``start`` are required per experience; dates are ``YYYY`` or ``YYYY-MM``; ``end`` may be
null (current job); experiences may arrive unsorted. :class:`CareerRecord` validates one record and its
errors name the field (``experience.2.start``). The pyarrow schemas below are the tables ``prepare``
writes; :func:`require_columns` is how a stage checks its input up front.
"""

from __future__ import annotations

import datetime as _dt
import functools
import re
from typing import Annotated

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

MAX_TITLE_CHARS = 300
"""A job title longer than this is rejected: no real title is, and it would blow any prompt budget."""
MAX_TEXT_CHARS = 20_000
"""Company, institution, description: longer values are rejected, not truncated silently."""
MAX_JOBS = 1_000
"""More experiences than this in one record is treated as broken input (the prepare step keeps the most
recent jobs that fit the history budget anyway)."""
MAX_EDUCATION = 100
MIN_YEAR = 1900

_DATE_RE = re.compile(r"^(\d{4})(?:-(\d{2}))?$")
_CODE_RE = re.compile(r"^\d{2}-\d{4}\.\d{2}$")


@functools.lru_cache(maxsize=65536)  # career data repeats the same few thousand dates
def parse_month(value: str) -> int:
    """'2014' or '2014-06' -> months since year 0 (2014*12 + 5); ValueError with a reason otherwise."""
    m = _DATE_RE.match(value)
    if not m:
        raise ValueError(f"date {value[:40]!r} is not YYYY or YYYY-MM")
    year, month = int(m.group(1)), int(m.group(2) or 1)
    if not 1 <= month <= 12:
        raise ValueError(f"month {month} in {value!r} is not 01-12")
    if not MIN_YEAR <= year <= _dt.date.today().year + 1:
        raise ValueError(f"year {year} in {value!r} is outside {MIN_YEAR}-{_dt.date.today().year + 1}")
    return year * 12 + month - 1


Text = Annotated[str, StringConstraints(max_length=MAX_TEXT_CHARS)]


class _Strict(BaseModel):
    # Unknown keys are ignored (real exports carry extra columns); wrong types are errors, not coerced.
    model_config = ConfigDict(extra="ignore", strict=True, str_strip_whitespace=True)


class Education(_Strict):
    degree: Text | None = None
    field: Text | None = None
    institution: Text | None = None
    start: str | None = None
    end: str | None = None

    @field_validator("start", "end")
    @classmethod
    def _date(cls, v: str | None) -> str | None:
        if v:
            parse_month(v)
        return v or None


class Experience(_Strict):
    title: Annotated[str, StringConstraints(min_length=1, max_length=MAX_TITLE_CHARS)]
    start: str
    end: str | None = None
    company: Text | None = None
    description: Text | None = None
    onet_code: str | None = None

    @field_validator("start")
    @classmethod
    def _start(cls, v: str) -> str:
        parse_month(v)
        return v

    @field_validator("end")
    @classmethod
    def _end(cls, v: str | None) -> str | None:
        if v:
            parse_month(v)
        return v or None

    @field_validator("onet_code")
    @classmethod
    def _code(cls, v: str | None) -> str | None:
        if v and not _CODE_RE.match(v):
            raise ValueError(f"{v[:40]!r} is not an O*NET-SOC code like 15-1252.00")
        return v or None

    @model_validator(mode="after")
    def _order(self) -> Experience:
        if self.end and parse_month(self.end) < parse_month(self.start):
            raise ValueError(f"end {self.end} is before start {self.start}")
        return self


class CareerRecord(_Strict):
    person_id: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    education: list[Education] = Field(default_factory=list, max_length=MAX_EDUCATION)
    experience: list[Experience] = Field(min_length=1, max_length=MAX_JOBS)


def describe_error(exc: Exception) -> tuple[str, str]:
    """(field, reason) for a rejected record; field is dotted ('experience.2.start') or '' for the line."""
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        err = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        return where, f"{where or 'record'}: {msg}{more}"
    return "", str(exc)


# ---- prepared tables (written by `jobpred prepare`, read by every later stage) ------------------------

EDUCATION_TYPE = pa.struct(
    [(n, pa.string()) for n in ("degree", "field", "institution", "start", "end")]
)
JOB_TYPE = pa.struct(
    [
        ("title", pa.string()),  # as the person wrote it
        ("company", pa.string()),
        ("start", pa.string()),
        ("end", pa.string()),
        ("description", pa.string()),
        ("onet_code", pa.string()),  # resolved O*NET-SOC 2019 code, null when unknown
        ("onet_title", pa.string()),
        ("code_source", pa.string()),  # given | normalized | none
        ("match_score", pa.float32()),  # normaliser score, null when the code was given
    ]
)

EXAMPLES_SCHEMA = pa.schema(
    [
        ("example_id", pa.string()),
        ("person_id", pa.string()),
        ("split", pa.string()),  # train | val | test
        ("education", pa.list_(EDUCATION_TYPE)),
        ("history", pa.list_(JOB_TYPE)),  # chronological, everything before the target job
        ("target_code", pa.string()),
        ("target_title", pa.string()),
        ("target_raw_title", pa.string()),
        ("target_start", pa.string()),
        ("n_jobs", pa.int32()),  # jobs in the input record
        ("truncated_jobs", pa.int32()),  # oldest jobs dropped to fit the history budget
        ("history_chars", pa.int32()),
    ]
)
"""One row per person with at least two jobs: history -> next (last) job."""

PREDICTIONS_SCHEMA = pa.schema(
    [
        ("example_id", pa.string()),
        ("target_code", pa.string()),
        ("predicted_code", pa.string()),  # null: nothing valid
        ("ranked_codes", pa.list_(pa.string())),  # best first, at most top_k
        ("history_len", pa.int32()),  # jobs in the history (before the target)
        ("last_code", pa.string()),  # O*NET code of the last history job, null when unknown
    ]
)
"""``RUN_DIR/predictions/<predictor>.parquet``, written by every predictor (extra columns allowed: LLM
predictors add ``reason`` and ``raw_output``); see :mod:`jobpred.predictions`."""

# ---- oracle reasons (written by `jobpred reasons` under RUN_DIR/reasons/) -----------------------------
# Every row of every table carries the model, the prompt version and the sampling parameters that made it.

_LLM_CALL_FIELDS = [
    ("model", pa.string()),
    ("prompt_version", pa.string()),
    ("sampling", pa.string()),  # JSON of the sampling parameters (temperature, top_p, max_tokens, seed, ...)
    ("prompt_tokens", pa.int32()),
    ("generated_tokens", pa.int32()),
    ("llm_seconds", pa.float32()),  # time the request spent in the engine (or HTTP round trip)
    ("committed_at", pa.string()),  # ISO-8601 UTC, when the row's part was committed
]

CANDIDATES_SCHEMA = pa.schema(
    [
        ("example_id", pa.string()),
        ("candidate_id", pa.string()),  # "<example_id>/<variant>/<index>"
        ("variant", pa.string()),  # plain | hinted
        ("candidate_idx", pa.int32()),
        ("history_json", pa.string()),  # the fenced history exactly as the teacher saw it (the judge sees it too)
        ("history_jobs_dropped", pa.int32()),  # oldest jobs cut by the prompt budget rule
        ("target_code", pa.string()),
        ("target_title", pa.string()),
        ("raw_output", pa.string()),  # generated text (with the prefilled '<think>' put back)
        ("reason", pa.string()),  # null when the output has no reason block
        ("answer", pa.string()),  # null when the output has no answer block
        ("answer_code", pa.string()),  # O*NET code of the answer (title normaliser), null when none
        ("format_ok", pa.bool_()),
        ("format_problem", pa.string()),  # why format_ok is false
        ("error", pa.string()),  # inference error, null when the call succeeded
        ("n_judgeable", pa.int32()),  # candidates of this example with a reason to judge
        *_LLM_CALL_FIELDS,
    ]
)
"""``reasons/candidates/``: one row per candidate reason (N per example, plus N hinted when enabled)."""

JUDGEMENTS_SCHEMA = pa.schema(
    [
        ("example_id", pa.string()),
        ("candidate_id", pa.string()),
        ("criterion", pa.string()),  # factuality | coherence | utility
        ("attempt", pa.int8()),  # 1, or 2 for the single retry of a judgement that failed to parse
        ("status", pa.string()),  # ok | parse_failed | error
        ("score", pa.int8()),  # 1-5, null unless status == ok
        ("error_count", pa.int32()),  # factuality
        ("errors", pa.list_(pa.string())),  # factuality: the unsupported claims
        ("temporal_order", pa.string()),  # coherence: good | problematic | broken
        ("logical_issues", pa.int32()),  # coherence
        ("relevance", pa.string()),  # utility: strong | moderate | weak | none
        ("supports", pa.string()),  # utility: this_occupation | different_occupation | no_occupation
        ("raw_output", pa.string()),
        ("problem", pa.string()),  # why status != ok
        ("history_jobs_dropped", pa.int32()),  # factuality: further jobs cut to fit the judge's budget
        *_LLM_CALL_FIELDS,
    ]
)
"""``reasons/judgements/``: one row per candidate x criterion x attempt."""

GAINS_SCHEMA = pa.schema(
    [
        ("example_id", pa.string()),
        ("candidate_id", pa.string()),
        ("status", pa.string()),  # ok | error
        ("logp_reason", pa.float32()),  # log P(true title | history, this reason) under the judge's model
        ("logp_no_reason", pa.float32()),  # the same with an empty reason (one per example)
        ("likelihood_gain", pa.float32()),  # logp_reason - logp_no_reason (nats), null unless status == ok
        ("title_tokens", pa.int32()),  # scored positions: the title and its closing tag
        ("problem", pa.string()),  # why status != ok
        ("model", pa.string()),
        ("prompt_version", pa.string()),
        ("prompt_tokens", pa.int32()),
        ("llm_seconds", pa.float32()),
        ("committed_at", pa.string()),
    ]
)
"""``reasons/gains/`` (``reasons.likelihood_gain``): one row per well-formed candidate (reasons/gain.py)."""

REASON_ERRORS_SCHEMA = pa.schema(
    [
        ("example_id", pa.string()),
        ("stage", pa.string()),  # candidates | judge | judge_retry | gain
        ("scope", pa.string()),  # example (the whole example failed) | candidate | judgement | gain
        ("candidate_id", pa.string()),
        ("criterion", pa.string()),
        ("error", pa.string()),
        ("model", pa.string()),
        ("prompt_version", pa.string()),
        ("committed_at", pa.string()),
    ]
)
"""``reasons/errors/``: every failed unit of work, with the reason; one bad row never fails the job."""

OUTCOMES_SCHEMA = pa.schema(
    [
        ("example_id", pa.string()),
        ("status", pa.string()),  # oracle | no_oracle | error
        ("reason", pa.string()),  # why no oracle / what failed; null for oracle
        ("n_candidates", pa.int32()),
        ("n_format_ok", pa.int32()),
        ("n_judged", pa.int32()),  # candidates with all three judgements ok
        ("best_candidate_id", pa.string()),
        ("best_combined", pa.float32()),
    ]
)
"""``reasons/outcomes.parquet``: exactly one row per planned example."""

ORACLE_SCHEMA = pa.schema(
    [
        ("example_id", pa.string()),
        ("candidate_id", pa.string()),
        ("variant", pa.string()),
        ("reason", pa.string()),
        ("answer", pa.string()),
        ("answer_code", pa.string()),
        ("answer_correct", pa.bool_()),
        ("target_code", pa.string()),
        ("target_title", pa.string()),
        ("factuality", pa.int8()),
        ("coherence", pa.int8()),
        ("utility", pa.int8()),
        ("combined", pa.float32()),
        ("grounding", pa.float32()),  # share of the reason's checkable facts found in the history (reasons/grounding.py)
        ("likelihood_gain", pa.float32()),  # reasons/gain.py; null when reasons.likelihood_gain is off
        ("teacher_model", pa.string()),
        ("teacher_prompt_version", pa.string()),
        ("teacher_sampling", pa.string()),
        ("judge_model", pa.string()),
        ("judge_prompt_versions", pa.string()),  # "factuality=...;coherence=...;utility=..."
        ("selection", pa.string()),  # JSON of the weights, minimums and rules that picked this row
    ]
)
"""``reasons/oracle.parquet``: the selected reason of each example that has one."""

DPO_PAIRS_SCHEMA = pa.schema(
    [
        ("example_id", pa.string()),
        ("chosen_candidate_id", pa.string()),
        ("rejected_candidate_id", pa.string()),
        ("chosen_output", pa.string()),  # "<think>reason</think>\n<answer>answer</answer>"
        ("rejected_output", pa.string()),
        ("chosen_combined", pa.float32()),
        ("rejected_combined", pa.float32()),
        ("margin", pa.float32()),
        ("teacher_model", pa.string()),
        ("teacher_prompt_version", pa.string()),
        ("judge_model", pa.string()),
        ("selection", pa.string()),
    ]
)
"""``reasons/dpo_pairs.parquet``: best vs worst judged candidate (by ``reasons.select_by``) where their gap > margin."""

# ---- fine-tuning (written by `jobpred train` under RUN_DIR/train/<adapter>/) ---------------------------

TRAIN_EXAMPLES_SCHEMA = pa.schema(
    [
        ("idx", pa.int64()),  # position in the adapter's training table (sorted by example_id): the data order key
        ("example_id", pa.string()),
        ("used", pa.bool_()),  # false: skipped by the cutoff rule
        ("skip_reason", pa.string()),  # too_long, null when used
        ("dropped_jobs", pa.int32()),  # oldest history jobs cut so that prompt + target fit max_length
        ("prompt_tokens", pa.int32()),
        ("target_tokens", pa.int32()),  # DPO: the longer of chosen and rejected
    ]
)
"""``train/<adapter>/examples.parquet``: every candidate training row of one adapter and what the cutoff rule
did to it (the data an adapter was trained on, recorded next to its metrics)."""

REJECTED_FIELDS = ("line", "source", "field", "reason", "excerpt")
"""rejected.jsonl: 1-based line (or row) number in ``source``, the failing field, why, and the first
200 characters of the input."""


def require_columns(table_columns: list[str], schema: pa.Schema, what: str) -> None:
    """Fail early, naming every missing column, when a stage's input does not have its schema."""
    missing = [n for n in schema.names if n not in table_columns]
    if missing:
        raise ValueError(f"{what} is missing column(s) {missing}; expected {schema.names}")
