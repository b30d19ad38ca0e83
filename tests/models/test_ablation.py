"""python -m models.ablation end to end on a tiny budget: rows with and without
mimicking over two seeds, the report, reuse of finished runs and the refusal to mix
settings (the AP of such runs is near zero; the accuracy figures come from the full
command, not from tests)."""

import json

import cv2
import pytest

from models import ablation
from tests.models.test_demo import TINY_RECIPE


@pytest.mark.slow
def test_ablation_reports_every_row_and_seed(tmp_path, command_flags, capsys):
    out = tmp_path / "ablation"
    argv = (*TINY_RECIPE, "--data", str(tmp_path / "data"), "--out", str(out),
            "--variants", "regular,dcnv2+mimic", "--seeds", "0,1", "--mimic_rois", "2",
            "--mimic_crop", "32", "--timing_rounds", "2")
    command_flags(ablation, *argv)
    ablation.main([])
    printed = capsys.readouterr().out
    assert "[4/4] dcnv2+mimic, seed 1" in printed

    with open(out / "table.json") as f:
        table = json.load(f)
    assert set(table["runs"]) == {"regular", "dcnv2+mimic"}
    for row, runs in table["runs"].items():
        assert len(runs) == 2
        for run in runs:
            assert run["settings"]["steps"] == 4
            assert run["step_s"] > 0 and run["inference_s"] > 0
        assert runs[0]["params"] == runs[1]["params"]
    # The deformable row has its offset and modulation branches.
    assert table["runs"]["dcnv2+mimic"][0]["params"] > table["runs"]["regular"][0]["params"]
    # Times of the table: each row's, measured side by side after the runs.
    assert set(table["timings"]) == {"regular", "dcnv2+mimic"}
    for row, times in table["timings"].items():
        assert times["step_s"] > 0 and times["inference_s"] > 0
        assert table["summary"][row]["step_s"]["mean"] == times["step_s"]
    assert "timing the rows side by side (2 rounds)" in printed
    assert "regular" in (out / "table.md").read_text()
    assert cv2.imread(str(out / "ablation.png")) is not None

    # Finished runs are reused; other settings in the same folder are refused.
    command_flags(ablation, *argv)
    ablation.main([])
    assert "[1/4]" in capsys.readouterr().out
    command_flags(ablation, *argv[:-6], "--mimic_rois", "3", "--mimic_crop", "32")
    with pytest.raises(ValueError, match="other settings .*mimic_rois"):
        ablation.main([])
