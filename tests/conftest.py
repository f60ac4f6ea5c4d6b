"""Shared test configuration.

tests.encoder_fixtures provides session fixtures that build weights folders for the REAL CLIP and
CLAP architectures with random (CLAP: tiny-text-tower) weights made by the tests; nothing is downloaded.
"""

import atexit
import os
import shutil
import tempfile

# No test may reach a model hub: fail fast instead of hanging on a network that is not there.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("AVSEARCH_OFFLINE", "1")
# Caches (prompt embeddings, downloads) go to a throw-away folder, never the user's home.
os.environ["AVSEARCH_CACHE"] = _CACHE = tempfile.mkdtemp(prefix="avsearch-test-cache-")
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)  # one per test run; hundreds piled up in /tmp
# Queries run their towers on torch in the suite (what most tests check); tests/encoders/test_onnx_towers.py
# turns ONNX Runtime on where it tests it (an export costs about a minute per tower).
os.environ.setdefault("AVSEARCH_ONNX", "0")

pytest_plugins = ["tests.encoder_fixtures"]
