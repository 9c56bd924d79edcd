"""deploy/Dockerfile and deploy/Dockerfile.handler: what hadolint (run by `make deploy-check`) does
not check. No image is built here (no container engine or registry is reachable in CI): these read
the files, and run the install steps both Dockerfiles run in a temporary venv on this machine."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.unit.deploy_support import IMAGE_UID, ROOT

DOCKERFILE = ROOT / "deploy" / "Dockerfile"
HANDLER_DOCKERFILE = ROOT / "deploy" / "Dockerfile.handler"
IMAGE_VENV = "/opt/conveyor"
PINNED_BASE = re.compile(r"^python:3\.13\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{64})?$")


def stages(dockerfile: Path = DOCKERFILE) -> list[list[str]]:
    """The instructions of each stage (continuation lines joined, comments dropped)."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    result: list[list[str]] = []
    for line in (raw.strip() for raw in text.splitlines()):
        if line.startswith("FROM "):
            result.append([])
        if line and not line.startswith("#") and result:
            result[-1].append(line)
    return result


def test_multi_stage_from_a_pinned_base() -> None:
    built = stages()
    assert len(built) >= 2
    for stage in built:
        image = stage[0].split()[1]
        assert PINNED_BASE.match(image), image


def test_the_final_stage_installs_nothing_and_runs_as_a_numeric_non_root_user() -> None:
    final = stages()[-1]
    runs = [line for line in final if line.startswith("RUN ")]
    assert len(runs) == 1
    assert "useradd" in runs[0]
    assert not re.search(r"apt-get|apk |pip |gcc|build-essential|make ", runs[0])
    assert any(line.startswith("COPY --from=build /opt/conveyor ") for line in final)
    [user] = [line for line in final if line.startswith("USER ")]
    assert user == f"USER {IMAGE_UID}:{IMAGE_UID}"
    assert final[-1] == 'CMD ["queue-writer"]'


def test_examples_publish_the_writer_on_loopback_only() -> None:
    published = re.findall(r"-p\s+(\S+)", DOCKERFILE.read_text())
    assert published
    assert all(mapping.startswith("127.0.0.1:") for mapping in published), published


def test_the_build_context_is_only_what_the_image_needs() -> None:
    ignore = (ROOT / "deploy" / "Dockerfile.dockerignore").read_text().splitlines()
    rules = [line for line in ignore if line and not line.startswith("#")]
    assert rules[0] == "*"  # .venv, .conveyor, .git and the rest stay out
    copied = {"pyproject.toml", "README.md", "requirements/dev.lock", "src/"}
    assert {rule.removeprefix("!") for rule in rules if rule.startswith("!")} == copied


ORDERS_PYPROJECT = """\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "orders"
version = "1.0.0"
dependencies = ["conveyor"]  # satisfied by the Conveyor the image already holds
"""
ORDERS_JOBS = """\
from conveyor import Message


async def handle(message: Message) -> None:
    print("order", message.json()["order"])
"""


def _run_line(stage: list[str]) -> str:
    """The stage's one RUN command, as the shell gets it (BuildKit's --mount options are not)."""
    [run] = [line for line in stage if line.startswith("RUN ")]
    return re.sub(r"^(--mount=\S+\s+)*", "", run.removeprefix("RUN ").strip())


def _shell(command: str, cwd: Path) -> None:
    done = subprocess.run(command, shell=True, cwd=cwd, capture_output=True, text=True, check=False)  # noqa: S602 - the Dockerfiles' own RUN lines
    assert done.returncode == 0, (command, done.stdout[-2000:], done.stderr[-2000:])


@pytest.fixture(scope="module")
def image_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """deploy/Dockerfile's build stage, run here: its COPY lines into a temporary /src, its RUN line
    with /opt/conveyor in a temporary folder (and this interpreter as the base image's `python`)."""
    root = tmp_path_factory.mktemp("image")
    workdir, venv = root / "src", root / "opt-conveyor"
    build = stages()[0]
    assert "WORKDIR /src" in build
    for line in build:
        if line.startswith("COPY "):
            *sources, target = line.split()[1:]
            into_folder = len(sources) > 1 or target.endswith("/")
            for source in sources:
                destination = workdir / target / Path(source).name if into_folder else workdir / target
                destination.parent.mkdir(parents=True, exist_ok=True)
                if (ROOT / source).is_dir():
                    shutil.copytree(
                        ROOT / source, destination, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
                    )
                else:
                    shutil.copy(ROOT / source, destination)
    command = _run_line(build).replace(IMAGE_VENV, str(venv))
    _shell(re.sub(r"^python ", f"{shlex.quote(sys.executable)} ", command), workdir)
    assert not (venv / "bin" / "pip").exists()  # as in the image: no pip to install a handler with
    return venv


def test_the_handler_image_installs_the_users_package_into_conveyors_venv(image_venv: Path, tmp_path: Path) -> None:
    project = tmp_path / "orders"
    (project / "src" / "orders").mkdir(parents=True)
    (project / "pyproject.toml").write_text(ORDERS_PYPROJECT)
    (project / "src" / "orders" / "__init__.py").write_text("")
    (project / "src" / "orders" / "jobs.py").write_text(ORDERS_JOBS)
    [stage] = stages(HANDLER_DOCKERFILE)
    words = shlex.split(_run_line(stage))
    # the base image's Python (it has pip) installs into the venv; this interpreter stands in for it
    assert words[:5] == ["/usr/local/bin/python", "-m", "pip", "--python", f"{IMAGE_VENV}/bin/python"]
    assert "--no-cache-dir" in words
    assert words[-1] == "/handler"  # the bind mount of the build context
    command = [sys.executable, *words[1:-1], str(project)]
    _shell(shlex.join(command).replace(IMAGE_VENV, str(image_venv)), tmp_path)
    python = image_venv / "bin" / "python"
    imported = [
        str(python),
        "-c",
        "from conveyor.processor.user_code import import_handler; import_handler('orders.jobs:handle')",
    ]
    _shell(shlex.join(imported), Path("/"))  # from any folder: installed, not found by the working directory
    _shell(shlex.join([str(image_venv / "bin" / "queue-processor"), "--help"]), Path("/"))


def test_the_handler_image_builds_on_conveyors_and_runs_as_its_user() -> None:
    lines = stages(HANDLER_DOCKERFILE)
    [stage] = lines
    text = HANDLER_DOCKERFILE.read_text()
    default = re.search(r"^ARG CONVEYOR_IMAGE=conveyor:(\S+)$", text, re.MULTILINE)
    assert default is not None
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert default.group(1) == version  # the tag deploy/kubernetes and the docs use
    assert stage[0] == "FROM ${CONVEYOR_IMAGE}"
    users = [line for line in stage if line.startswith("USER ")]
    assert users == ["USER 0:0", f"USER {IMAGE_UID}:{IMAGE_UID}"]  # root only to install, then back
    assert stage[-1] == f"USER {IMAGE_UID}:{IMAGE_UID}"
    assert "--mount=type=bind" in text  # the source is mounted, not copied into a layer
    assert not [line for line in stage if line.startswith(("COPY ", "ADD "))]
