"""The README's examples run: every ```console block is executed and its output compared exactly.

A block's lines starting with ``$ `` are commands (run from the repository root, as a new user would
after `pip install .`); the lines after a command, up to the next command or the end of the block,
are its expected stdout. ```bash blocks are illustrations and are not run here.
"""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _examples():
    for block in re.findall(r"```console\n(.*?)```", README, flags=re.S):
        command, expected = None, []
        for line in block.splitlines():
            if line.startswith("$ "):
                if command:
                    yield command, "\n".join(expected)
                command, expected = line[2:], []
            else:
                expected.append(line)
        if command:
            yield command, "\n".join(expected)


EXAMPLES = list(_examples())


def test_readme_has_examples_and_the_two_setup_commands():
    assert len(EXAMPLES) >= 3
    first_screen = "\n".join(README.splitlines()[:40])
    assert "pip install . && tokencost estimate examples/conversation.json" in first_screen
    assert 'pip install ".[test]" && pytest' in first_screen


@pytest.mark.parametrize("command, expected", EXAMPLES, ids=[c for c, _ in EXAMPLES])
def test_readme_example(command, expected, tmp_path):
    argv = shlex.split(command)
    assert argv[0] == "tokencost"
    env = {**os.environ, "TOKENCOST_DB": str(tmp_path / "ledger.db"), "COLUMNS": "200"}
    r = subprocess.run([sys.executable, "-m", "tokencost", *argv[1:]], cwd=ROOT, capture_output=True, text=True,
                       env=env)
    assert r.stderr == ""
    assert r.returncode == 0
    assert r.stdout.rstrip() == expected.rstrip()
