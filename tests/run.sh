#!/usr/bin/env bash
# Installs what the tests need (nginx and peers from Debian's packages when apt is there, barfast and
# its test extras from PyPI), then runs the default test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
for p in nginx:nginx wrk:wrk ab:apache2-utils h2load:nghttp2-client ip:iproute2 chromium:chromium chromedriver:chromium-driver; do
  command -v "${p%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${p%%:*}" ] || need+=("${p#*:}")
done
if [ ${#need[@]} -gt 0 ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
"${PYTHON:-python3}" -m pip install -q -e '.[test]'
exec "${PYTHON:-python3}" -m pytest "$@"
