"""docs/getting-started.md's files, as a user copies them: the app module, its tests and their
pytest.ini, written to a folder of their own and run with pytest there. The page stays true."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

PAGE = Path(__file__).parents[2] / "docs" / "getting-started.md"
PYTEST = str(Path(sys.executable).parent / "pytest")  # the console script, as the page runs it (not python -m)
BLOCK = re.compile(r"```(?:python|ini)\n(# (\S+)[^\n]*\n.*?)```", re.DOTALL)


def files_of_the_page() -> dict[str, str]:
    """Each code block that starts with a comment naming its file: that file's text."""
    return {name: text for text, name in BLOCK.findall(PAGE.read_text())}


def test_the_page_shows_the_app_its_tests_and_their_configuration() -> None:
    assert set(files_of_the_page()) == {"shop/messages.py", "tests/test_messages.py", "pytest.ini"}


def test_the_users_tests_pass_as_the_page_gives_them(tmp_path: Path) -> None:
    for name, text in files_of_the_page().items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (tmp_path / "shop" / "__init__.py").write_text("")  # "and an empty shop/__init__.py"
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    done = subprocess.run(
        [PYTEST, "-q", "-p", "no:cacheprovider", "-W", "error::pytest.PytestDeprecationWarning"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "3 passed" in done.stdout
