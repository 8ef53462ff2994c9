#!/usr/bin/env bash
# System packages for the optional `mujoco` feature (the real MuJoCo, to cross-check the
# pendulum simulator) and, for the Python tests, Python's venv module. The default build
# needs none.
set -euo pipefail
PKGS=()
[ -e /usr/include/mujoco/mujoco.h ] || PKGS+=(libmujoco-dev)
"${PYTHON:-python3}" -c "import ensurepip, venv" 2>/dev/null || PKGS+=(python3-venv python3-pip)
if [ ${#PKGS[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${PKGS[@]}"
fi
