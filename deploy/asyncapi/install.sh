#!/usr/bin/env bash
# Install the AsyncAPI project's parser (@asyncapi/parser, pinned in package-lock.json) for the test
# that validates `conveyor asyncapi`'s document: into deploy/asyncapi/node_modules, if it is missing
# or older than the lock file. Node.js and npm are the machine's (Debian's nodejs, installed if missing).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then
    echo "install.sh: node and npm are missing; run as root, or: sudo apt-get install nodejs npm" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
# npm ci writes node_modules/.package-lock.json last: present and newer than the lock, nothing to do.
installed=$here/node_modules/.package-lock.json
if [ -f "$installed" ] && [ "$installed" -nt "$here/package-lock.json" ]; then
  exit 0
fi
# --ignore-scripts: the parser needs no install script; one of its dependencies' (@scarf/scarf)
# would only report the install to its vendor.
npm ci --prefix "$here" --ignore-scripts --no-audit --no-fund --loglevel=error
