#!/usr/bin/env bash
# The main job without model weights: train a C-MCR bridge between two synthetic contrastive spaces
# that share only text, project held-out sounds and images through it, and score audio->image
# retrieval against the unconnected spaces. Everything runs through the real `avsearch` commands.
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-runs/demo}
bin=.venv/bin
mkdir -p "$work"
echo "== synthetic embeddings (two spaces sharing only text) -> $work/embeddings"
$bin/python -m avsearch.bridge.synthetic "$work/embeddings" --pairs 20000 --test 1000
echo "== avsearch train (paper hyper-parameters, shortened: 8 epochs, batch 1024)"
$bin/avsearch train --config audio_visual --embeddings "$work/embeddings" \
  --out "$work/audio_visual.safetensors" --epochs 8 --batch-size 1024
echo "== avsearch project: held-out sounds (CLAP-like space) and images (CLIP-like space)"
$bin/avsearch project "$work/embeddings/test_audio.clap.npy" "$work/audio.shared.npy" \
  --bridge "$work/audio_visual.safetensors" --space clap
$bin/avsearch project "$work/embeddings/test_image.clip.npy" "$work/image.shared.npy" \
  --bridge "$work/audio_visual.safetensors" --space clip
echo "== audio -> image retrieval through the bridge"
$bin/avsearch eval retrieval --queries "$work/audio.shared.npy" --gallery "$work/image.shared.npy"
echo "== the same pairs in the unconnected spaces (no bridge): chance level"
$bin/avsearch eval retrieval --queries "$work/embeddings/test_audio.clap.npy" \
  --gallery "$work/embeddings/test_image.clip.npy"
