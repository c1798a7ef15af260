#!/usr/bin/env bash
# Installs headless Chromium (Debian's `chromium` package) for the live page's browser tests
# (runner/tests/ui.rs), when no Chromium is on the PATH. Needs root or sudo.
set -euo pipefail
for browser in chromium chromium-browser google-chrome; do
  if command -v "$browser" >/dev/null 2>&1; then
    echo "Chromium is here: $(command -v "$browser")"
    exit 0
  fi
done
as_root=()
if [ "$(id -u)" != 0 ]; then
  as_root=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
command -v chromium
