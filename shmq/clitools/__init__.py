"""What the `shmq produce`, `shmq consume` and `shmq admin` commands do, below their click
declarations in `shmq/cli.py` (which only parse, call one function here, and print):

* `common`: the shared options (name server, --json), one-line errors and exit codes;
* `messages`: producing and consuming from the command line (JSON lines, progress, summary);
* `admin`: the operator commands, each returning an `Output` (JSON value and readable text).
"""

from __future__ import annotations

__all__: list[str] = []
