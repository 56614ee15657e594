#!/usr/bin/env bash
# The tests: set up .venv, install and start what the tests need, run pytest (extra arguments go to pytest).
#   - Prometheus + Pushgateway binaries (Debian packages; the tests start them on free loopback ports)
#   - a Docker engine and the project image hybridmi:dev, built offline (the container tier)
# HYBRIDMI_TEST_SERVICES=0 skips the service set-up for a quick local loop (those tests then skip,
# except under CI=true, where they fail instead).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ "${HYBRIDMI_TEST_SERVICES:-1}" != 0 ]; then
  bash scripts/services.sh
  bash scripts/docker-engine.sh
  docker/build.sh >/dev/null
fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
.venv/bin/python -m pytest -q "$@"
