"""Shared fixtures. ``fake_openai`` is a local OpenAI-compatible server (tests/fakeserver.py)."""

from tests.fakeserver import fake_openai  # noqa: F401  (re-exported pytest fixture)
