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


def history_json(education: list[dict] | None, jobs: list[dict]) -> str:
    """The person's history as neutralised JSON: one education entry or job per line, oldest first."""
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


def split_history(text: str) -> tuple[list[dict], list[dict]]:
    """Inverse of :func:`history_json` (education, jobs), for re-budgeting a stored history."""
    data = json.loads(text)
    return data["education"], [{("onet_title" if k == "occupation" else k): v for k, v in j.items()}
                               for j in data["jobs"]]
