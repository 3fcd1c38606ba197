"""``tokencost prices``: exact output, the JSON/CSV key contract, and clean errors."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from tokencost.cli import prices as prices_cli

GPT4_32K_SOURCE = ("https://github.com/langchain-ai/langchain-community/blob/main/libs/community/"
                   "langchain_community/callbacks/openai_info.py")

# Builds the same app shape as tokencost.cli (a group with the prices command registered), so the
# test does not depend on the lead wiring it into cli/__init__.py.
APP_CODE = """
import typer
from tokencost.cli import prices
app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
@app.callback()
def main() -> None:
    pass
prices.register(app)
app()
"""


def make_app() -> typer.Typer:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)

    @app.callback()
    def main() -> None:
        pass

    prices_cli.register(app)
    return app


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    monkeypatch.delenv("TOKENCOST_PRICES", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))


def run(*args: str):
    return CliRunner().invoke(make_app(), ["prices", *args])


def test_table_exact():
    r = run("--model", "gpt-4-32k")
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["model", "from", "to", "in", "$/1K", "out", "$/1K", "in", "$/1M", "out", "$/1M",
                                "cached", "$/1M", "batch", "in/out", "$/1M", "source"]
    assert lines[2].split() == ["gpt-4-32k", "2023-03-14", "current", "0.06", "0.12", "60", "120", GPT4_32K_SOURCE]
    assert len(lines) == 3
    assert r.stderr == ""


def test_json_keys_are_the_documented_contract():
    r = run("--model", "gpt-4o", "--format", "json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert [list(obj) for obj in data] == [list(prices_cli.JSON_KEYS)] * 2
    first, second = data
    assert first == {
        "id": "gpt-4o@2024-05-13", "model": "gpt-4o", "effective_from": "2024-05-13", "effective_to": "2024-10-01",
        "currency": "USD", "prompt_per_1k": "0.005", "completion_per_1k": "0.015", "prompt_per_1m": "5",
        "completion_per_1m": "15", "cached_prompt_per_1m": None, "batch_prompt_per_1m": None,
        "batch_completion_per_1m": None, "source": "https://github.com/promptfoo/promptfoo/pull/1728",
        "note": first["note"], "origin": "bundled",
    }
    assert (second["effective_to"], second["cached_prompt_per_1m"], second["batch_completion_per_1m"]) == (None, "1.25", "5")
    # Every key is documented in the module's contract comment.
    source = open(prices_cli.__file__, encoding="utf-8").read()
    assert all(f"``{k}``" in source for k in prices_cli.JSON_KEYS)


def test_at_picks_the_row_in_effect():
    r = run("--model", "gpt-3.5-turbo", "--at", "2023-06-13", "--format", "json")
    assert r.exit_code == 0, r.output
    (row,) = json.loads(r.stdout)
    assert (row["id"], row["prompt_per_1k"], row["completion_per_1k"]) == ("gpt-3.5-turbo@2023-06-13", "0.0015", "0.002")
    r = run("--at", "2023-04-01", "--format", "json")
    assert sorted(o["model"] for o in json.loads(r.stdout)) == [
        "gpt-3.5-turbo", "gpt-3.5-turbo-0301", "gpt-4", "gpt-4-0314", "gpt-4-32k", "gpt-4-32k-0314"]


def test_csv_has_the_json_keys_as_header_and_empty_cells_for_null():
    r = run("--model", "ft:gpt-3.5-turbo-0613:acme::x", "--format", "csv")
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert list(rows[0]) == list(prices_cli.JSON_KEYS)
    assert [(x["id"], x["prompt_per_1k"], x["completion_per_1k"], x["cached_prompt_per_1m"]) for x in rows] == [
        ("ft:gpt-3.5-turbo@2023-08-22", "0.012", "0.016", ""),
        ("ft:gpt-3.5-turbo@2023-11-06", "0.003", "0.006", ""),
    ]


def test_full_listing_includes_user_rows(tmp_path, monkeypatch):
    path = tmp_path / "prices.csv"
    path.write_text("model,effective_from,prompt_per_1m,completion_per_1m,source\nacme-llm,2025-01-01,1,2,contract\n")
    monkeypatch.setenv("TOKENCOST_PRICES", str(path))
    r = run("--format", "json")
    data = json.loads(r.stdout)
    mine = [o for o in data if o["model"] == "acme-llm"]
    assert mine == [{**mine[0], "origin": str(path), "prompt_per_1m": "1", "source": "contract"}]
    assert len(data) > 60
    table = run()
    assert f"contract [{path}]" in table.stdout


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["--at", "2024-13-01"], 2, "Error: --at '2024-13-01' is not a date; use YYYY-MM-DD, e.g. 2024-05-13"),
        (["--model", "gpt-4o", "--at", "2024-01-01"], 1,
         "Error: no price for model 'gpt-4o' on 2024-01-01 (priced from 2024-05-13); add it to your prices file "
         "(`tokencost prices --help`) or pass --price-in/--price-out"),
    ],
)
def test_errors_are_one_line_on_stderr(args, code, message):
    r = run(*args)
    assert r.exit_code == code
    assert r.stdout == ""
    assert r.stderr == message + "\n"


def test_unknown_model_exit_2():
    r = run("--model", "gpt5x")
    assert r.exit_code == 2
    assert r.stdout == ""
    assert r.stderr.startswith("Error: unknown model 'gpt5x'") and r.stderr.count("\n") == 1


def test_bad_user_file_names_file_and_line(tmp_path, monkeypatch):
    path = tmp_path / "prices.csv"
    path.write_text("model,effective_from,prompt_per_1m,completion_per_1m,source\nx,2025-01-01,1,-2,c\n")
    monkeypatch.setenv("TOKENCOST_PRICES", str(path))
    r = run()
    assert r.exit_code == 2
    assert r.stderr == f"Error: {path}:2: completion_per_1m '-2' is negative; prices are 0 or more\n"


def _subprocess(*args: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TOKENCOST_PRICES"}
    env["XDG_CONFIG_HOME"] = env_extra.pop("XDG_CONFIG_HOME") if env_extra and "XDG_CONFIG_HOME" in env_extra else "/nonexistent-tokencost-cfg"
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-c", APP_CODE, "prices", *args], capture_output=True, text=True, env=env,
                          timeout=60)


def test_real_subprocess_ok_and_error(tmp_path):
    ok = _subprocess("--model", "gpt-4", "--at", "2023-03-14", "--format", "json")
    assert ok.returncode == 0, ok.stderr
    assert ok.stderr == ""
    (row,) = json.loads(ok.stdout)
    assert (row["prompt_per_1k"], row["completion_per_1k"]) == ("0.03", "0.06")

    bad = _subprocess("--at", "yesterday")
    assert bad.returncode == 2
    assert bad.stdout == ""
    assert bad.stderr == "Error: --at 'yesterday' is not a date; use YYYY-MM-DD, e.g. 2024-05-13\n"
    assert "Traceback" not in bad.stderr

    path = tmp_path / "broken.csv"
    path.write_text("model,effective_from,prompt_per_1m,completion_per_1m,source\nx,2025-02-30,1,2,c\n")
    broken = _subprocess(env_extra={"TOKENCOST_PRICES": str(path)})
    assert broken.returncode == 2
    assert broken.stdout == ""
    assert broken.stderr == f"Error: {path}:2: effective_from '2025-02-30' is not a date; use YYYY-MM-DD, e.g. 2024-05-13\n"
