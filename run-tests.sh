#!/usr/bin/env bash
# The project's test command: lint, unit, integration on every database, system.
# Runs every step, prints a summary, exits non-zero if any step failed (a pytest run that collects
# no tests, exit code 5, fails too).
#   ./run-tests.sh                       everything
#   ZSTACK_TEST_DBS="sqlite" ./run-tests.sh   integration on SQLite only (default: sqlite postgresql mariadb)
#   PYTHON=/path/to/python ./run-tests.sh     another interpreter's environment, used as it is
# Without PYTHON it first runs tools/setup-dev.sh: the Debian packages the tiers need and .venv
# (pip install -c constraints.txt -e ".[test,lint]"), only what is missing.
set -euo pipefail
cd "$(dirname "$0")"

if [[ -z ${PYTHON:-} ]]; then
    tools/setup-dev.sh
    PYTHON=.venv/bin/python
elif [[ ! -x $PYTHON ]]; then
    echo "run-tests.sh: PYTHON=$PYTHON is not an executable" >&2
    exit 2
fi
BIN=$(dirname "$PYTHON")
DBS=${ZSTACK_TEST_DBS:-sqlite postgresql mariadb}
failed=()
summary=()

step() {  # step NAME COMMAND... : run, time and record one step
    local name=$1 rc=0 t0=$SECONDS
    shift
    echo
    echo "==== $name: $*"
    "$@" || rc=$?
    if [[ $rc -eq 5 ]]; then
        echo "==== $name: no tests were collected (pytest exit code 5): counted as a failure"
    fi
    if [[ $rc -ne 0 ]]; then
        failed+=("$name")
    fi
    summary+=("$(printf '%-24s %-6s %4ss' "$name" "$([[ $rc -eq 0 ]] && echo ok || echo FAIL)" $((SECONDS - t0)))")
}

step lint-ruff "$BIN/ruff" check .
step lint-imports "$BIN/lint-imports"
step lint-ansible "$BIN/ansible-lint" -c installer/.ansible-lint installer
step unit "$PYTHON" -m pytest -q tests/unit
for db in $DBS; do
    step "integration-$db" env ZSTACK_TEST_DB="$db" "$PYTHON" -m pytest -q integration
done
step system "$PYTHON" -m pytest -q -rA system_tests

echo
echo "==== summary"
printf '%s\n' "${summary[@]}"
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "FAILED: ${failed[*]}"
    exit 1
fi
echo "all steps passed"
