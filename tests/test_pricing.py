"""The bundled price table, date-aware lookup, and exact Decimal arithmetic.

The expected prices below are the published ones (per 1K tokens, as the 2023 price lists and
announcements printed them); each row in pricing/openai.csv names the URL they come from.
"""

from __future__ import annotations

import csv
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from tokencost import pricing
from tokencost.errors import InputError, TokencostError, UnknownModel, UnpricedModel, UsageError
from tokencost.pricing import Cost, Price, all_prices, custom_price, from_pico, list_prices, price_for, to_pico

D = Decimal
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _no_user_prices(monkeypatch, tmp_path):
    """Each test sees only the bundled table unless it writes a user file itself."""
    monkeypatch.delenv("TOKENCOST_PRICES", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "empty-config"))


def per_1k(p: Price) -> tuple[Decimal, Decimal]:
    return p.prompt_per_1k, p.completion_per_1k


# ---------------------------------------------------------------- the data itself


def test_every_bundled_row_names_an_https_source_and_parses():
    rows = all_prices()
    assert len(rows) >= 60
    assert all(p.source.startswith("https://") for p in rows), [p.id for p in rows if not p.source.startswith("https://")]
    assert all(p.origin == "bundled" and p.currency == "USD" for p in rows)
    assert all(isinstance(p.prompt_per_1m, Decimal) and isinstance(p.completion_per_1m, Decimal) for p in rows)
    ids = [p.id for p in rows]
    assert len(ids) == len(set(ids))


def test_bundled_csv_has_the_documented_columns_in_order():
    with open(REPO / "pricing" / "openai.csv", newline="", encoding="utf-8") as f:
        header = next(csv.reader(f))
    assert tuple(header) == pricing.COLUMNS
    readme = (REPO / "pricing" / "README.md").read_text()
    assert all(f"`{c}`" in readme for c in pricing.COLUMNS)


@pytest.mark.parametrize(
    "model, day, prompt_1k, completion_1k",
    [
        # Introducing ChatGPT and Whisper APIs (2023-03-01): $0.002 / 1K tokens
        ("gpt-3.5-turbo", "2023-03-01", "0.002", "0.002"),
        ("gpt-3.5-turbo-0301", "2023-05-01", "0.002", "0.002"),
        # Function calling and other API updates (2023-06-13)
        ("gpt-3.5-turbo", "2023-06-13", "0.0015", "0.002"),
        ("gpt-3.5-turbo-0613", "2023-06-13", "0.0015", "0.002"),
        ("gpt-3.5-turbo-16k", "2023-06-13", "0.003", "0.004"),
        ("gpt-3.5-turbo-16k-0613", "2024-06-01", "0.003", "0.004"),
        # DevDay (2023-11-06)
        ("gpt-3.5-turbo-1106", "2023-11-06", "0.001", "0.002"),
        ("gpt-4-1106-preview", "2023-11-06", "0.01", "0.03"),
        # New embedding models and API updates (2024-01-25)
        ("gpt-3.5-turbo-0125", "2024-02-01", "0.0005", "0.0015"),
        ("gpt-3.5-turbo", "2024-02-16", "0.0005", "0.0015"),
        # GPT-4 launch (2023-03-14): 8k and 32k
        ("gpt-4", "2023-03-14", "0.03", "0.06"),
        ("gpt-4-32k", "2023-03-14", "0.06", "0.12"),
        ("gpt-4-32k-0613", "2024-01-01", "0.06", "0.12"),
        ("gpt-4o-mini", "2024-07-18", "0.00015", "0.0006"),
        # o1-mini: $3/$12 per 1M (Prompt Caching post, 2024-10-01), $1.10/$4.40 from the o3-mini launch
        ("o1-mini", "2024-09-20", "0.003", "0.012"),
        ("o1-mini-2024-09-12", "2025-01-30", "0.003", "0.012"),
        ("o1-mini", "2025-01-31", "0.0011", "0.0044"),
        ("gpt-4.1", "2025-04-14", "0.002", "0.008"),
        ("gpt-5", "2025-08-07", "0.00125", "0.01"),
        # completions and embeddings endpoints (embeddings bill input only)
        ("gpt-3.5-turbo-instruct", "2024-01-01", "0.0015", "0.002"),
        ("text-embedding-ada-002", "2023-06-13", "0.0001", "0"),
        ("text-embedding-3-small", "2024-01-25", "0.00002", "0"),
    ],
)
def test_published_prices(model, day, prompt_1k, completion_1k):
    assert per_1k(price_for(model, date.fromisoformat(day))) == (D(prompt_1k), D(completion_1k))


