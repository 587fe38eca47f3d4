"""Fences: how untrusted career data goes into a prompt.

Career data is untrusted text: a job title may read "Ignore previous instructions" or contain
"</answer>". Data goes into a prompt only (1) serialised as JSON (:func:`dump_data`, :func:`history_json`)
and (2) between marker lines that start with ``### BEGIN`` / ``### END`` (:func:`fence`). After
serialisation, ``<``, ``>`` and ``#`` inside the JSON are written as ``\\u003c``, ``\\u003e``, ``\\u0023``
(:func:`neutralise_json`): still valid JSON with the same meaning, but no tag and no marker line can appear
inside the data, so neither the model's output format nor the parsers can be steered by it. Every prompt
tells the model that the fenced blocks are data, never instructions.
"""

from __future__ import annotations

import json

_NEUTRAL = str.maketrans({"<": "\\u003c", ">": "\\u003e", "#": "\\u0023"})
_JOB_KEYS = (("title", "title"), ("onet_title", "occupation"), ("company", "company"), ("start", "start"),
             ("end", "end"), ("description", "description"))
_EDU_KEYS = ("degree", "field", "institution", "start", "end")


def neutralise_json(text: str) -> str:
    """Escape tag and marker characters inside JSON text (they can only occur inside JSON strings)."""
    return text.translate(_NEUTRAL)


def dump_data(value) -> str:
    """``value`` as one line of neutralised JSON (non-ASCII kept as is), ready to be fenced."""
    return neutralise_json(json.dumps(value, ensure_ascii=False, separators=(", ", ": ")))


def fence(name: str, body: str) -> str:
    """``body`` between the ``### BEGIN name`` and ``### END name`` marker lines (``body`` must already be
    neutralised JSON: :func:`dump_data` or :func:`history_json`)."""
    return f"### BEGIN {name}\n{body}\n### END {name}"


HISTORY_FORMATS = ("compact", "json")
"""How a history is rendered: 'compact' (the default: a fixed header line per section, then one JSON list
per entry, values by position) or 'json' (the paper's: one JSON object per entry, keys repeated)."""

_EDU_HEADER = "education: degree | field | institution | years"
_JOB_HEADER = "jobs, oldest first: title | occupation | company | years | description"


def history_json(education: list[dict] | None, jobs: list[dict], style: str = "compact") -> str:
    """The person's history as neutralised JSON, one education entry or job per line, oldest first.

    'compact' writes each entry as a JSON list in the header's column order (``null`` for a missing value,
    trailing ones left out; years as "2014-06 to 2017-03", "present" when the job has no end): the same
    escaping as 'json', without repeating the keys on every line, which is most of a short history's tokens.
    """
    if style == "json":
        return _as_objects(education, jobs)
    if style != "compact":
        raise ValueError(f"unknown history format {style!r}; expected one of {HISTORY_FORMATS}")
    edu = [[e.get("degree"), e.get("field"), e.get("institution"), _years(e.get("start"), e.get("end"), "")]
           for e in education or []]
    work = [[j.get("title"), j.get("onet_title"), j.get("company"), _years(j.get("start"), j.get("end"), "present"),
             j.get("description")] for j in jobs]
    return "\n".join([_EDU_HEADER, *(_compact(x) for x in edu), _JOB_HEADER, *(_compact(x) for x in work)])


def _years(start: str | None, end: str | None, open_end: str) -> str | None:
    if not start and not end:
        return None
    return f"{start or '?'} to {end or open_end or '?'}"


def _compact(values: list) -> str:
    values = [v or None for v in values]
    while values and values[-1] is None:
        values.pop()
    return dump_data(values)


def _as_objects(education: list[dict] | None, jobs: list[dict]) -> str:
    edu = [{k: e[k] for k in _EDU_KEYS if e.get(k)} for e in education or []]
    work = []
    for job in jobs:
        item = {out: job.get(key) for key, out in _JOB_KEYS if job.get(key)}
        item.setdefault("end", "present")
        work.append(item)
    lines = ['{"education": [', *_rows(edu), '], "jobs": [', *_rows(work), "]}"]
    return "\n".join(lines)


def _rows(items: list[dict]) -> list[str]:
    return ["  " + dump_data(x) + ("," if i < len(items) - 1 else "") for i, x in enumerate(items)]


def history_format(text: str) -> str:
    """Which of :data:`HISTORY_FORMATS` a rendered history is in."""
    return "json" if text.lstrip().startswith("{") else "compact"


def split_history(text: str) -> tuple[list[dict], list[dict]]:
    """Inverse of :func:`history_json` in either format (education, jobs), for re-budgeting a stored history."""
    if history_format(text) == "json":
        data = json.loads(text)
        return data["education"], [{("onet_title" if k == "occupation" else k): v for k, v in j.items()}
                                   for j in data["jobs"]]
    lines = text.split("\n")
    if not lines or lines[0] != _EDU_HEADER or _JOB_HEADER not in lines:
        raise ValueError("not a rendered history (its header lines are missing)")
    cut = lines.index(_JOB_HEADER)
    education = [_entry(("degree", "field", "institution", None), json.loads(x)) for x in lines[1:cut]]
    jobs = [_entry(("title", "onet_title", "company", None, "description"), json.loads(x)) for x in lines[cut + 1:]]
    return education, jobs


def _entry(keys: tuple, values: list) -> dict:
    """One compact line back into a dict; the ``None`` key is the "start to end" years column."""
    out = {}
    for key, value in zip(keys, values):
        if value is None:
            continue
        if key is None:
            start, _, end = value.partition(" to ")
            out.update({k: v for k, v in (("start", start), ("end", end)) if v and v != "?"})
        else:
            out[key] = value
    return out
