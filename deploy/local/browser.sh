#!/usr/bin/env bash
# Headless browser for the status-page test (tests/status_page.rs): Debian's `chromium` and
# playwright-core (pinned in tests/browser/package.json + package-lock.json) with Node.js.
# Idempotent: skips what is present at the right version. Called by deploy/local/test.sh.
#
#   deploy/local/browser.sh           install what is missing, print CHROMIUM_BIN
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
browser=$repo/tests/browser

log() { printf '[browser] %s\n' "$*" >&2; }

apt_install() {
  if ! command -v apt-get >/dev/null; then
    log "$* missing and apt-get is not available: install it (and set CHROMIUM_BIN for chromium)"
    return 1
  fi
  local sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  log "installing $* (apt)"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >&2
}

chromium_bin() {
  if [ -n "${CHROMIUM_BIN:-}" ] && [ -x "$CHROMIUM_BIN" ]; then echo "$CHROMIUM_BIN"; return; fi
  command -v chromium 2>/dev/null || true
}

[ -n "$(chromium_bin)" ] || apt_install chromium
command -v node >/dev/null && command -v npm >/dev/null || apt_install nodejs npm

want=$(node -p "require('$browser/package.json').dependencies['playwright-core']")
have=$(node -p "try { require('$browser/node_modules/playwright-core/package.json').version } catch { '' }")
if [ "$have" != "$want" ]; then
  log "installing playwright-core $want into tests/browser/node_modules (npm ci)"
  (cd "$browser" && npm ci --no-audit --no-fund --loglevel=error >&2)
fi
echo "export CHROMIUM_BIN=$(chromium_bin)"
