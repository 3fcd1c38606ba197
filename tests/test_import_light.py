"""`import tokencost` and `tokencost --help` must not pull in the heavy dependencies."""

import json
import subprocess
import sys

HEAVY = ["pandas", "openai", "matplotlib", "httpx", "starlette", "uvicorn", "sqlite_utils", "PIL", "numpy", "rich"]


def _loaded_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return set(json.loads(out.splitlines()[-1]))


def test_import_tokencost_is_light():
    loaded = _loaded_after("import tokencost")
    assert not [m for m in HEAVY if m in loaded]
    assert "typer" not in loaded  # the library never imports the CLI


def test_cli_help_is_light():
    code = (
        "import sys\nfrom tokencost.cli import app\n"
        "from typer.testing import CliRunner\n"
        "r = CliRunner().invoke(app, ['--help'])\nassert r.exit_code == 0, r.output\n"
    )
    loaded = _loaded_after(code)
    assert not [m for m in HEAVY if m in loaded and m != "rich"]
