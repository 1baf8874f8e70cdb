# Sourced by tools/quickstart and tools/test: use the active virtual environment, or create and activate .venv.
if [ -z "${VIRTUAL_ENV:-}" ]; then
  PYTHON=${PYTHON:-python3}
  command -v "$PYTHON" >/dev/null || { echo "error: $PYTHON not found; dlcourse needs Python >= 3.10" >&2; exit 1; }
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
    || { echo "error: dlcourse needs Python >= 3.10, $PYTHON is $("$PYTHON" --version 2>&1)" >&2; exit 1; }
  if [ ! -x .venv/bin/python ]; then
    echo "== creating virtual environment .venv"
    "$PYTHON" -m venv .venv
  fi
  # shellcheck disable=SC1091
  source .venv/bin/activate
fi
# pip install, quietly; registry-mirror warnings are noise, errors still stop the script
pip_install() { { python -m pip install -q --disable-pip-version-check "$@" 2>&1 | grep -v '^WARNING: Location' || true; }; return "${PIPESTATUS[0]}"; }
