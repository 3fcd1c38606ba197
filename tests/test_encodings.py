import gzip
import socket

import pytest

from tokencost import encodings
from tokencost.errors import EncodingUnavailable


@pytest.fixture(autouse=True)
def fresh_cache_dir(monkeypatch, tmp_path_factory):
    """Every test starts without a binary cache, so the bundled file itself is what gets checked."""
    monkeypatch.setenv("TOKENCOST_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("tokencost tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_cl100k_matches_published_ids(no_network, monkeypatch, tmp_path):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))  # an empty cache: nothing to fall back on
    monkeypatch.setattr(encodings, "_cache", {})
    enc = encodings.get_encoding("cl100k_base")
    # OpenAI cookbook, How_to_count_tokens_with_tiktoken.ipynb: encoding.encode("tiktoken is great!")
    assert enc.encode("tiktoken is great!") == [83, 1609, 5963, 374, 2294, 0]
    assert enc.n_vocab == 100277
    assert list(tmp_path.iterdir()) == []


def test_o200k_loads_offline(no_network, monkeypatch):
    monkeypatch.setattr(encodings, "_cache", {})
    enc = encodings.get_encoding("o200k_base")
    assert enc.n_vocab == 200019
    assert enc.decode(enc.encode("tiktoken is great!")) == "tiktoken is great!"
    assert enc.encode("<|endoftext|>", allowed_special="all") == [199999]


def test_tampered_file_is_refused(monkeypatch, tmp_path):
    src = encodings._DATA_DIR / "cl100k_base.tiktoken.gz"
    data = gzip.decompress(src.read_bytes()).replace(b" 0\n", b" 1\n", 1)
    (tmp_path / "cl100k_base.tiktoken.gz").write_bytes(gzip.compress(data))
    monkeypatch.setattr(encodings, "_DATA_DIR", tmp_path)
    monkeypatch.setattr(encodings, "_cache", {})
    with pytest.raises(EncodingUnavailable, match="sha256"):
        encodings.get_encoding("cl100k_base")


def test_missing_file_names_the_encoding(monkeypatch, tmp_path):
    monkeypatch.setattr(encodings, "_DATA_DIR", tmp_path)
    monkeypatch.setattr(encodings, "_cache", {})
    with pytest.raises(EncodingUnavailable, match="o200k_base"):
        encodings.get_encoding("o200k_base")


def test_unknown_encoding():
    with pytest.raises(EncodingUnavailable, match="ships cl100k_base, o200k_base"):
        encodings.get_encoding("p50k_base")


def test_binary_cache_is_built_then_used_and_corruption_is_ignored(monkeypatch, tmp_path):
    monkeypatch.setenv("TOKENCOST_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(encodings, "_cache", {})
    first = encodings.get_encoding("cl100k_base")
    [cache] = list(tmp_path.iterdir())
    assert cache.name.startswith("cl100k_base-223921b76ee99bde")
    # the cache is used: break the bundled file, the encoding still loads from the verified cache
    monkeypatch.setattr(encodings, "_DATA_DIR", tmp_path / "nowhere")
    monkeypatch.setattr(encodings, "_cache", {})
    assert encodings.get_encoding("cl100k_base").encode("tiktoken is great!") == first.encode("tiktoken is great!")
    # a corrupted cache is detected by its own checksum and not used (falls back to the missing file)
    data = bytearray(cache.read_bytes())
    data[-10] ^= 0xFF
    cache.write_bytes(bytes(data))
    monkeypatch.setattr(encodings, "_cache", {})
    with pytest.raises(EncodingUnavailable):
        encodings.get_encoding("cl100k_base")
