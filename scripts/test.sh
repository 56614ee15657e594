#!/usr/bin/env bash
# The tests: set up .venv, the services (Prometheus, Pushgateway, Chromium) and the image, run pytest with the
# arguments given. HYBRIDMI_TEST_SERVICES=0 skips the services for a quick loop: their tests skip (fail under CI=true).
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
