#!/usr/bin/env bash
# Installs what the dashboard's browser tests need: Debian's Chromium (driven headless by
# playwright-core, which is in the dashboard's npm packages; Playwright's own browser download
# is not used), and a colour emoji font: the dashboard's status icons (🟢 ✅ ⚠️ 🔴) are emoji,
# and the screenshots the tests take should show them.
set -euo pipefail

if [ -x /usr/bin/chromium ] && [ -f /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ]; then
    exit 0
fi
echo "setup-browser: installing Debian's chromium for the dashboard's browser tests"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core fonts-noto-color-emoji >/dev/null
/usr/bin/chromium --version
