from pathlib import Path

import pytest
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


def test_dotted_overrides_are_typed():
    cfg = load_config(None, ["prepare.seed=7", "prepare.split.val=0.2", "prepare.split.train=0.7",
                             "ray.num_cpus=3", "model=/models/x"])
    assert cfg.prepare.seed == 7 and cfg.prepare.split.val == 0.2 and cfg.ray.num_cpus == 3
    assert cfg.model == "/models/x"


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