# ---------------------------------------------------------------- --at picks the right row


def test_gpt35_turbo_alias_across_its_three_price_changes():
    at = lambda s: price_for("gpt-3.5-turbo", date.fromisoformat(s))  # noqa: E731
    assert per_1k(at("2023-06-12")) == (D("0.002"), D("0.002"))  # last day of the launch price
    assert per_1k(at("2023-06-13")) == (D("0.0015"), D("0.002"))
    assert per_1k(at("2024-02-15")) == (D("0.0015"), D("0.002"))  # still the 0613 snapshot
    assert per_1k(at("2024-02-16")) == (D("0.0005"), D("0.0015"))
    assert at("2023-06-12").id == "gpt-3.5-turbo@2023-03-01"
    assert at("2024-02-16").id == "gpt-3.5-turbo@2024-02-16"


def test_gpt4o_alias_moves_to_the_cheaper_snapshot_and_old_snapshot_keeps_its_price():
    before = price_for("gpt-4o", date(2024, 10, 1))
    after = price_for("gpt-4o", date(2024, 10, 2))
    assert (before.prompt_per_1m, before.completion_per_1m, before.cached_prompt_per_1m) == (D(5), D(15), None)
    assert (after.prompt_per_1m, after.completion_per_1m, after.cached_prompt_per_1m) == (D("2.5"), D(10), D("1.25"))
    assert price_for("gpt-4o-2024-05-13", date(2025, 6, 1)).prompt_per_1m == D(5)
    # Prompt caching started on 2024-10-01 for the 08-06 snapshot.
    assert price_for("gpt-4o-2024-08-06", date(2024, 9, 30)).cached_prompt_per_1m is None
    assert price_for("gpt-4o-2024-08-06", date(2024, 10, 1)).cached_prompt_per_1m == D("1.25")


def test_o3_price_cut():
    assert price_for("o3", date(2025, 6, 9)).prompt_per_1m == D(10)
    assert price_for("o3", date(2025, 6, 10)).prompt_per_1m == D(2)


def test_datetime_at_is_taken_in_utc():
    evening_new_york = datetime(2024, 10, 1, 22, 0, tzinfo=timezone(timedelta(hours=-4)))  # 02:00Z on Oct 2
    assert price_for("gpt-4o", evening_new_york).prompt_per_1m == D("2.5")
    naive = datetime(2024, 10, 1, 23, 59)  # naive = UTC
    assert price_for("gpt-4o", naive).prompt_per_1m == D(5)


def test_default_at_is_today():
    today = datetime.now(timezone.utc).date()
    assert price_for("gpt-4o") == price_for("gpt-4o", today)


def test_before_first_price_is_unpriced_and_says_from_when():
    with pytest.raises(UnpricedModel) as e:
        price_for("gpt-4o", date(2024, 5, 12))
    assert "priced from 2024-05-13" in str(e.value)
    assert "2024-05-12" in str(e.value)
    with pytest.raises(UnpricedModel, match="priced from 2023-03-01"):
        price_for("gpt-3.5-turbo", date(2023, 2, 28))


# ---------------------------------------------------------------- lookup chain


