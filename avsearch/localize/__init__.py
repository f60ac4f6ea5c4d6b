"""Sound-source localisation and audio-image match confidence through a C-MCR bridge.

Public API:
- localize(audio_path, image_path, *, bridge, weights_dir, device, proposals, boxes_file) -> Localization
- match(audio_path, image_path, *, threshold, ...) -> MatchResult
- Localizer: the same with models kept loaded (a server holds one).
- Localization / MatchResult / ScoredBox: results with to_dict(); Localization.save_overlay(png).
- metrics: cIoU, success rate, AUC, precision/recall, Max-F1, AP (tables 2 and 3).
"""

from avsearch.localize.pipeline import Localizer, localize, match
from avsearch.localize.proposals import Box
from avsearch.localize.results import Localization, MatchResult, ScoredBox

__all__ = ["Box", "Localization", "Localizer", "MatchResult", "ScoredBox", "localize", "match"]
