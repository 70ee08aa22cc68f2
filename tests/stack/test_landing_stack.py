"""A newcomer's first minutes with a running stack: ``dm run`` says where to start, and ``GET /`` on
its port, through the stack's own HTTP server, is a page whose every link answers."""

from __future__ import annotations

import pytest
import requests

from tests.functional.test_landing_page import EXPECTED_PATHS, read_page
from tests.stack.test_local_stack import printed_facts

pytestmark = pytest.mark.stack


def test_the_landing_page_through_the_stacks_server(stack):
    resp = requests.get(stack.base_url + "/", timeout=10)
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("text/html")
    page = read_page(resp.text)
    assert page.fetched == []
    assert page.links == [stack.base_url + path for path in EXPECTED_PATHS]
    for link in page.links:
        assert requests.get(link, timeout=10).status_code == 200, link


def test_dm_run_prints_the_same_pointers_after_its_facts(stack):
    out = stack.stdout
    assert printed_facts(out)["api_url"] == stack.api_url  # the facts still parse
    start = out[out.index("Start here:"):]
    assert f"{stack.base_url}/\n" in start
    for path in EXPECTED_PATHS:
        assert stack.base_url + path in start
    assert "grant_type=password" in start and "local-stack.json" in start


def test_the_first_steps_run_as_printed(stack):
    """The page's commands, pasted into a shell, sign in and list a project and the personal unit."""
    import json
    import shutil
    import subprocess

    from shared.config import Settings
    from shared.landing import first_steps

    if not (shutil.which("curl") and shutil.which("bash")):
        pytest.skip("needs curl and bash")
    settings = Settings(port=stack.port, data_dir=stack.data_dir)
    commands = [command for _, command in first_steps(settings)]
    script = "set -e\n" + commands[0] + "\n" + "\necho\n".join(commands[1:]) + "\n"
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60, check=True).stdout
    decoder, docs, rest = json.JSONDecoder(), [], out.strip()
    while rest:
        doc, end = decoder.raw_decode(rest)
        docs.append(doc)
        rest = rest[end:].strip()
    projects, units, facts = docs
    assert "projects" in projects
    assert units["units"][0]["units"][0]["owner_id"] == "alice"
    assert facts["users"]["alice"]["unit_id"] == units["units"][0]["units"][0]["id"]