def test_fine_tuned_names_use_ft_base_rows_with_their_own_history():
    name = "ft:gpt-3.5-turbo-0613:acme::8abc123"
    launch = price_for(name, date(2023, 9, 1))
    devday = price_for(name, date(2024, 1, 1))
    assert launch.model == devday.model == "ft:gpt-3.5-turbo"
    assert per_1k(launch) == (D("0.012"), D("0.016"))
    assert per_1k(devday) == (D("0.003"), D("0.006"))
    # Never the base model's (cheaper) price.
    assert per_1k(devday) != per_1k(price_for("gpt-3.5-turbo-0613", date(2024, 1, 1)))


def test_fine_tuned_without_rows_is_unpriced_with_a_hint():
    with pytest.raises(UnpricedModel) as e:
        price_for("ft:davinci-002:acme::xyz", date(2024, 1, 1))
    assert "ft:davinci-002" in str(e.value)


def test_a_dated_snapshot_uses_its_own_rows_first():
    assert price_for("gpt-4-0613", date(2024, 1, 1)).model == "gpt-4-0613"
    assert price_for("gpt-4o-mini-2024-07-18", date(2025, 1, 1)).model == "gpt-4o-mini-2024-07-18"


def test_unknown_model_is_an_error_never_zero():
    with pytest.raises(UnknownModel) as e:
        price_for("gpt5x", date(2025, 9, 1))
    assert "gpt5x" in str(e.value)
    assert e.value.exit_code == 2


def test_empty_model_name_is_a_usage_error():
    with pytest.raises(UsageError):
        price_for("  ")


# ---------------------------------------------------------------- exact arithmetic


def test_1000_prompt_tokens_of_gpt4_cost_exactly_three_cents():
    cost = price_for("gpt-4", date(2023, 4, 1)).cost(1000)
    assert cost == Cost(prompt=D("0.03"), completion=D("0"), total=D("0.03"))
    assert all(isinstance(v, Decimal) for v in (cost.prompt, cost.completion, cost.total))


def test_gpt4_32k_prompt_and_completion():
    cost = price_for("gpt-4-32k", date(2023, 4, 1)).cost(1000, 1000)
    assert (cost.prompt, cost.completion, cost.total) == (D("0.06"), D("0.12"), D("0.18"))


def test_no_float_error_where_floats_would_drift():
    # 7 * 0.15 / 1e6 is 1.0499999999999999e-06 in floats.
    cost = price_for("gpt-4o-mini", date(2024, 8, 1)).cost(7)
    assert cost.prompt == D("0.00000105")
    assert to_pico(cost.prompt) == 1_050_000
    many = sum((price_for("gpt-3.5-turbo-0125", date(2024, 3, 1)).cost(1, 1).total for _ in range(10)), D(0))
    assert many == D("0.00002")  # 10 x ($0.5 + $1.5)/1M


def test_cached_tokens_are_part_of_the_prompt_at_the_cached_rate():
    p = price_for("gpt-4o", date(2024, 11, 1))
    cost = p.cost(2000, 500, cached_tokens=1000)
    assert cost.prompt == D("0.00375")  # 1000 x 2.50/1M + 1000 x 1.25/1M
    assert cost.completion == D("0.005")
    assert cost.total == D("0.00875")


def test_cached_tokens_without_a_cached_rate_cost_the_prompt_rate():
    p = price_for("gpt-4", date(2024, 1, 1))
    assert p.cost(1000, cached_tokens=1000).prompt == p.cost(1000).prompt == D("0.03")


def test_batch_rates_and_missing_batch_rate():
    p = price_for("gpt-4.1", date(2025, 5, 1))
    cost = p.cost(1000, 1000, batch=True)
    assert (cost.prompt, cost.completion) == (D("0.001"), D("0.004"))
    with pytest.raises(UnpricedModel, match="no batch price"):
        price_for("gpt-4", date(2024, 1, 1)).cost(10, batch=True)


@pytest.mark.parametrize("args", [(-1,), (10, -1), (10, 0, 11), (1.5,), (True,)])
def test_bad_token_counts(args):
    with pytest.raises(UsageError):
        price_for("gpt-4", date(2024, 1, 1)).cost(*args)


