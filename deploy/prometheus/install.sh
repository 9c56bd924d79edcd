#!/usr/bin/env bash
# Install Debian's prometheus package for its promtool (the alert rules are checked and unit-tested
# with `promtool check rules` / `promtool test rules`), if it is missing, without leaving the
# Prometheus server running or enabled as a service.
set -euo pipefail
if command -v promtool >/dev/null 2>&1 || [ -x /usr/bin/promtool ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "install.sh: promtool is missing; run as root, or: sudo apt-get install prometheus" >&2
  exit 1
fi
created_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then  # keep the package from starting the server on port 9090
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  created_policy=1
fi
trap '[ "$created_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d' EXIT
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
if command -v deb-systemd-helper >/dev/null 2>&1; then
  deb-systemd-helper disable prometheus.service >/dev/null 2>&1 || true
fi
if command -v update-rc.d >/dev/null 2>&1 && [ -e /etc/init.d/prometheus ]; then
  update-rc.d prometheus disable >/dev/null 2>&1 || true
fi
pkill -x prometheus 2>/dev/null || true
command -v promtool >/dev/null
