#!/usr/bin/env bash
# Installs a Debian package once, for a command the tests need:
#   deploy/install-debian-package.sh COMMAND PACKAGE PURPOSE
# Nothing happens when COMMAND is already on the PATH; otherwise apt-get installs PACKAGE
# (through sudo when not root) and the command's path is printed. Without apt-get it says
# what to install, and why ("... to PURPOSE"), and fails.
set -euo pipefail
if [ "$#" -ne 3 ]; then
    echo "usage: $0 COMMAND PACKAGE PURPOSE" >&2
    exit 2
fi
COMMAND="$1"
PACKAGE="$2"
PURPOSE="$3"
if command -v "$COMMAND" >/dev/null 2>&1; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install $COMMAND (Debian: apt-get install $PACKAGE) to $PURPOSE" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$PACKAGE" >/dev/null
command -v "$COMMAND"
