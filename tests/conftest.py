"""Shared test configuration.

tests.encoder_fixtures provides session fixtures that build weights folders for the REAL CLIP and
CLAP architectures with random (CLAP: tiny-text-tower) weights made by the tests; nothing is downloaded.
"""

import os

# No test may reach a model hub: fail fast instead of hanging on a network that is not there.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("AVSEARCH_OFFLINE", "1")

pytest_plugins = ["tests.encoder_fixtures"]
