#!/usr/bin/env bash
# Headless Chromium from Debian's packages for the dashboard browser test (Playwright drives
# /usr/bin/chromium; no browser download). Safe to run repeatedly; needs root for apt-get.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
/usr/bin/chromium --version
