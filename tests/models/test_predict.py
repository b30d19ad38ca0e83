"""python -m models.predict: the images, threshold, class names and layout it draws
with, and the counts it prints (drawing a SavedModel's detections:
tests/models/serving/test_detector.py)."""

import numpy as np

from models import predict
from models.serving import detector


def test_draws_the_images_and_counts_the_detections(monkeypatch, command_flags, capsys):
    calls = []

    def fake_predict_and_draw(saved_model, images, out, score_threshold, class_names,
                              annotation_file=None, min_tile=256, columns=2):
        calls.append({"saved_model": saved_model, "images": images, "out": out,
                      "score_threshold": score_threshold, "class_names": class_names,
                      "annotation_file": annotation_file, "min_tile": min_tile,
                      "columns": columns})
        return [{"scores": np.array([0.9, 0.3, 0.6])}, {"scores": np.array([0.1])}]

    monkeypatch.setattr(detector, "predict_and_draw", fake_predict_and_draw)
    command_flags(predict, "--saved_model", "export/saved_model", "--image", "a.png,b.png",
                  "--annotations", "instances.json", "--class_names", "bg,ring,star",
                  "--score_threshold", "0.5", "--out", "p.png", "--min_tile", "128",
                  "--columns", "3")
    predict.main([])
    assert calls == [{"saved_model": "export/saved_model", "images": ["a.png", "b.png"],
                      "out": "p.png", "score_threshold": 0.5,
                      "class_names": ["bg", "ring", "star"],
                      "annotation_file": "instances.json", "min_tile": 128,
                      "columns": 3}]
    # 4 detections over both images, 2 of them at 0.5 or above.
    assert capsys.readouterr().out.strip() == (
        "2 image(s), 4 detections, 2 drawn (score >= 0.5): p.png")


def test_defaults(monkeypatch, command_flags):
    calls = []
    monkeypatch.setattr(detector, "predict_and_draw",
                        lambda *args, **kwargs: calls.append((args, kwargs)) or [])
    command_flags(predict, "--saved_model", "m", "--image", "x.png")
    predict.main([])
    (args, kwargs), = calls
    assert args == ("m", ["x.png"], "prediction.png", 0.5, None)
    assert kwargs == {"annotation_file": None, "min_tile": 256, "columns": 2}
