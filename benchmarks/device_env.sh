# Sourced by benchmarks/gpu.sh and gpu_train.sh from the repository root: the Python to use
# ($PY: $PYTHON or python), the repository on PYTHONPATH, quiet TensorFlow-style logs, and
# `need_wheels MODULE:PACKAGE ...`, which installs each missing pure-Python package from the
# wheels carried in $JAXMUSIC_WHEELS (a folder), when that is set.
PY="${PYTHON:-python}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export TF_CPP_MIN_LOG_LEVEL=2
need_wheels() {
  local spec
  for spec in "$@"; do
    if ! "$PY" -c "import ${spec%%:*}" 2>/dev/null && [ -n "${JAXMUSIC_WHEELS:-}" ]; then
      "$PY" -m pip install --quiet --no-index --no-deps --find-links "$JAXMUSIC_WHEELS" "${spec#*:}"
    fi
  done
}
