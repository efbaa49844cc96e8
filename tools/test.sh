#!/usr/bin/env bash
# The README's test command: install what the tests need (Debian packages when missing, shmq
# with its test extras), then run the default suite and the slow (soak / kill -9) suite as two
# steps. Exits non-zero when any test fails.
set -euo pipefail
cd "$(dirname "$0")/.."
need_apt=()
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)   # unit file checks
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
  else
    echo "tools/test.sh: please install the Debian packages: ${need_apt[*]}" >&2
    exit 1
  fi
fi
python3 -m pip install --quiet -e '.[test]'
python3 -m pytest -m 'not slow' "$@"
python3 -m pytest -m slow "$@"
