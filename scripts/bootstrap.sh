#!/usr/bin/env bash
# Create or reuse the project's virtual environment (.venv) and install what the book and the
# tests need, including Fashion-MNIST. Safe to run again: it only does what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "bootstrap: creating .venv with $($PYTHON --version)"
    "$PYTHON" -m venv .venv
fi

stamp=.venv/.vitphase-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ scripts/bootstrap.sh -nt "$stamp" ]; then
    echo "bootstrap: installing packages into .venv"
    .venv/bin/python -m pip install --quiet --upgrade pip
    # torch and torchvision are pinned: the shipped zoo and the nbval outputs were made with them
    .venv/bin/python -m pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
    .venv/bin/python -m pip install --quiet -e ".[test]"
    touch "$stamp"
fi

# Fashion-MNIST: the Debian package when apt is usable; otherwise the loader downloads the files
# (torchvision) into $VITPHASE_DATA on first use.
if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo -n"
    if [ "$(id -u)" -eq 0 ] || [ -n "$SUDO" ]; then
        echo "bootstrap: installing the Debian package dataset-fashion-mnist"
        ($SUDO apt-get update -qq && $SUDO apt-get install -y -qq dataset-fashion-mnist) \
            || echo "bootstrap: apt-get failed; Fashion-MNIST will be downloaded on first use"
    fi
fi
