"""deploy/Dockerfile: what hadolint (run by `make deploy-check`) does not check. The image is not
built here (no container engine in CI): these read the file."""

from __future__ import annotations

import re

from tests.unit.deploy_support import IMAGE_UID, ROOT

DOCKERFILE = ROOT / "deploy" / "Dockerfile"
PINNED_BASE = re.compile(r"^python:3\.13\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{64})?$")


def stages() -> list[list[str]]:
    """The instructions of each stage (continuation lines joined, comments dropped)."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
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
