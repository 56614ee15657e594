#!/usr/bin/env bash
# Install what the service tests start on loopback: Debian's prometheus, prometheus-pushgateway and chromium
# (headless, for the report screenshot). sudo when not root.   --check: list what is missing, install nothing.
set -euo pipefail

BINARIES=(/usr/bin/prometheus /usr/bin/prometheus-pushgateway /usr/bin/chromium)
PACKAGES=(prometheus prometheus-pushgateway chromium)

missing=()
for i in "${!BINARIES[@]}"; do
    [ -x "${BINARIES[$i]}" ] || missing+=("${PACKAGES[$i]}")
done

if [ "${#missing[@]}" = 0 ]; then
    echo "services: ${PACKAGES[*]} present"
    exit 0
fi
if [ "${1:-}" = "--check" ]; then
    echo "services: missing ${missing[*]}" >&2
    exit 1
fi
SUDO=()
[ "$(id -u)" = 0 ] || SUDO=(sudo)
echo "services: installing ${missing[*]}"
"${SUDO[@]}" apt-get update -q
# The packages' own systemd units are not wanted: the tests start the binaries on free ports.
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
for unit in prometheus prometheus-pushgateway; do
    "${SUDO[@]}" systemctl disable --now "$unit" >/dev/null 2>&1 || true
done
for bin in "${BINARIES[@]}"; do
    [ -x "$bin" ] || { echo "services: $bin still missing after install" >&2; exit 1; }
done
