"""Media decoding: audio, images, text and point clouds, each to the arrays the encoders take.

- detect.detect(path) -> Detected(kind, format, reason), by content first; detect.detect_kind(path) ->
  "audio" | "image" | "pointcloud" | None. The readers below start from the same verdict.
- audio.load_audio(path, sample_rate) -> (T,) float32 mono; audio.make_windows(...) -> (W, window)
- image.load_image(path) -> upright RGB PIL image (large ones reduced; limits in configs/media.toml)
- pointcloud.load_pointcloud(path) -> (8192, 3) float32, from point-cloud and mesh files
- text.read_captions(path) / text.check_texts(texts)
"""
