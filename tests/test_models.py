"""The model registry: lookup order, aliases over time, fine-tunes, unknown names."""

from __future__ import annotations

from datetime import date

import pytest

from tokencost.errors import UnknownModel, UsageError
from tokencost.models import MODELS, known_models, resolve_model, snapshot_at


def test_every_row_is_well_formed() -> None:
    names = [m.name for m in MODELS]
    assert len(names) == len(set(names))
    for m in MODELS:
        assert m.encoding in ("cl100k_base", "o200k_base"), m.name
        assert m.context_window > 0 and (m.max_output_tokens is None or m.max_output_tokens > 0)
        assert m.source.startswith("https://"), m.name
        assert m.snapshot in names, m.name  # an alias serves a snapshot of the table


@pytest.mark.parametrize(
    ("name", "encoding", "context"),
    [
        ("gpt-3.5-turbo-0301", "cl100k_base", 4096),
        ("gpt-4", "cl100k_base", 8192),
        ("gpt-4-8k", "cl100k_base", 8192),
        ("gpt-4-32k", "cl100k_base", 32768),
        ("gpt-3.5-turbo-16k", "cl100k_base", 16385),
        ("gpt-4-turbo", "cl100k_base", 128000),
        ("gpt-4o", "o200k_base", 128000),
        ("gpt-4o-mini", "o200k_base", 128000),
        ("gpt-4.1-nano", "o200k_base", 1047576),
        ("o3-mini", "o200k_base", 200000),
        ("gpt-5", "o200k_base", 400000),
    ],
)
def test_known_models(name: str, encoding: str, context: int) -> None:
    info = resolve_model(name)
    assert (info.encoding, info.context_window) == (encoding, context)


def test_aliases_record_the_snapshot_they_serve() -> None:
    assert resolve_model("gpt-4-8k") is resolve_model("gpt-4")
    assert resolve_model("gpt-4").snapshot == "gpt-4-0613"
    assert resolve_model("gpt-3.5-turbo").snapshot == "gpt-3.5-turbo-0125"
    assert resolve_model("gpt-4-0613").snapshot_of == "gpt-4"
    # The cookbook's 2023 run of "gpt-3.5-turbo" was billed like -0301 (127 tokens): the alias moved.
    assert snapshot_at("gpt-3.5-turbo", date(2023, 6, 1)).name == "gpt-3.5-turbo-0301"
    assert snapshot_at("gpt-3.5-turbo", "2023-07-01").name == "gpt-3.5-turbo-0613"
    assert snapshot_at("gpt-3.5-turbo", "2024-03-01").family == "chat"
    assert snapshot_at("gpt-4-0314", "2030-01-01").name == "gpt-4-0314"


def test_family_of_0301_differs() -> None:
    assert resolve_model("gpt-3.5-turbo-0301").family != resolve_model("gpt-3.5-turbo-0613").family


def test_fine_tunes_resolve_to_their_base() -> None:
    info = resolve_model("ft:gpt-3.5-turbo-0613:my-org::8abc123")
    assert info.name == "ft:gpt-3.5-turbo-0613:my-org::8abc123"
    assert info.encoding == "cl100k_base" and info.context_window == 4096
    assert info.snapshot == "gpt-3.5-turbo-0613"
    assert resolve_model("ft:gpt-4o-mini-2024-07-18:org:custom:id").encoding == "o200k_base"


def test_unknown_dated_snapshot_of_a_known_alias() -> None:
    info = resolve_model("gpt-4o-2099-01-01")
    assert info.encoding == "o200k_base" and info.snapshot == "gpt-4o-2099-01-01"


@pytest.mark.parametrize("name", ["gpt5", "gpt-4-0", "davinci-002", "", "ft:nonsense:org::id"])
def test_unknown_models_raise_with_suggestions(name: str) -> None:
    with pytest.raises(UnknownModel) as err:
        resolve_model(name)
    assert isinstance(err.value, UsageError) and err.value.exit_code == 2
    assert "--price-in" in str(err.value)


def test_suggestions_are_close_names() -> None:
    with pytest.raises(UnknownModel) as err:
        resolve_model("gpt5")
    assert "gpt-5" in err.value.suggestions


def test_known_models_lists_aliases_and_snapshots() -> None:
    names = known_models()
    assert {"gpt-4", "gpt-4-8k", "gpt-4-32k", "gpt-4-0613", "gpt-3.5-turbo-0301"} <= set(names)
    assert names == sorted(names)
