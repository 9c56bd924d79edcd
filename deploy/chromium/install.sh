#!/usr/bin/env bash
# Install Debian's chromium and chromium-driver for the console's browser tests, if they are missing.
# Selenium (the dev extra) drives /usr/bin/chromedriver; nothing is downloaded but Debian's packages.
set -euo pipefail
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "install.sh: chromium or chromedriver is missing; run as root, or: sudo apt-get install chromium chromium-driver" >&2
  exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-dejavu-core >/dev/null
test -x /usr/bin/chromium && test -x /usr/bin/chromedriver
