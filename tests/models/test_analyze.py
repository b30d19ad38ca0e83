"""python -m models.analyze: argument errors, and the command end to end on tiny
untrained runs (the two figures and the summary)."""

import json
import os

import cv2
import pytest

from models import analyze
from models.analysis import annotated_nodes


def test_argument_errors(command_flags):
    assert analyze.parse_runs([]) == list(analyze.DEFAULT_RUNS)
    assert analyze.parse_runs(["a=b", "c"]) == [("a", "b"), (None, "c")]
    with pytest.raises(ValueError, match=r"--model_dir must be \[NAME=\]DIR"):
        analyze.parse_runs(["regular="])
    command_flags(analyze, "--model_dir", "x", "--image", "y.png", "--roi", "1,2,3")
    with pytest.raises(ValueError, match="--roi must be 4 comma-separated numbers"):
        analyze.main([])


def test_missing_checkpoint_needs_a_variant_to_train(tmp_path, command_flags):
    command_flags(analyze, "--steps", "0")
    with pytest.raises(FileNotFoundError, match="no checkpoint in"):
        analyze.ensure_trained("regular", str(tmp_path))
    command_flags(analyze)
    with pytest.raises(FileNotFoundError, match="name its variant"):
        analyze.ensure_trained(None, str(tmp_path))


@pytest.mark.slow
def test_command_draws_both_figures(tmp_path, tiny_run, tiny_data, command_flags):
    image = os.path.join(tiny_data["root"], "val", "000001.png")
    out = tmp_path / "out"
    command_flags(analyze, "--model_dir", f"regular={tiny_run('regular')}",
                  "--model_dir", tiny_run("dcnv2"), "--image", image,
                  "--annotations", tiny_data["annotation_file"], "--out", str(out),
                  "--steps", "0", "--patch_size", "16")
    analyze.main([])

    with open(out / "spatial_support.json") as f:
        summary = json.load(f)
    assert list(summary["runs"]) == ["regular", "dcnv2"]
    expected = annotated_nodes.nodes_from_annotations(tiny_data["annotation_file"], image)
    assert summary["nodes"]["roi"] == list(expected["roi"])  # 64 x 64: scale 1
    for name, run in summary["runs"].items():
        assert run["variant"] == name
        for key in ("foreground", "background", "roi"):
            assert run[key]["saliency_error"] <= 0.1
            assert 0 < run[key]["saliency_fraction"] <= 1
            assert run[key]["points"] > 0
        # conv5 of ResNet-10: one basic block, two 3x3 convolutions, both probed.
        assert len(run["foreground"]["layers"]) == 2
        assert run["foreground"]["position"] == [int(v) // 32 for v in
                                                 expected["foreground"]]

    for name, columns in (("figure1_conv5.png", 6), ("figure2_roi.png", 3)):
        picture = cv2.imread(str(out / name))
        assert picture is not None
        # Two rows of 192-pixel panels (64 pixels enlarged 3 times) plus captions.
        assert picture.shape[0] > 2 * 192 and picture.shape[1] > columns * 192
