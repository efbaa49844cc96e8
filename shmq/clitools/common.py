"""Options, errors and output shared by the client commands of the `shmq` CLI.

Exit status of `shmq produce`, `shmq consume` and `shmq admin ...`:

* 0: done;
* 1: the operation failed: nothing answered (name server or broker unreachable), the topic,
  group or message does not exist, or a broker refused (the one-line reason is on stderr);
* 2: bad usage (an unknown option, a malformed value): click's own status;
* 130: interrupted (Ctrl-C) — `shmq consume` still commits and prints its summary first.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, NoReturn, ParamSpec, TypeVar

import click

from shmq.errors import ShmqError

__all__ = [
    "DEFAULT_NAMESRV",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_USAGE",
    "NAMESRV_ENV",
    "Output",
    "cli_errors",
    "fail",
    "format_ms",
    "json_option",
    "namesrv_option",
    "one_line",
    "parse_timestamp",
    "show",
    "table",
]

P = ParamSpec("P")
R = TypeVar("R")

#: the environment variable naming the name servers ("host:port;host:port")
NAMESRV_ENV: Final = "SHMQ_NAMESRV"
DEFAULT_NAMESRV: Final = "127.0.0.1:9876"
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130


def namesrv_option(fn: Callable[P, R]) -> Callable[P, R]:
    """`-n/--namesrv`, defaulting to $SHMQ_NAMESRV, else 127.0.0.1:9876."""
    return click.option(
        "-n", "--namesrv", envvar=NAMESRV_ENV, default=DEFAULT_NAMESRV, show_default=True,
        metavar="HOST:PORT[;HOST:PORT]",
        help=f"Name server(s) to ask. [{NAMESRV_ENV}]")(fn)


def json_option(fn: Callable[P, R]) -> Callable[P, R]:
    """`--json`: print one JSON document instead of a table."""
    return click.option("--json", "as_json", is_flag=True,
                        help="Print JSON (for scripts) instead of a table.")(fn)


def one_line(err: BaseException) -> str:
    """The first line of an error's message (remarks from Java brokers carry FAQ lines)."""
    text = str(err).strip() or type(err).__name__
    return " ".join(text.splitlines()[0].split())


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    """Print "shmq <command>: <message>" on stderr and exit with `code`."""
    ctx = click.get_current_context(silent=True)
    prefix = ctx.command_path if ctx is not None else "shmq"
    click.echo(f"{prefix}: {message}", err=True)
    sys.exit(code)


def cli_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn the errors an operator can act on into one line on stderr and exit status 1 (2 for
    a malformed address or value, 130 for Ctrl-C)."""
    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        _silence_client_logs()
        try:
            return fn(*args, **kwargs)
        except KeyboardInterrupt:
            fail("interrupted", EXIT_INTERRUPTED)
        except (ShmqError, TimeoutError, OSError) as err:
            fail(one_line(err))
        except ValueError as err:  # a malformed name-server address and the like
            fail(one_line(err), EXIT_USAGE)

    return wrapper


def _silence_client_logs() -> None:
    """The client logs what it retries (a name server that did not answer, a pull that
    failed); the command reports the outcome in one line, so those records go nowhere unless
    the application configured logging."""
    shmq_log = logging.getLogger("shmq")
    if not shmq_log.handlers and not logging.getLogger().handlers:
        shmq_log.addHandler(logging.NullHandler())


@dataclass(frozen=True, slots=True)
class Output:
    """What an admin command prints: `data` with --json, else `text`."""

    data: Any
    text: str


def show(out: Output, as_json: bool) -> None:
    """Print `out` on stdout."""
    if as_json:
        click.echo(json.dumps(out.data, indent=2, sort_keys=True))
    else:
        click.echo(out.text)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Left-aligned columns, two spaces apart, headers first."""
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    return "\n".join(lines)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def parse_timestamp(text: str) -> int:
    """A reset time: epoch milliseconds, "now" (-1: the end of each queue, as mqadmin), or an
    ISO 8601 date-time ("2024-05-01T12:00:00", local time unless it names a zone).

    Raises:
        click.BadParameter: none of those.
    """
    text = text.strip()
    if text == "now":
        return -1
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        return int(datetime.fromisoformat(text).timestamp() * 1000)
    except ValueError:
        raise click.BadParameter(f"{text!r}: give epoch milliseconds, 'now' or an ISO 8601 "
                                 "date-time such as 2024-05-01T12:00:00") from None


def format_ms(ms: int) -> str:
    """A wall-clock time in ms as local "YYYY-MM-DD HH:MM:SS.mmm"; "-" for 0 or less."""
    if ms <= 0:
        return "-"
    return datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
