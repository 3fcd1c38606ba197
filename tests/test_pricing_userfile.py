"""User prices files: real CSV files on disk, overriding bundled rows, and clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from tokencost.errors import InputError
from tokencost.pricing import all_prices, load_price_file, price_for, user_prices_path

HEADER = "model,effective_from,effective_to,prompt_per_1m,completion_per_1m,source,note\n"


@pytest.fixture
def prices_file(tmp_path, monkeypatch):
    path = tmp_path / "my prices.csv"
    monkeypatch.setenv("TOKENCOST_PRICES", str(path))

    def write(body: str, header: str = HEADER) -> Path:
        path.write_text(header + body, encoding="utf-8")
        return path

    return write


def test_user_row_wins_on_the_days_it_covers(prices_file):
    path = prices_file("gpt-4o,2025-01-01,,2.00,8.00,contract ACME-2025,negotiated\n")
    mine = price_for("gpt-4o", date(2025, 2, 1))
    assert (mine.prompt_per_1m, mine.completion_per_1m) == (Decimal("2.00"), Decimal("8.00"))
    assert mine.origin == str(path)
    assert mine.source == "contract ACME-2025"
    # Before the user row starts, the bundled history still applies.
    earlier = price_for("gpt-4o", date(2024, 11, 1))
    assert (earlier.origin, earlier.prompt_per_1m) == ("bundled", Decimal("2.5"))
    # all_prices(day) shows one row per model, the user's where it applies.
    rows = [p for p in all_prices(date(2025, 2, 1)) if p.model == "gpt-4o"]
    assert [p.origin for p in rows] == [str(path)]
    assert sum(1 for p in all_prices() if p.model == "gpt-4o") == 3  # 2 bundled + 1 user


def test_user_file_prices_a_model_the_registry_does_not_know(prices_file):
    prices_file("my-azure-gpt4o-deployment,2024-01-01,,2.75,11.00,https://azure.microsoft.com/pricing,Azure EU\n"
                "ft:gpt-4o-mini-2024-07-18:acme::abc123,2024-09-01,,0.30,1.20,https://openai.com/api/pricing/,\n")
    assert price_for("my-azure-gpt4o-deployment", date(2025, 1, 1)).cost(1000, 1000).total == Decimal("0.01375")
    ft = price_for("ft:gpt-4o-mini-2024-07-18:acme::abc123", date(2024, 9, 15))
    assert ft.completion_per_1m == Decimal("1.20")


def test_an_edited_user_file_is_reread(prices_file):
    prices_file("gpt-4o,2025-01-01,,2.00,8.00,contract,\n")
    assert price_for("gpt-4o", date(2025, 2, 1)).prompt_per_1m == Decimal("2.00")
    prices_file("gpt-4o,2025-01-01,,1.875,7.50,contract v2,renegotiated\n")
    assert price_for("gpt-4o", date(2025, 2, 1)).prompt_per_1m == Decimal("1.875")


def test_comments_blank_lines_bom_and_optional_columns(tmp_path, monkeypatch):
    path = tmp_path / "prices.csv"
    path.write_bytes(("\ufeff# negotiated rates\n" + HEADER + "\n"
                      "# the next row is ours\n"
                      "x-model,2024-01-01,2024-12-31,1,2,contract,\"a, b\"\n").encode("utf-8"))
    rows = load_price_file(path, str(path))
    assert len(rows) == 1 and rows[0].note == "a, b" and rows[0].currency == "USD"
    assert rows[0].effective_to == date(2024, 12, 31) and rows[0].cached_prompt_per_1m is None


def test_default_user_path_is_under_the_user_config_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("TOKENCOST_PRICES", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    path, explicit = user_prices_path()
    assert not explicit
    assert path == tmp_path / "cfg" / "tokencost" / "prices.csv"
    price_for("gpt-4o", date(2025, 1, 1))  # no file there: bundled only, no error
    path.parent.mkdir(parents=True)
    path.write_text(HEADER + "gpt-4o,2025-01-01,,1,2,contract,\n")
    assert price_for("gpt-4o", date(2025, 1, 1)).origin == str(path)


def test_named_file_that_does_not_exist_is_an_error(tmp_path, monkeypatch):
    missing = tmp_path / "nope.csv"
    monkeypatch.setenv("TOKENCOST_PRICES", str(missing))
    with pytest.raises(InputError) as e:
        price_for("gpt-4o", date(2025, 1, 1))
    assert str(missing) in str(e.value)
    assert e.value.exit_code == 2


@pytest.mark.parametrize(
    "body, line, fragment",
    [
        ("gpt-4o,2025-13-01,,2,8,contract,\n", 2, "effective_from '2025-13-01' is not a date"),
        ("gpt-4o,2025-01-01,,-2,8,contract,\n", 2, "prompt_per_1m '-2' is negative"),
        ("gpt-4o,2025-01-01,,2,eight,contract,\n", 2, "completion_per_1m 'eight' is not a number"),
        ("gpt-4o,2025-01-01,,2,8,,\n", 2, "source is empty"),
        ("gpt-4o,2025-01-01,,2.0000001,8,contract,\n", 2, "more than 6 decimal places"),
        ("gpt-4o,2025-01-01,2024-01-01,2,8,contract,\n", 2, "effective_to 2024-01-01 is before"),
        ("gpt-4o,2025-01-01,,2,8\n", 2, "expected 7 fields, found 5"),
        ("gpt 4o,2025-01-01,,2,8,contract,\n", 2, "without spaces"),
        ("gpt-4o,2025-01-01,,2,8,contract,\nx,2024-01-01,,1,NaN,contract,\n", 3, "not a finite number"),
        # Overlap: the later line is blamed and the earlier one named.
        ("gpt-4o,2025-01-01,,2,8,contract,\nother,2025-01-01,,1,1,c,\ngpt-4o,2025-06-01,,1,4,contract,\n",
         4, "overlap: 2025-06-01..open-ended here and 2025-01-01..open-ended on line 2; end the earlier period"),
        # Out of order in the file: still the later line is blamed, with both periods named.
        ("gpt-4o,2025-06-01,,1,4,c,\ngpt-4o,2025-01-01,2025-06-01,2,8,c,\n", 3,
         "2025-01-01..2025-06-01 here and 2025-06-01..open-ended on line 2"),
        ("gpt-4o,2025-01-01,2025-03-31,2,8,c,\ngpt-4o,2025-03-31,,1,4,c,\n", 3, "rows for 'gpt-4o' overlap"),
    ],
)
def test_bad_rows_name_file_and_line(prices_file, body, line, fragment):
    path = prices_file(body)
    with pytest.raises(InputError) as e:
        price_for("gpt-4o", date(2025, 2, 1))
    msg = str(e.value)
    assert msg.startswith(f"{path}:{line}: "), msg
    assert fragment in msg
    assert "\n" not in msg


@pytest.mark.parametrize(
    "header, fragment",
    [
        ("model,effective_from,promt_per_1m,completion_per_1m,source\n", "unknown column 'promt_per_1m'"),
        ("model,effective_from,prompt_per_1m,source\n", "missing column 'completion_per_1m'"),
    ],
)
def test_bad_header(prices_file, header, fragment):
    path = prices_file("gpt-4o,2025-01-01,2,8,c\n", header=header)
    with pytest.raises(InputError, match=fragment) as e:
        price_for("gpt-4o")
    assert str(e.value).startswith(f"{path}:1: ")


def test_other_currency_is_refused(prices_file):
    prices_file("gpt-4o,2025-01-01,,2,8,EUR,c,\n",
                header="model,effective_from,effective_to,prompt_per_1m,completion_per_1m,currency,source,note\n")
    with pytest.raises(InputError, match="currency 'EUR' is not supported"):
        price_for("gpt-4o")


def test_non_utf8_file(prices_file, tmp_path):
    path = prices_file("")
    path.write_bytes(b"model,effective_from\n\xff\xfe\n")
    with pytest.raises(InputError, match="not UTF-8"):
        price_for("gpt-4o")


def test_pricing_stays_light_with_a_user_file(tmp_path):
    """No platformdirs when the path is given, and nothing heavy ever."""
    path = tmp_path / "p.csv"
    path.write_text(HEADER + "x,2024-01-01,,1,2,contract,\n")
    probe = ("import sys, json\nfrom tokencost.pricing import price_for\nprice_for('x')\nprice_for('gpt-4o')\n"
             "print(json.dumps(sorted(sys.modules)))")
    env = {**os.environ, "TOKENCOST_PRICES": str(path)}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True)
    loaded = set(json.loads(out.stdout.splitlines()[-1]))
    assert not loaded & {"platformdirs", "pandas", "openai", "typer", "sqlite_utils", "numpy"}


def test_trailing_zeros_beyond_six_places_are_fine_and_csv_errors_name_the_line(prices_file):
    prices_file("gpt-4o,2025-01-01,,2.500000000,8,contract,\n")
    assert price_for("gpt-4o", date(2025, 2, 1)).prompt_per_1m == Decimal("2.5")
    path = prices_file("gpt-4o,2025-01-01,,2,8,contract,ok\nx,2025-01-01,,1,1,c,\"a\"b\n")
    with pytest.raises(InputError) as e:
        price_for("gpt-4o")
    assert str(e.value).startswith(f"{path}:3: not valid CSV")
