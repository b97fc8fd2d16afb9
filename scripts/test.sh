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
.venv/bin/ruff check sfu signaling sfu_bot tests examples
exec .venv/bin/python -m pytest "$@"
