#!/usr/bin/env bash
# promtool, which checks deploy/monitoring/'s alerting rules and runs their unit tests
# (tests/deploy/test_alert_rules.py): Debian's Prometheus package, installed once.
set -euo pipefail
exec "$(dirname "$0")/install-debian-package.sh" promtool prometheus "check the alerting rules"
