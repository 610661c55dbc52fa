#!/usr/bin/env bash
# Install mcp-hub as a systemd service. Idempotent: a second run changes nothing and says so.
#
#   scripts/install.sh                       build (cargo, release) and install into /
#   scripts/install.sh --binary PATH         install a prebuilt binary
#   scripts/install.sh --root DIR            install into an image tree (no user creation, no systemctl)
#
# Installs /usr/bin/mcp-hub, the units in /etc/systemd/system, the docs, a commented
# /etc/mcp-hub/hub.toml (only if absent: your edits are never overwritten), the mcp-hub user and group,
# /var/lib/mcp-hub (0700), and initialises the CA.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
ROOT=/
BIN=
while [ $# -gt 0 ]; do
  case "$1" in
    --root) ROOT=$2; shift 2 ;;
    --binary) BIN=$2; shift 2 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 64 ;;
  esac
done
if [ -z "$BIN" ]; then
  (cd "$repo" && cargo build --release --locked -q)
  BIN=$repo/target/release/mcp-hub
fi
[ -x "$BIN" ] || { echo "no executable at $BIN" >&2; exit 66; }
live=no; [ "$ROOT" = / ] && live=yes
p() { echo "${ROOT%/}$1"; }
changes=0

# put SRC DST MODE [OWNER:GROUP]: copy when content or mode differ.
put() {
  local src=$1 dst; dst=$(p "$2"); local mode=$3 own=${4:-}
  mkdir -p "$(dirname "$dst")"
  if [ -f "$dst" ] && cmp -s "$src" "$dst" && [ "$(stat -c %a "$dst")" = "${mode#0}" ]; then
    echo "unchanged  $2"
  else
    install -m "$mode" "$src" "$dst.tmp.$$" && mv -f "$dst.tmp.$$" "$dst"
    echo "installed  $2"; changes=$((changes + 1))
  fi
  if [ -n "$own" ] && [ $live = yes ]; then chown "$own" "$dst"; fi
}

# dir PATH MODE [OWNER:GROUP]
dir() {
  local d; d=$(p "$1")
  if [ -d "$d" ] && [ "$(stat -c %a "$d")" = "${2#0}" ]; then
    echo "unchanged  $1/"
  else
    mkdir -p "$d" && chmod "$2" "$d"; echo "created    $1/"; changes=$((changes + 1))
  fi
  if [ -n "${3:-}" ] && [ $live = yes ]; then chown "$3" "$d"; fi
}

if [ $live = yes ]; then
  if getent passwd mcp-hub >/dev/null; then
    echo "unchanged  user mcp-hub"
  else
    useradd --system --user-group --no-create-home --home-dir /var/lib/mcp-hub --shell /usr/sbin/nologin mcp-hub
    echo "created    user mcp-hub"; changes=$((changes + 1))
  fi
fi

put "$BIN" /usr/bin/mcp-hub 0755
put "$repo/systemd/mcp-hub.service" /etc/systemd/system/mcp-hub.service 0644
put "$repo/systemd/mcp-hub-firewall.service" /etc/systemd/system/mcp-hub-firewall.service 0644
put "$repo/README.md" /usr/share/doc/mcp-hub/README.md 0644
put "$repo/conf/hub.toml" /usr/share/doc/mcp-hub/hub.toml.example 0644
dir /etc/mcp-hub 0750 root:mcp-hub
dir /var/lib/mcp-hub 0700 mcp-hub:mcp-hub
if [ -f "$(p /etc/mcp-hub/hub.toml)" ]; then
  echo "kept       /etc/mcp-hub/hub.toml (yours)"
else
  put "$repo/conf/hub.toml" /etc/mcp-hub/hub.toml 0640 root:mcp-hub
fi

if [ $live = yes ]; then
  if [ -f /var/lib/mcp-hub/ca/ca.pem ]; then
    echo "unchanged  CA /var/lib/mcp-hub/ca/ca.pem"
  elif runuser -u mcp-hub -- /usr/bin/mcp-hub --config /etc/mcp-hub/hub.toml ca init; then
    changes=$((changes + 1))
  else
    echo "note: CA not initialised yet; fix /etc/mcp-hub/hub.toml (mcp-hub check) and run: runuser -u mcp-hub -- mcp-hub ca init"
  fi
  if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
fi

echo
echo "$changes change(s)."
cat <<NEXT

Next:
  1. Edit /etc/mcp-hub/hub.toml (gateway.url, [egress], [[network_policies]]), then: mcp-hub check
  2. Trust the CA in devbox images:      mcp-hub ca print > mcp-hub-ca.pem
  3. Start:                              systemctl enable --now mcp-hub-firewall mcp-hub
  4. Register a devbox and its servers:  printf %s "\$TOKEN" | mcp-hub secret create GITHUB_MCP_TOKEN
                                         mcp-hub devbox create devbox-1 --address 10.77.0.2 \\
                                           --network-policy dev --mcp GITHUB_MCP_SECRET=github:GITHUB_MCP_TOKEN
  5. Give the devbox its environment:    mcp-hub devbox env devbox-1
NEXT
