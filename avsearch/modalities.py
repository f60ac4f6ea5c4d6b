"""Modality and space names, in one place (file kinds, encoder towers, bridge sides, index tables).

A *modality* is a kind of input; a *space* is one frozen contrastive model's embedding space, holding
some modalities: CLIP (image, text), CLAP (audio, text), ULIP-2 (point cloud, image). Which encoder
embeds which modality into which space is data: configs/encoders.toml.
"""

from __future__ import annotations

AUDIO = "audio"
IMAGE = "image"
TEXT = "text"
POINTCLOUD = "pointcloud"
MODALITIES = (AUDIO, IMAGE, TEXT, POINTCLOUD)
FILE_MODALITIES = (IMAGE, AUDIO, POINTCLOUD)  # what a media file can be (text is typed, not indexed)
# A video is a file kind, not a modality of its own: its frames go to the image tables and its sound track
# to the audio tables, each row with its time range (avsearch/indexing/moments.py).
VIDEO = "video"
VIDEO_PARTS = (IMAGE, AUDIO)

CLIP = "clip"
CLAP = "clap"
ULIP = "ulip"
CAVMAE = "cavmae"  # CAV-MAE's audio-visual space (audio, image; no text)
SPACES = {CLIP: (IMAGE, TEXT), CLAP: (AUDIO, TEXT), ULIP: (POINTCLOUD, IMAGE), CAVMAE: (AUDIO, IMAGE)}

# Search backends an index can hold: "cmcr" (frozen CLIP/CLAP/ULIP-2 encoders joined by C-MCR bridges:
# every file modality and text) and "cavmae" (CAV-MAE, audio <-> image learned from paired video).
CMCR = "cmcr"
BACKENDS = (CMCR, CAVMAE)
BOTH = "both"  # a query or index run asking for every backend
