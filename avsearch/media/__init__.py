"""Media decoding: audio, images, text and point clouds, each to the arrays the encoders take.

- audio.load_audio(path, sample_rate) -> (T,) float32 mono; audio.make_windows(...) -> (W, window)
- image.load_image(path) -> upright RGB PIL image
- text.read_captions(path) / text.check_texts(texts)
- detect.detect_kind(path) -> "audio" | "image" | "pointcloud" | None, by content
"""
