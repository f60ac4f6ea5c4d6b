#!/usr/bin/env bash
# The main job, end to end through the real `avsearch` commands.
# Without model weights: train a C-MCR bridge between two synthetic contrastive spaces that share only
# text, index 1,000 held-out sounds and pictures (their vectors) in a LanceDB + FAISS index through that
# bridge, and search it: a sound finds the picture of the same event. Scores against chance are printed.
# With AVSEARCH_WEIGHTS set (see README "Weights"): also the three user commands on a sample folder.
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-runs/demo}
bin=.venv/bin
rm -rf "$work/index"
mkdir -p "$work"
echo "== synthetic embeddings (two spaces sharing only text) -> $work/embeddings"
$bin/python -m avsearch.bridge.synthetic "$work/embeddings" --pairs 20000 --test 1000 --searchable "$work/vectors"
echo "== avsearch train (paper hyper-parameters, shortened: 8 epochs, batch 1024)"
$bin/avsearch train --config audio_visual --embeddings "$work/embeddings" \
  --out "$work/audio_visual.safetensors" --epochs 8 --batch-size 1024
echo "== avsearch index --embeddings: the held-out events' vectors, projected through the bridge"
$bin/avsearch index --embeddings "$work/vectors" --bridge "$work/audio_visual.safetensors" --index-dir "$work/index" -q
$bin/avsearch info --index-dir "$work/index"
echo "== avsearch query --id audio/event-0017: which pictures go with this sound? (the same event: image/event-0017)"
$bin/avsearch query --id audio/event-0017 --target image -k 5 --index-dir "$work/index"
echo "== avsearch query --id image/event-0042: which sounds go with this picture?"
$bin/avsearch query --id image/event-0042 --target audio -k 5 --index-dir "$work/index"
echo "== audio -> image retrieval over all 1,000 events, through the bridge and unconnected (chance)"
$bin/avsearch project "$work/vectors/audio.clap.npy" "$work/audio.shared.npy" \
  --bridge "$work/audio_visual.safetensors" --space clap
$bin/avsearch project "$work/vectors/image.clip.npy" "$work/image.shared.npy" \
  --bridge "$work/audio_visual.safetensors" --space clip
$bin/avsearch eval retrieval --queries "$work/audio.shared.npy" --gallery "$work/image.shared.npy"
$bin/avsearch eval retrieval --queries "$work/vectors/audio.clap.npy" --gallery "$work/vectors/image.clip.npy"

if [ -n "${AVSEARCH_WEIGHTS:-}" ]; then
  echo "== with the weights in $AVSEARCH_WEIGHTS: the three user commands on a sample folder ($work/sample)"
  weights=$(cd "$AVSEARCH_WEIGHTS" && pwd)
  $bin/python scripts/make_sample_media.py "$work/sample"
  (cd "$work/sample" && rm -rf indexes && export AVSEARCH_WEIGHTS="$weights" && set -x &&
    "$OLDPWD/$bin/avsearch" index ./media && "$OLDPWD/$bin/avsearch" query --audio dog.wav &&
    "$OLDPWD/$bin/avsearch" classify3d model.ply)
else
  echo "== (set AVSEARCH_WEIGHTS to a weights folder to also run: avsearch index ./media," \
    "avsearch query --audio dog.wav, avsearch classify3d model.ply)"
fi
