#!/usr/bin/env bash
# Create ./.venv and install avsearch with its dependencies (idempotent: re-running is quick).
# torch and torchvision are pinned to the pair that installs from local files on our build machines;
# override with AVSEARCH_TORCH="torch==X torchvision==Y" elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${AVSEARCH_TORCH:-"torch==2.14.1 torchvision==0.29.1"}
# dev: the test tools (and a real S3 server for the object-storage tests); ray: `avsearch index --ray`
EXTRAS=${AVSEARCH_EXTRAS:-"dev,ray"}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# shellcheck disable=SC2086  # TORCH_SPEC is a list of requirements
.venv/bin/python -m pip install --quiet --disable-pip-version-check $TORCH_SPEC 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[$EXTRAS]" 2>&1 | grep -v "^WARNING: Location" || true
# laion_clap is only located, not imported: its import looks tokenizers up on a model hub (avsearch
# builds CLAP through its clap_module instead, off-line).
HF_HUB_OFFLINE=1 .venv/bin/python -c "import importlib.util as u, avsearch, torch, faiss, lancedb, open_clip; \
assert u.find_spec('laion_clap'), 'laion_clap missing'" \
  || { echo "setup.sh: the environment did not import cleanly" >&2; exit 1; }
echo "avsearch installed in .venv ($(.venv/bin/avsearch --version))"
# playwright (the dev extra) drives Debian's chromium in tests/serve/test_browser.py; it downloads no browser.
[ -x /usr/bin/chromium ] \
  || echo "setup.sh: no /usr/bin/chromium: the browser test will be skipped (apt-get install chromium)" >&2
