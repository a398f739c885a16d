#!/usr/bin/env bash
# Headless Chromium for the console's browser tests: Debian's package, installed once.
# Playwright drives it (`executable_path=/usr/bin/chromium`); its own browser download is
# neither needed nor reachable from CI.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install Chromium (Debian: apt-get install chromium) to run the browser tests" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
command -v chromium
