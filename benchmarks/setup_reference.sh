#!/usr/bin/env bash
# Create a separate virtual environment with the reference implementation,
# cryoCARE 0.3.0 (PyPI `cryocare`), for benchmarks/reference.py and for the
# two-way compatibility test in tests/test_compat.py.
#
# Usage: benchmarks/setup_reference.sh [VENV]   (default: .venv-cryocare-ref in the repository)
#
# cryoCARE 0.3.0 pins numpy~=1.19 and csbdeep<0.8, which no longer install on a
# current Python; its code runs unchanged with csbdeep 0.8.2, so it is installed
# with --no-deps next to the same TensorFlow as ours.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-$HERE/.venv-cryocare-ref}"
PYTHON="${PYTHON:-python3}"
if [ -x "$HERE/.venv/bin/python" ]; then
    TF_VERSION="$("$HERE/.venv/bin/python" -c 'import importlib.metadata as m; print(m.version("tensorflow"))')"
else
    TF_VERSION="2.21.0"
fi
"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --upgrade pip
"$VENV/bin/pip" install --quiet "tensorflow==$TF_VERSION" "csbdeep==0.8.2" mrcfile psutil tqdm
"$VENV/bin/pip" install --quiet --no-deps "cryocare==0.3.0"
"$VENV/bin/python" -c 'import cryocare.internals.CryoCARE, csbdeep, tensorflow as tf; print("cryoCARE 0.3.0 reference ready, tensorflow", tf.__version__)'
echo "$VENV"
