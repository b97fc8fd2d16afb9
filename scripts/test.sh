#!/usr/bin/env bash
# The whole test suite, from a fresh clone: creates .venv, installs the package
# with its test extras, checks lint, runs pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test,fast]'
.venv/bin/ruff check sfu signaling sfu_bot bench tests examples
# The browser tests (tests/browser) run Debian's Chromium inside a loopback-only
# network namespace (unshare + ip), the cluster tests a redis-server: install
# what is missing.
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v unshare >/dev/null 2>&1 || missing+=(util-linux)
# tests/cluster start their own redis-server on a free port.
command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ] || missing+=(redis-server)
if [ ${#missing[@]} -gt 0 ]; then
    as_root=()
    [ "$(id -u)" -eq 0 ] || as_root=(sudo -n)
    apt=("${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -qq)
    echo "installing ${missing[*]} for the tests" >&2
    { "${apt[@]}" install -y "${missing[@]}" >/dev/null 2>&1 \
        || { "${apt[@]}" update >/dev/null 2>&1 && "${apt[@]}" install -y "${missing[@]}" >/dev/null; }; } \
        || echo "could not install ${missing[*]}: the tests that need them will fail" >&2
fi
exec .venv/bin/python -m pytest "$@"
