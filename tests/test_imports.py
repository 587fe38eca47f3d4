"""`import jobpred` (and the CLI's parser) must stay light: no torch, vllm or ray at import time."""

import subprocess
import sys

HEAVY = ("torch", "vllm", "ray", "transformers", "peft")


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys\nprint(' '.join(sys.modules))"],
        capture_output=True, text=True, check=True,
    ).stdout
    return set(out.split())


def test_import_jobpred_is_light():
    loaded = _modules_after(
        "import jobpred, jobpred.cli, jobpred.schema, jobpred.config, jobpred.rundir, jobpred.taxonomy, "
        "jobpred.data.synth, jobpred.data.prepare, jobpred.data.ingest, jobpred.models\n"
        "jobpred.cli.build_parser()"
    )
    assert not [m for m in HEAVY if m in loaded]


def test_cli_help_lists_the_stages():
    out = subprocess.run([sys.executable, "-m", "jobpred.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for command in ("synth", "prepare", "normalize"):
        assert command in out.stdout


def test_upstream_internals_are_imported_in_one_adapter_module_each():
    """ray.llm's internals only in jobpred/serving/ray_llm.py (Ray is pinned; an upgrade checks one file)."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    imports = re.compile(r"^\s*(from|import)\s+ray\.llm\._internal", re.M)
    users = sorted(str(p.relative_to(root)) for d in ("jobpred", "serve", "pipelines", "benchmarks", "tools")
                   for p in (root / d).rglob("*.py") if imports.search(p.read_text()))
    assert users == ["jobpred/serving/ray_llm.py"]
