# Sourced by scripts/test: headless Chromium and ChromeDriver for the console's browser tests
# (tests/console.rs drives Debian's `chromium` through `chromedriver` over WebDriver).
#
#   ensure_chromium   makes sure /usr/bin/chromium and /usr/bin/chromedriver exist: installs
#                     Debian's `chromium` and `chromium-driver` packages with apt-get when
#                     either is missing (non-interactive), and exports CHROMIUM and CHROMEDRIVER.
#
# Run directly (`scripts/chromium.sh`), it installs them and prints their versions.

ensure_chromium() {
  local chromium=${CHROMIUM:-/usr/bin/chromium} driver=${CHROMEDRIVER:-/usr/bin/chromedriver}
  if [ ! -x "$chromium" ] || [ ! -x "$driver" ]; then
    if ! command -v apt-get >/dev/null 2>&1; then
      echo "chromium.sh: chromium/chromedriver missing and apt-get is unavailable;" \
        "install Chromium and ChromeDriver and set CHROMIUM and CHROMEDRIVER" >&2
      return 1
    fi
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "chromium.sh: installing Debian's chromium and chromium-driver" >&2
    $sudo apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium chromium-driver >/dev/null
  fi
  [ -x "$chromium" ] && [ -x "$driver" ] || { echo "chromium.sh: chromium did not install" >&2; return 1; }
  export CHROMIUM=$chromium CHROMEDRIVER=$driver
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  ensure_chromium
  "$CHROMIUM" --version
  "$CHROMEDRIVER" --version
fi
