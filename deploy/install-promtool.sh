#!/usr/bin/env bash
# promtool, which checks deploy/monitoring/'s alerting rules and runs their unit tests
# (tests/deploy/test_alert_rules.py): Debian's Prometheus package, installed once.
set -euo pipefail
if command -v promtool >/dev/null 2>&1; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install promtool (Debian: apt-get install prometheus) to check the alerting rules" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
command -v promtool
