#!/usr/bin/env bash
# Set up Sealport on a fresh Debian/Ubuntu machine (root or sudo for apt).
#   scripts/setup.sh          runtime: venv with the core, server and CLI
#   scripts/setup.sh --test   also the test tools: age CLI, gnome-keyring + D-Bus
#                             (real Secret Service), the npm oidc-provider test IdP
set -euo pipefail
cd "$(dirname "$0")/.."
want_test=0
[ "${1:-}" = "--test" ] && want_test=1

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
"$PY" -c 'import sys; assert sys.version_info[:2] >= (3, 11), sys.version' \
  || { echo "Sealport needs Python 3.11 (the VFX Reference Platform version)" >&2; exit 1; }

apt_pkgs=()
command -v openssl >/dev/null || apt_pkgs+=(openssl)
if [ $want_test = 1 ]; then
  command -v age >/dev/null || apt_pkgs+=(age)
  command -v gnome-keyring-daemon >/dev/null || apt_pkgs+=(gnome-keyring)
  command -v dbus-daemon >/dev/null || apt_pkgs+=(dbus)
  command -v dbus-launch >/dev/null || apt_pkgs+=(dbus-x11)
  command -v secret-tool >/dev/null || apt_pkgs+=(libsecret-tools)
  command -v node >/dev/null || apt_pkgs+=(nodejs npm)
fi
if [ ${#apt_pkgs[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${apt_pkgs[@]}"
fi

[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
if [ $want_test = 1 ]; then
  .venv/bin/python -m pip install -q -e ".[server,test]"
  (cd tests/idp && npm ci --silent --no-audit --no-fund)
  # A clean Blender (bpy from PyPI) with nothing else in it: the extension tests
  # install the built zip there, so it must bring its own core and dependencies.
  [ -x build/blender-venv/bin/python ] || "$PY" -m venv build/blender-venv
  build/blender-venv/bin/python -m pip install -q -r tests/blender/requirements.txt
else
  .venv/bin/python -m pip install -q -e ".[server]"
fi
