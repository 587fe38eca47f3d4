import itertools
import re
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from jobpred.config import JobpredConfig, load_config

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def test_there_are_presets():
    assert {p.name for p in CONFIGS} >= {"local.yaml", "local-full.yaml", "gpu-cluster.yaml", "cluster-qwen3-8b.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_yaml_loads(path):
    cfg = load_config(path)
    assert isinstance(cfg, JobpredConfig)
    assert cfg.name == path.stem
    assert isinstance(yaml.safe_load(path.read_text()), dict)   # anchors and `<<:` merges are plain YAML


def _setting_lines(path: Path) -> list[str]:
    """A preset's non-blank lines without comments (a copied block with new comments is still a copy)."""
    lines = (re.sub(r"\s+#.*$", "", line).rstrip() for line in path.read_text().splitlines())
    return [line for line in lines if line.strip() and not line.lstrip().startswith("#")]


def _longest_common_run(a: list[str], b: list[str]) -> int:
    best, prev = 0, [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b):
            if x == y:
                cur[j + 1] = prev[j] + 1
                best = max(best, cur[j + 1])
        prev = cur
    return best


@pytest.mark.parametrize("a,b", list(itertools.combinations(CONFIGS, 2)), ids=lambda p: p.stem)
def test_presets_are_not_copies_of_each_other(a, b):
    run = _longest_common_run(_setting_lines(a), _setting_lines(b))
    assert run <= 15, f"{a.name} and {b.name} share {run} consecutive lines: use `base:` (or a YAML anchor)"


def test_an_override_of_a_merged_block_leaves_the_block_it_came_from_alone():
    # local.yaml's judge is `<<: *cpu_engine` (the teacher): the YAML shares their nested values
    path = Path(__file__).resolve().parents[1] / "configs" / "local.yaml"
    cfg = load_config(path, ["reasons.judge.engine_kwargs.max_num_seqs=8"])
    assert cfg.reasons.judge.engine_kwargs["max_num_seqs"] == 8
    assert cfg.reasons.teacher.engine_kwargs["max_num_seqs"] == 256
    assert cfg.predict.engine.engine_kwargs["max_num_seqs"] == 256


def test_dotted_overrides_are_typed():
    cfg = load_config(None, ["prepare.seed=7", "prepare.split.val=0.2", "prepare.split.train=0.7",
                             "ray.num_cpus=3", "model=/models/x"])
    assert cfg.prepare.seed == 7 and cfg.prepare.split.val == 0.2 and cfg.ray.num_cpus == 3
    assert cfg.model == "/models/x"


def test_an_engine_env_value_given_as_a_number_is_text_and_a_boolean_is_an_error():
    cfg = load_config(None, ["reasons.teacher.env.VLLM_CPU_NUM_OF_RESERVED_CPU=0",
                             "reasons.teacher.env.VLLM_CPU_KVCACHE_SPACE=1.5"])
    assert cfg.reasons.teacher.env == {"VLLM_CPU_NUM_OF_RESERVED_CPU": "0", "VLLM_CPU_KVCACHE_SPACE": "1.5"}
    with pytest.raises(ValidationError, match=r"reasons\.teacher\.env\.X"):
        load_config(None, ["reasons.teacher.env.X=true"])


def test_unknown_keys_and_bad_values_are_errors(tmp_path):
    with pytest.raises(ValidationError, match="histroy_max_jobs"):
        load_config(None, ["prepare.histroy_max_jobs=3"])
    with pytest.raises(ValidationError, match="add to 1"):
        load_config(None, ["prepare.split.train=0.5"])
    with pytest.raises(ValueError, match=r"key\.path=value"):
        load_config(None, ["prepare.seed"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(ValueError, match="mapping"):
        load_config(bad)


def test_a_preset_can_name_a_base_preset_and_change_only_some_keys(tmp_path):
    (tmp_path / "base.yaml").write_text("name: base\nsynth: {persons: 10, seed: 3}\npredict: {predictors: [joint]}\n")
    (tmp_path / "small.yaml").write_text("base: base.yaml\nname: small\nsynth: {persons: 2}\n")
    cfg = load_config(tmp_path / "small.yaml", ["synth.seed=4"])
    assert (cfg.name, cfg.synth.persons, cfg.synth.seed, cfg.predict.predictors) == ("small", 2, 4, ["joint"])
    (tmp_path / "loop.yaml").write_text("base: loop.yaml\n")
    with pytest.raises(ValueError, match="loop"):
        load_config(tmp_path / "loop.yaml")


def test_the_smoke_preset_is_the_demo_preset_made_small():
    configs = Path(__file__).resolve().parents[1] / "configs"
    smoke, local = load_config(configs / "smoke.yaml"), load_config(configs / "local.yaml")
    assert smoke.model == local.model and smoke.reasons.teacher == local.reasons.teacher
    assert smoke.train.lora == local.train.lora and smoke.train.num_workers == local.train.num_workers
    assert smoke.synth.persons < local.synth.persons and smoke.train.max_examples < local.train.max_examples
    assert local.train.max_steps is None and local.train.epochs >= 1  # the demo trains on every oracle row
