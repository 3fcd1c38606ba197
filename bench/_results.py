"""bench/RESULTS.md is shared by every bench script: each owns one marked section and replaces only it."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def write_section(name: str, text: str, path: Path = RESULTS) -> None:
    """Replace ``<!-- name:start -->…<!-- name:end -->`` in RESULTS.md with ``text`` (or append it)."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    body = text.strip("\n")
    if not body.startswith(start):
        body = f"{start}\n{body}\n{end}"
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    if start in old and end in old:
        new = old[: old.index(start)] + body + old[old.index(end) + len(end):]
    else:
        new = old.rstrip("\n") + "\n\n" + body + "\n"
    path.write_text(new)


def uname() -> str:
    """``uname -a`` of this machine (platform's summary where there is no uname), for every section."""
    try:
        out = subprocess.run(["uname", "-a"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        out = ""
    return out or " ".join(platform.uname())
