#!/usr/bin/env bash
# Headless Chromium for the console's browser tests: Debian's package, installed once.
# Playwright drives it (`executable_path=/usr/bin/chromium`); its own browser download is
# neither needed nor reachable from CI.
set -euo pipefail
exec "$(dirname "$0")/install-debian-package.sh" chromium chromium "run the browser tests"
