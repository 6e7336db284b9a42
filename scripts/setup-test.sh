#!/usr/bin/env bash
# The Debian packages only the test suite uses, installed when this runs as root (or with
# sudo that needs no password); `make test` runs it after scripts/setup.sh.
#   chromium, chromium-driver   the demo page's browser test (tests/test_demo.py)
#   iproute2                    the 2-machine rehearsal puts machine 1 in a network namespace
#                               of its own (tests/test_rehearsal_machines.py; that test needs root)
# Without root nothing is installed: the tests that need a missing package are skipped, each
# with its reason in pytest's summary (under CI=true they fail instead).
# Safe to run again: it returns at once when everything is there.
set -euo pipefail

log() { printf '[setup] %s\n' "$*"; }

missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
command -v ip >/dev/null || [ -x /usr/sbin/ip ] || [ -x /sbin/ip ] || missing+=(iproute2)
if [ ${#missing[@]} -eq 0 ]; then
  log "Test prerequisites present (chromium, chromium-driver, iproute2)"
  exit 0
fi

sudo=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo=sudo
  else
    log "warning: not root: ${missing[*]} not installed; the tests that need them are skipped" \
      "(pytest's summary names them). As root: apt-get install -y ${missing[*]}"
    exit 0
  fi
fi
if ! command -v apt-get >/dev/null; then
  log "warning: no apt-get: install ${missing[*]} (Debian's names) with this system's package manager;" \
    "until then the tests that need them are skipped"
  exit 0
fi
log "Installing ${missing[*]} (the demo page's browser test, the 2-machine rehearsal)"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
log "Test prerequisites installed"