def test_pico_roundtrip_and_refusal_to_round():
    assert to_pico(D("0.03")) == 30_000_000_000
    assert from_pico(30_000_000_000) == D("0.03")
    assert from_pico(to_pico(D("0.00875"))) == D("0.00875")
    assert to_pico(D("-0.5")) == -500_000_000_000
    with pytest.raises(ValueError, match="picodollars"):
        to_pico(D("0.0000000000001"))  # 1e-13 USD
    with pytest.raises(TypeError):
        to_pico(0.03)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        from_pico(D(3))  # type: ignore[arg-type]


def test_every_bundled_price_gives_whole_picodollars_per_token():
    for p in all_prices():
        c = p.cost(1, 1, 0)
        to_pico(c.prompt), to_pico(c.completion)
        if p.cached_prompt_per_1m is not None:
            to_pico(p.cost(1, 0, 1).prompt)


def test_cost_pico_agrees_with_decimal_cost_on_every_bundled_row():
    # The wrapper prices every call with integer arithmetic; it must be the Decimal cost, exactly.
    counts = [(0, 0, 0), (1, 1, 0), (14, 37, 0), (1_000, 500, 300), (128_000, 16_384, 127_999),
              (3_000_000, 7, 2_999_999)]
    for p in all_prices():
        for prompt, completion, cached in counts:
            want = p.cost(prompt, completion, cached)
            assert p.cost_pico(prompt, completion, cached) == (
                to_pico(want.prompt), to_pico(want.completion), to_pico(want.total)), (p.id, prompt)


def test_cost_pico_ignores_the_callers_decimal_context():
    # an application may lower the thread's Decimal precision; stored money must not change
    from decimal import localcontext

    p = custom_price("ctx-model", "0.1875", "1.234567")
    want = p.cost(1000, 1000)
    with localcontext() as ctx:
        ctx.prec = 3
        got = p.cost_pico(1000, 1000)
    assert got == (to_pico(want.prompt), to_pico(want.completion), to_pico(want.total))
    assert p.cost_pico(1000, 1000) == got  # and nothing wrong was remembered


@pytest.mark.parametrize("args", [(-1, 0, 0), (1, 0, 2), (True, 0, 0), (1.0, 0, 0)])
def test_cost_pico_refuses_what_cost_refuses(args):
    p = price_for("gpt-4o", date(2025, 1, 1))
    with pytest.raises(UsageError):
        p.cost_pico(*args)


def test_price_for_recent_is_price_for(monkeypatch):
    day = date(2025, 1, 1)
    assert pricing.price_for_recent("gpt-4o", day) == price_for("gpt-4o", day)
    assert pricing.price_for_recent("gpt-4o", datetime(2025, 1, 1, 23, 59, tzinfo=timezone.utc)) == price_for("gpt-4o", day)
    assert pricing.price_for_recent("gpt-4o", day) is pricing.price_for_recent("gpt-4o", day)  # remembered
    errors = []
    for _ in range(2):
        with pytest.raises(UnknownModel) as info:
            pricing.price_for_recent("no-such-model-xyz", day)
        errors.append(info.value)
    assert errors[0] is not errors[1]  # each error is raised fresh
    # a different prices setting is a different cache entry, seen at once
    user = REPO / "tests" / "_tmp_prices_never_written.csv"
    monkeypatch.setenv("TOKENCOST_PRICES", str(user))
    with pytest.raises(InputError):
        pricing.price_for_recent("gpt-4o", day)


# ---------------------------------------------------------------- listing and custom prices


def test_all_prices_history_and_by_day():
    history = [p for p in all_prices() if p.model == "gpt-3.5-turbo"]
    assert [p.effective_from for p in history] == [date(2023, 3, 1), date(2023, 6, 13), date(2024, 2, 16)]
    on_day = all_prices(date(2023, 4, 1))
    assert sorted(p.model for p in on_day) == [
        "gpt-3.5-turbo", "gpt-3.5-turbo-0301", "gpt-4", "gpt-4-0314", "gpt-4-32k", "gpt-4-32k-0314"]
    assert len({p.model for p in all_prices(date(2025, 9, 1))}) == len(all_prices(date(2025, 9, 1)))


