#!/usr/bin/env bash
# Remove what scripts/install.sh installed. Configuration (/etc/mcp-hub) and state (/var/lib/mcp-hub:
# CA, token key, devboxes, secrets) are kept unless --purge is given.
#   scripts/uninstall.sh [--root DIR] [--purge]
set -euo pipefail
ROOT=/; PURGE=no
while [ $# -gt 0 ]; do
  case "$1" in
    --root) ROOT=$2; shift 2 ;;
    --purge) PURGE=yes; shift ;;
    *) echo "unknown option $1" >&2; exit 64 ;;
  esac
done
p() { echo "${ROOT%/}$1"; }
if [ "$ROOT" = / ] && [ -d /run/systemd/system ]; then
  systemctl disable --now mcp-hub.service mcp-hub-firewall.service 2>/dev/null || true
fi
for f in /usr/bin/mcp-hub /etc/systemd/system/mcp-hub.service /etc/systemd/system/mcp-hub-firewall.service; do
  [ -e "$(p "$f")" ] && rm -f "$(p "$f")" && echo "removed    $f"
done
rm -rf "$(p /usr/share/doc/mcp-hub)"
if [ $PURGE = yes ]; then
  rm -rf "$(p /etc/mcp-hub)" "$(p /var/lib/mcp-hub)"; echo "purged     /etc/mcp-hub /var/lib/mcp-hub"
  if [ "$ROOT" = / ] && getent passwd mcp-hub >/dev/null; then userdel mcp-hub; echo "removed    user mcp-hub"; fi
else
  echo "kept       /etc/mcp-hub and /var/lib/mcp-hub (use --purge to remove)"
fi
if [ "$ROOT" = / ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
