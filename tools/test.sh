#!/usr/bin/env bash
# The README's test command: install shmq with its test extras, then run the default suite and
# the slow (soak / kill -9) suite as two steps. Exits non-zero when any test fails.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet -e '.[test]'
python3 -m pytest -m 'not slow' "$@"
python3 -m pytest -m slow "$@"
