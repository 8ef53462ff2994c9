#!/usr/bin/env bash
# System packages for the optional `mujoco` feature (the real MuJoCo, to cross-check the
# pendulum simulator). The default build needs none.
set -euo pipefail
if [ ! -e /usr/include/mujoco/mujoco.h ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libmujoco-dev
fi
