#!/usr/bin/env bash
# Install Debian's redis-server for the tests, if it is missing, without leaving it running or enabled
# as a service: the tests start their own redis-server as a child process on a free port.
set -euo pipefail
if command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "install.sh: redis-server is missing; run as root, or: sudo apt-get install redis-server" >&2
  exit 1
fi
created_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then  # keep the package from starting redis on port 6379
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  created_policy=1
fi
trap '[ "$created_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d' EXIT
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null

# The package enables its service for the next boot: disable it (systemd links and SysV links).
if command -v deb-systemd-helper >/dev/null 2>&1; then
  deb-systemd-helper disable redis-server.service >/dev/null 2>&1 || true
fi
if command -v update-rc.d >/dev/null 2>&1 && [ -e /etc/init.d/redis-server ]; then
  update-rc.d redis-server disable >/dev/null 2>&1 || true
fi
# Should a policy have let the package start it anyway, stop that one server (by its own pid file).
pidfile=/run/redis/redis-server.pid
pid=$(cat "$pidfile" 2>/dev/null || true)
if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
  kill "$pid"
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
fi
command -v redis-server >/dev/null
