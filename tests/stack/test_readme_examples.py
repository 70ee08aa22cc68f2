"""The README's Python examples, as a newcomer runs them: copied from the README, run against the
running local stack from a folder laid out like the repository, twice (they must not collide)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.stack


def python_examples() -> list[str]:
    """The ```python blocks of the section "Using it from the Python client", in order."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Using it from the Python client", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.DOTALL)


def test_the_readme_shows_two_examples():
    blocks = python_examples()
    assert len(blocks) == 2 and "create_project" in blocks[0] and "start_job_instance" in blocks[1]


def test_the_python_examples_run_twice(stack, tmp_path):
    # the examples read var/local-stack.json and tests/data/jobs/manifest.yaml from where they run
    (tmp_path / "var").symlink_to(stack.data_dir)
    (tmp_path / "tests").symlink_to(ROOT / "tests")
    script = "\n".join(python_examples())
    outputs = []
    for _ in range(2):
        done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                              timeout=180)
        assert done.returncode == 0, done.stderr[-3000:]
        outputs.append(done.stdout)
    for out in outputs:
        assert "molecules.sdf" in out  # the file listing of /inputs
        assert "COMPLETED 4.5" in out  # the job's phase and its three +1.5 costs
