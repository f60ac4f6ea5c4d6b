"""Make the encoder weights fixtures available here even before tests/conftest.py registers the plugin."""

from tests.encoder_fixtures import av_weights_dir, clap_weights_dir, clip_weights_dir  # noqa: F401
