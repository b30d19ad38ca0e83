"""models.analysis.report: the JSON summary of analysed runs (the figures and the
analysis itself run in tests/models/test_analyze.py)."""

import json

import numpy as np

from keras_dcn.analysis import SaliencyRegion
from models.analysis import report

NODES = {"foreground": (20, 30), "background": (5, 60), "roi": (10.0, 12.0, 40.0, 50.0)}


def _node_result(mask, points, error, layers, position=None):
    region = SaliencyRegion(mask=mask, patches=int(mask.sum()), error=error,
                            order=np.arange(mask.size), patch_size=1,
                            evaluations=7)
    result = {"region": region, "points": np.zeros((points, 2)), "layers": layers}
    if position is not None:
        result["position"] = position
    return result


def _rows():
    mask = np.zeros((4, 5), bool)
    mask[:2, :3] = True  # 6 of 20 pixels
    run = {"variant": "dcnv2", "described": "DCNv2, conv3-conv5",
           "foreground": _node_result(mask, 9, 0.05, ["dcn_a"], position=(2, 3)),
           "background": _node_result(~mask, 18, 0.1, ["dcn_a", "dcn_b"], position=(0, 7)),
           "roi": _node_result(mask, 49, 0.02, ["pool"])}
    return {"mine": run}


def test_summary_lists_nodes_and_per_node_figures():
    summary = report.summary(_rows(), NODES)
    assert summary["nodes"] == {"foreground": [20, 30], "background": [5, 60],
                                "roi": [10.0, 12.0, 40.0, 50.0]}
    run = summary["runs"]["mine"]
    assert run["variant"] == "dcnv2" and run["model"] == "DCNv2, conv3-conv5"
    assert run["foreground"] == {
        "saliency_patches": 6, "saliency_fraction": 0.3, "saliency_error": 0.05,
        "saliency_evaluations": 7, "points": 9, "layers": ["dcn_a"], "position": [2, 3]}
    assert run["background"]["saliency_fraction"] == 0.7
    assert run["background"]["points"] == 18 and run["background"]["position"] == [0, 7]
    assert "position" not in run["roi"] and run["roi"]["points"] == 49


def test_write_summary_writes_the_summary_as_json(tmp_path):
    path = report.write_summary(_rows(), NODES, str(tmp_path))
    assert path == str(tmp_path / "spatial_support.json")
    with open(path) as f:
        written = json.load(f)
    assert written["runs"]["mine"]["roi"]["saliency_patches"] == 6
    assert written["nodes"]["foreground"] == [20, 30]
