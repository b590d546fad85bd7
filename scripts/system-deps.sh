#!/usr/bin/env bash
# Debian/Ubuntu packages the tests need: a real MQTT broker, a real browser, a real
# PostgreSQL, and qemu-user for the emulated ARM64 cells. Installs only what is missing.
# Usage: system-deps.sh [test|demo]  (demo needs only Python with venv)
set -euo pipefail
need=()
if [ "${1:-test}" = "test" ]; then
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto mosquitto-clients)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
[ -x /usr/lib/postgresql/*/bin/initdb ] 2>/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v qemu-aarch64-static >/dev/null 2>&1 || need+=(qemu-user-static)
fi
command -v python3 >/dev/null 2>&1 || need+=(python3)
python3 -c "import venv, ensurepip" 2>/dev/null || need+=(python3-venv)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
echo "installing Debian packages: ${need[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