def test_list_prices_for_a_model_follows_the_lookup_chain():
    rows = list_prices("ft:gpt-3.5-turbo-1106:acme::q")
    assert [p.id for p in rows] == ["ft:gpt-3.5-turbo@2023-08-22", "ft:gpt-3.5-turbo@2023-11-06"]
    assert list_prices("gpt-4o", date(2024, 6, 1)) == [price_for("gpt-4o", date(2024, 6, 1))]


def test_custom_price():
    p = custom_price("my-model", D("2.50"), "10")
    assert (p.origin, p.prompt_per_1m, p.completion_per_1m) == ("cli", D("2.50"), D(10))
    assert p.covers(date(1999, 1, 1)) and p.covers(date(2999, 1, 1))
    assert p.cost(1000, 1000).total == D("0.0125")
    with pytest.raises(TypeError):
        custom_price("m", 2.5, D(1))  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="negative"):
        custom_price("m", D(-1), D(1))
    with pytest.raises(UsageError, match="decimal places"):
        custom_price("m", D("0.0000001"), D(1))


def test_bundled_dir_prefers_the_packaged_copy(monkeypatch, tmp_path):
    pkg = tmp_path / "site-packages" / "tokencost"
    (pkg / "pricing").mkdir(parents=True)
    from tokencost import price_rows

    monkeypatch.setattr(price_rows, "__file__", str(pkg / "price_rows.py"))
    assert pricing.bundled_dir() == pkg / "pricing"
    (pkg / "pricing").rmdir()
    assert pricing.bundled_dir() == tmp_path / "pricing"  # parents[2] of src/tokencost/price_rows.py


def test_errors_are_tokencost_errors():
    for exc in (UnknownModel("x"), UnpricedModel("x"), InputError("x")):
        assert isinstance(exc, TokencostError)


# models.py and the price rows agree on every alias move (gpt-3.5-turbo stayed on 0613 until 2024-02-16).
KNOWN_ALIAS_DISAGREEMENTS: set = set()


def test_alias_rows_agree_with_the_snapshot_the_registry_says_it_served():
    """Alias rows are written separately from snapshot rows; on every day an alias pointed at a
    snapshot (per the model registry), both must bill the same rates."""
    models = pytest.importorskip("tokencost.models")
    checked, disagreements = 0, set()
    for info in models.MODELS:
        switches = list(getattr(info, "points_to", ()) or ())
        for i, (since, snapshot) in enumerate(switches):
            start = date.fromisoformat(since)
            end = date.fromisoformat(switches[i + 1][0]) - timedelta(days=1) if i + 1 < len(switches) else date(2026, 1, 1)
            for day in {start, end, start + (end - start) / 2}:
                try:
                    alias, snap = price_for(info.name, day), price_for(snapshot, day)
                except UnpricedModel:
                    continue
                rates = lambda p: (p.prompt_per_1m, p.completion_per_1m, p.cached_prompt_per_1m)  # noqa: E731
                if rates(alias) != rates(snap):
                    disagreements.add((info.name, snapshot))
                checked += 1
    assert disagreements == KNOWN_ALIAS_DISAGREEMENTS
    assert checked >= 40


def test_fine_tuned_4o_family_from_the_prompt_caching_price_list():
    mini = price_for("ft:gpt-4o-mini-2024-07-18:acme:support:9xyz", date(2024, 11, 1))
    assert (mini.model, mini.prompt_per_1m, mini.cached_prompt_per_1m, mini.completion_per_1m) == (
        "ft:gpt-4o-mini", D("0.3"), D("0.15"), D("1.2"))
    big = price_for("ft:gpt-4o-2024-08-06:acme::abc", date(2024, 11, 1))
    assert (big.prompt_per_1m, big.completion_per_1m) == (D("3.75"), D(15))
    with pytest.raises(UnpricedModel, match="priced from 2024-10-01"):
        price_for("ft:gpt-4o-mini-2024-07-18:acme::x", date(2024, 8, 1))
