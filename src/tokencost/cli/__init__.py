"""The ``tokencost`` command line: a thin layer over the library.

Each command group lives in its own module and exposes ``register(app)``. Commands parse, call one
library function and render; every :class:`tokencost.errors.TokencostError` becomes ``Error: …`` on
stderr with the error's exit code (see :mod:`tokencost.cli._common`).
"""

from __future__ import annotations

import typer

from . import estimate as _estimate
from . import prices as _prices
from . import ledger as _ledger
from . import proxy as _proxy
from . import report as _report

__all__ = ["app", "main"]

app = typer.Typer(
    name="tokencost",
    help="Exact, offline OpenAI token counts and costs: estimate, log, report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

for _module in (_estimate, _prices, _ledger, _report, _proxy):
    _module.register(app)


def main() -> None:
    app()
