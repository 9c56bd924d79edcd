#!/bin/sh
# Check an API-key file for deploy/nginx/conveyor.conf.template: every line is blank, a comment, or
#     "~^key=<key>$" <client name>;
# so that keys match exactly (case-sensitive). Plain "<key>" entries (compared case-insensitively by
# nginx), "~*" entries (case-insensitive regexes) and unescaped regex characters are refused.
# Usage: check-api-keys.sh FILE   (exit 0 when every entry is exact; else exit 1 and name the lines)
set -eu
if [ "$#" -ne 1 ] || [ ! -r "$1" ]; then
  echo "usage: check-api-keys.sh FILE (a readable API-key file)" >&2
  exit 2
fi
key='([A-Za-z0-9_~=/-]|\\[.+])+'
entry="^[[:space:]]*\"~\\^key=${key}\\\$\"[[:space:]]+[A-Za-z0-9._-]+;[[:space:]]*(#.*)?\$"
comment='^[[:space:]]*(#.*)?$'
bad=$(grep -nvE -e "$comment" -e "$entry" "$1" || true)
if [ -n "$bad" ]; then
  printf '%s\n' "check-api-keys.sh: $1: entries must read \"~^key=<key>\$\" <client>; (exact match):" "$bad" >&2
  exit 1
fi
