"""build_record: API usage wins, estimates are marked, failures bill zero, costs are exact."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal

from tests.fakeserver import FIXTURES
from tokencost.pricing import price_for, to_pico
from tokencost.record import COLUMNS, CallRecord, build_record, iso_utc

WHEN = datetime(2024, 9, 26, 10, 30, 0, 123456, tzinfo=timezone.utc)
CHAT_REQ = {"model": "gpt-4o", "messages": [{"role": "user", "content": "What's the weather like in SF?"}]}
SAY_TEST = {"model": "gpt-3.5-turbo", "messages": [{"role": "user", "content": "Say this is a test!"}],
            "temperature": 0.7}


def body(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def rec(**kw) -> CallRecord:
    base = dict(endpoint="chat.completions", request=CHAT_REQ, response=body("chat_completion_gpt-4o.json"),
                status=200, error_type=None, started_at=WHEN, latency_ms=12.5, streamed=False,
                tags={"user": "alice"}, via="wrap")
    base.update(kw)
    return build_record(**base)


def test_api_usage_and_exact_cost() -> None:
    r = rec()
    assert (r.model_requested, r.model) == ("gpt-4o", "gpt-4o-2024-08-06")
    assert (r.prompt_tokens, r.completion_tokens, r.total_tokens, r.usage_source) == (14, 37, 51, "api")
    price = price_for("gpt-4o-2024-08-06", at=WHEN)
    cost = price.cost(14, 37)
    assert r.prompt_cost_pusd == to_pico(cost.prompt)
    assert r.completion_cost_pusd == to_pico(cost.completion)
    assert r.total_cost_pusd == r.prompt_cost_pusd + r.completion_cost_pusd
    assert r.price_id == price.id and r.price_source == price.source
    assert r.started_at == "2024-09-26T10:30:00.123456Z"
    assert json.loads(r.tags) == {"user": "alice"}
    assert r.prompt_text is None and r.completion_text is None


def test_our_estimate_kept_next_to_api_number() -> None:
    # The recorded request's real prompt count was 14 (gpt-4o); our counter must say the same.
    assert rec().estimated_prompt_tokens == 14
    r = rec(request=SAY_TEST, response=body("chat_completion_gpt-3.5-turbo.json"))
    assert (r.estimated_prompt_tokens, r.prompt_tokens) == (13, 13)


def test_estimated_when_success_has_no_usage() -> None:
    r = rec(request=SAY_TEST, response=None, streamed=True, completion_text_for_estimate="This is a test!")
    assert r.usage_source == "estimated"
    assert (r.prompt_tokens, r.completion_tokens) == (13, 5)  # matches what the API billed for this exchange
    assert r.total_cost_pusd is not None and r.total_cost_pusd > 0
    assert r.streamed == 1


def test_stream_cut_midway_is_billed_from_text_received() -> None:
    r = rec(response=None, streamed=True, error_type="APIConnectionError", completion_text_for_estimate="I'm unable")
    assert (r.status, r.error_type, r.usage_source) == (200, "APIConnectionError", "estimated")
    assert r.completion_tokens == 2  # "I'm", " unable": two chunks of the recorded stream, one token each


def test_estimate_from_whole_recorded_stream_matches_api() -> None:
    from tests.fakeserver import iter_recorded_text

    text = "".join(iter_recorded_text("chat_stream_gpt-4o.sse"))
    r = rec(response={"model": "gpt-4o-2024-08-06"}, streamed=True, completion_text_for_estimate=text)
    assert r.usage_source == "estimated"
    assert (r.prompt_tokens, r.completion_tokens) == (14, 47)  # the recording's usage chunk: 14 + 47


def test_failed_call_bills_zero_and_keeps_estimate() -> None:
    for status in (429, 500, 400, None):
        r = rec(response=body("error_429_rate_limit.json") if status else None, status=status,
                error_type="RateLimitError")
        assert (r.prompt_tokens, r.completion_tokens, r.total_tokens) == (0, 0, 0)
        assert (r.prompt_cost_pusd, r.completion_cost_pusd, r.total_cost_pusd) == (0, 0, 0)
        assert r.usage_source is None and r.estimated_prompt_tokens == 14
        assert r.status == status


def test_unpriced_model_gets_null_cost_not_zero() -> None:
    resp = dict(body("chat_completion_gpt-4o.json"), model="my-finetune-nobody-prices")
    r = rec(response=resp)
    assert r.prompt_tokens == 14
    assert (r.prompt_cost_pusd, r.completion_cost_pusd, r.total_cost_pusd, r.price_id) == (None, None, None, None)


def test_priced_by_model_returned_at_call_time() -> None:
    r = rec(request=SAY_TEST, response=body("chat_completion_gpt-3.5-turbo.json"),
            started_at=datetime(2024, 3, 27, 21, 34, 36, tzinfo=timezone.utc))
    price = price_for("gpt-3.5-turbo-0125", at=datetime(2024, 3, 27, tzinfo=timezone.utc))
    assert r.price_id == price.id
    assert r.total_cost_pusd == to_pico(price.cost(13, 5).total)


def test_other_endpoints() -> None:
    r = rec(endpoint="responses", request={"model": "gpt-4o-mini", "input": "What's the weather like in SF?"},
            response=body("responses_gpt-4o-mini.json"))
    assert (r.prompt_tokens, r.completion_tokens, r.model) == (14, 50, "gpt-4o-mini-2024-07-18")
    r = rec(endpoint="completions", request={"model": "gpt-3.5-turbo-instruct",
                                             "prompt": "Translate the following English text to French: 'Hello, world!'"},
            response=body("completions_gpt-3.5-turbo-instruct.json"))
    assert (r.prompt_tokens, r.completion_tokens, r.estimated_prompt_tokens) == (13, 5, 13)
    r = rec(endpoint="embeddings", request={"model": "text-embedding-ada-002",
                                            "input": "The food was delicious and the waiter..."},
            response=body("embeddings_ada-002.json"))
    assert (r.prompt_tokens, r.completion_tokens, r.estimated_prompt_tokens) == (8, 0, 8)


def test_cached_tokens_priced_at_cached_rate() -> None:
    resp = dict(body("chat_completion_gpt-4o.json"))
    resp["usage"] = {"prompt_tokens": 2006, "completion_tokens": 300, "total_tokens": 2306,
                     "prompt_tokens_details": {"cached_tokens": 1920}}
    r = rec(response=resp)
    price = price_for("gpt-4o-2024-08-06", at=WHEN)
    assert r.cached_tokens == 1920
    assert r.prompt_cost_pusd == to_pico(price.cost(2006, 300, 1920).prompt)


def test_content_only_when_asked() -> None:
    r = rec(store_content=True)
    assert json.loads(r.prompt_text) == CHAT_REQ["messages"]
    assert r.completion_text.startswith("I'm unable to provide real-time weather updates.")


def test_columns_and_round_trip() -> None:
    r = rec(request_id="req_123")
    assert tuple(r.to_row()) == COLUMNS
    assert CallRecord.from_row(r.to_row()) == r
    assert r.request_id == "req_123"


def test_iso_utc() -> None:
    assert iso_utc("2026-11-29T12:00:00Z") == "2026-11-29T12:00:00.000000Z"
    assert iso_utc(datetime(2026, 11, 29, 13, 0)) == "2026-11-29T13:00:00.000000Z"  # naive = UTC
    from datetime import timedelta

    cet = timezone(timedelta(hours=1))
    assert iso_utc(datetime(2026, 11, 29, 13, 0, tzinfo=cet)) == "2026-11-29T12:00:00.000000Z"
    assert Decimal(1)  # Decimal stays the money type; no float anywhere in the record
    assert all(not isinstance(v, float) for k, v in rec().to_row().items() if k != "latency_ms")


def test_iso_utc_fast_path_matches_the_general_one() -> None:
    for when in (WHEN, datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc), datetime(2026, 1, 2, tzinfo=timezone.utc)):
        assert iso_utc(when) == when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_ids_are_uuid7_unique_and_ordered_by_time() -> None:
    import time
    import uuid

    from tokencost.record import new_id

    t0 = time.time_ns() // 1_000_000
    ids = [new_id() for _ in range(2000)]
    t1 = time.time_ns() // 1_000_000
    assert len(set(ids)) == len(ids)
    for i in ids:
        u = uuid.UUID(i)
        assert len(i) == 32 and u.version == 7 and u.variant == uuid.RFC_4122
        assert t0 <= int(i[:12], 16) <= t1  # the first 48 bits are the Unix time in ms
    stamps = [i[:12] for i in ids]
    assert stamps == sorted(stamps)


def test_bad_request_shapes_still_make_a_row() -> None:
    # our estimate cannot count these; the row (with the API's usage) must still be built
    for messages in ("not a list", [{"role": "bot", "content": "x"}], [{"role": "user", "content": {"weird": 1}}]):
        r = rec(request={"model": "gpt-4o", "messages": messages})
        assert r.estimated_prompt_tokens is None
        assert (r.prompt_tokens, r.usage_source) == (14, "api")
    r = rec(started_at="not a timestamp")
    assert r.started_at.endswith("Z")


def test_invalid_usage_is_estimated_with_one_warning(monkeypatch) -> None:
    import warnings

    import tokencost.record as record_mod
    from tokencost.ledger import LedgerWarning

    monkeypatch.setattr(record_mod, "_warned_pid", None)
    garbled = body("chat_completion_gpt-3.5-turbo.json")
    garbled["usage"].update(prompt_tokens=-10, completion_tokens="many")
    huge = body("chat_completion_gpt-3.5-turbo.json")
    huge["usage"]["prompt_tokens"] = 10000000000000000000
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows = [rec(request=SAY_TEST, response=garbled), rec(request=SAY_TEST, response=huge)]
    for r in rows:
        # our own count, which for this recorded exchange is what the API really billed (13 + 5)
        assert (r.usage_source, r.prompt_tokens, r.completion_tokens, r.total_tokens) == ("estimated", 13, 5, 18)
        assert r.total_cost_pusd is not None and r.total_cost_pusd > 0
    ours = [str(w.message) for w in caught if issubclass(w.category, LedgerWarning)]
    assert len(ours) == 1  # once per process, not once per call
    assert "the API returned an invalid usage field (prompt_tokens=-10)" in ours[0]
