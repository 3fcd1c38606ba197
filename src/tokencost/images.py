"""Image input tokens: each model's published formula, and image sizes read without fetching anything.

Two mechanisms (https://platform.openai.com/docs/guides/images-vision, "Calculating costs"):

* tiles ("tile-<base>"): ``detail: low`` costs the base; ``high`` (and ``auto``) first fits the image
  in 2048x2048, then shrinks it so the short side is at most 768px, then costs
  ``base + per_tile * (512px tiles covering it)``.
  Worked examples in the docs: 1024x1024 high = 765, 2048x4096 high = 1105 (gpt-4o).
* patches ("patch-<multiplier>"): the number of 32x32 patches covering the image, shrunk to fit a
  budget of 1536 patches, times a per-model multiplier, rounded up; ``detail`` has no effect.
  Docs worked examples: 1024x1024 = 1024 patches, 1800x2400 = 1452 patches.

| rule       | base / per tile or multiplier | models (registry)                      | evidence |
|------------|-------------------------------|----------------------------------------|----------|
| tile-85    | 85 / 170                      | gpt-4-turbo, gpt-4o, gpt-4.1, gpt-4.5  | docs; API: forum 1262691 (128x64: low 97, high 267 incl. 12 text) |
| tile-mini  | 2833 / 5667                   | gpt-4o-mini                            | docs; API: forum 1262691 (2845 / 8512) |
| tile-75    | 75 / 150                      | o1, o3                                 | docs; o3 API 86/236 fits with 11 text tokens (unverified split) |
| tile-70    | 70 / 140                      | gpt-5                                  | docs only (estimate) |
| patch-1.62 | x1.62                         | gpt-4.1-mini                           | docs; API 26 for 128x64 is 1 above our count (estimate) |
| patch-2.46 | x2.46                         | gpt-4.1-nano                           | docs; API 33 for 128x64 is 1 above our count (estimate) |
| patch-1.72 | x1.72                         | o4-mini                                | docs; API 26 for 128x64 (estimate) |
| patch-1.2  | x1.2                          | gpt-5-mini                             | forum 1344040 measured 1.2 (docs say 1.62) |
| patch-1.5  | x1.5                          | gpt-5-nano                             | forum 1344040 measured 1.5 (docs say 2.46) |

Forum threads: https://community.openai.com/t/1262691 (vision: more than one way to send a request),
https://community.openai.com/t/1344040 (gpt-5-mini image input token calculation discrepancy).
gpt-4.1 is documented as a patch model but the API bills it exactly like gpt-4o (97/267 above), so it
uses tile-85 here.
"""

from __future__ import annotations

import base64
import binascii
import math
from fractions import Fraction

__all__ = ["image_tokens", "data_url_size", "IMAGE_RULES", "TILE_DETAILS"]

TILE_DETAILS = ("low", "high", "auto")

# rule -> ("tile", base, per_tile) | ("patch", multiplier)
IMAGE_RULES: dict[str, tuple] = {
    "tile-85": ("tile", 85, 170),
    "tile-mini": ("tile", 2833, 5667),
    "tile-75": ("tile", 75, 150),
    "tile-70": ("tile", 70, 140),
    "patch-1": ("patch", Fraction(1)),  # the docs' worked examples (1 token per patch)
    "patch-1.62": ("patch", Fraction("1.62")),
    "patch-2.46": ("patch", Fraction("2.46")),
    "patch-1.72": ("patch", Fraction("1.72")),
    "patch-1.2": ("patch", Fraction("1.2")),
    "patch-1.5": ("patch", Fraction("1.5")),
}

_PATCH = 32
_PATCH_BUDGET = 1536


def needs_size(rule: str, detail: str) -> bool:
    """Whether the count depends on the image's pixel size (low-detail tiles do not)."""
    return not (IMAGE_RULES[rule][0] == "tile" and detail == "low")


def _tiles(width: int, height: int) -> int:
    w, h = Fraction(width), Fraction(height)
    if max(w, h) > 2048:
        scale = Fraction(2048) / max(w, h)
        w, h = w * scale, h * scale
    if min(w, h) > 768:
        scale = Fraction(768) / min(w, h)
        w, h = w * scale, h * scale
    w, h = math.floor(w), math.floor(h)
    return math.ceil(w / 512) * math.ceil(h / 512)


def _patches(width: int, height: int) -> int:
    n = math.ceil(width / _PATCH) * math.ceil(height / _PATCH)
    if n <= _PATCH_BUDGET:
        return n
    # The docs' recipe: shrink to the budget, then shrink again so one side is a whole number of
    # patches. Float is fine for the square root; the whole-patch step is where rounding bites, so
    # values within 1e-9 of an integer count as that integer.
    shrink = math.sqrt(_PATCH * _PATCH * _PATCH_BUDGET / (width * height))
    aw, ah = width * shrink / _PATCH, height * shrink / _PATCH
    shrink *= min(math.floor(aw + 1e-9) / aw, math.floor(ah + 1e-9) / ah)
    rw, rh = math.floor(width * shrink + 1e-9), math.floor(height * shrink + 1e-9)
    return min(math.ceil(rw / _PATCH) * math.ceil(rh / _PATCH), _PATCH_BUDGET)


def image_tokens(rule: str, detail: str, size: tuple[int, int] | None) -> int:
    """Tokens for one image under ``rule``; ``size`` may be None only when ``needs_size`` is False."""
    spec = IMAGE_RULES[rule]
    if spec[0] == "tile":
        _, base, per_tile = spec
        if detail == "low":
            return base
        assert size is not None
        return base + per_tile * _tiles(*size)
    assert size is not None
    return math.ceil(_patches(*size) * spec[1])


_size_cache: dict[str, tuple[int, int]] = {}


def data_url_size(url: str) -> tuple[int, int]:
    """(width, height) of a ``data:image/...;base64,`` URL, decoding only as much as the header needs.

    Raises ValueError with a reason; the caller adds the message index.
    """
    cached = _size_cache.get(url)
    if cached is not None:
        return cached
    head, sep, payload = url.partition(",")
    if not sep or not head.startswith("data:") or not head.endswith(";base64"):
        raise ValueError("is not a base64 data URL (expected data:image/<type>;base64,<data>)")
    if any(c in payload[:8192] for c in " \n\r\t"):
        payload = "".join(payload.split())  # wrapped base64: keep 4-character groups aligned
    from PIL import ImageFile  # lazy: Pillow is only needed when images are counted

    parser = ImageFile.Parser()
    done = 0
    chunk = 4096  # a multiple of 4 keeps base64 chunks independently decodable
    try:
        while parser.image is None and done < len(payload):
            piece = payload[done : done + chunk]
            parser.feed(base64.b64decode(piece + "=" * (-len(piece) % 4)))
            done += chunk
            chunk *= 4
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"has base64 data that cannot be decoded ({exc})") from None
    except OSError:
        pass  # Pillow gives up on a damaged stream; handled below
    if parser.image is None:
        raise ValueError("is not an image Pillow can read (PNG, JPEG, GIF or WEBP)")
    size = tuple(parser.image.size)
    if len(_size_cache) < 256:
        _size_cache[url] = size  # type: ignore[assignment]
    return size  # type: ignore[return-value]
