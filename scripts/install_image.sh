#!/bin/sh
# How the container image installs carm, in one place: the Dockerfile runs this script, and so
# does tests/packaging/test_image.py, which checks the result works (`carm run --help`).
#
#   scripts/install_image.sh wheels SOURCE WHEELS   # carm's wheel + its pinned dependencies
#   scripts/install_image.sh install WHEELS VENV    # a fresh venv from those wheels, offline
#
# Every dependency comes at the version pinned in constraints.txt (generated from the venv the
# tests passed in, see scripts/lock_constraints.py); the install step uses no index at all, so
# the image holds exactly what the wheels step pinned.
set -eu
step=$1
case "$step" in
  wheels)
    source=$2 wheels=$3
    python -m pip wheel --quiet --no-deps --wheel-dir "$wheels" "$source"
    cp "$source/constraints.txt" "$wheels/constraints.txt"
    python -m pip wheel --quiet --wheel-dir "$wheels" --constraint "$wheels/constraints.txt" \
      "$wheels"/carm-*.whl
    ;;
  install)
    wheels=$2 venv=$3
    python -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --no-index --find-links "$wheels" \
      --constraint "$wheels/constraints.txt" carm
    ;;
  *)
    echo "usage: $0 wheels SOURCE WHEELS | install WHEELS VENV" >&2
    exit 2
    ;;
esac
