"""models.evaluation.ablation_report: means and sample standard deviations over seeds,
the paper's ordering check, the Markdown table and the written report."""

import json
import math

import cv2
import numpy as np
import pytest

from models.evaluation import ablation_report
from models.evaluation import coco

ROWS = {"regular": ("", "", ""), "dcnv1": ("conv3-5", "yes", ""),
        "dcnv2": ("conv3-5 (mod.)", "yes (mod.)", "")}


def _runs(rng, seeds=3, absent=("APs",)):
    """Hand-made runs, one per seed: AP fractions (buckets in `absent` are -1 in every
    run of the first row and in the first run of the others), parameter counts and
    times, descriptive columns."""
    runs = {}
    for r, (row, columns) in enumerate(ROWS.items()):
        runs[row] = []
        for seed in range(seeds):
            metrics = {kind: {key: float(rng.uniform(0.05, 0.6)) for key in coco.METRIC_KEYS}
                       for kind in coco.KINDS}
            for kind in coco.KINDS:
                for key in absent:
                    if r == 0 or seed == 0:
                        metrics[kind][key] = -1.0
            runs[row].append({
                "metrics": metrics, "params": int(rng.integers(10_000_000, 20_000_000)),
                "step_s": float(rng.uniform(0.5, 2.0)),
                "inference_s": None if seed == 1 else float(rng.uniform(0.1, 0.5)),
                **dict(zip(ablation_report.DESCRIPTIVE, columns)), "seed": seed})
    return runs


def test_summarize_means_and_sample_std(rng):
    """Per row: AP in percent, mean and sample std (ddof=1) over the seeds that have
    the bucket (-1 left out), costs scaled (params in millions, None left out), the
    descriptive columns and the seed count."""
    runs = _runs(rng)
    summary = ablation_report.summarize(runs)
    assert list(summary) == list(runs)
    for row, results in runs.items():
        entry = summary[row]
        assert entry["seeds"] == 3
        for column, value in zip(ablation_report.DESCRIPTIVE, ROWS[row]):
            assert entry[column] == value
        for kind in coco.KINDS:
            for key in coco.METRIC_KEYS:
                values = np.array([100 * r["metrics"][kind][key] for r in results
                                   if r["metrics"][kind][key] != -1.0])
                stat = entry[kind][key]
                assert stat["n"] == len(values)
                if len(values) == 0:
                    assert math.isnan(stat["mean"]) and math.isnan(stat["std"])
                else:
                    assert stat["mean"] == pytest.approx(values.mean())
                    assert stat["std"] == pytest.approx(
                        values.std(ddof=1) if len(values) > 1 else 0.0)
        params = np.array([r["params"] / 1e6 for r in results])
        assert entry["params"]["mean"] == pytest.approx(params.mean())
        assert entry["params"]["std"] == pytest.approx(params.std(ddof=1))
        inference = np.array([r["inference_s"] for r in results
                              if r["inference_s"] is not None])
        assert entry["inference_s"]["n"] == 2
        assert entry["inference_s"]["mean"] == pytest.approx(inference.mean())
        assert entry["inference_s"]["std"] == pytest.approx(inference.std(ddof=1))
    # The bucket absent from every regular run, and from one run of the others.
    assert summary["regular"]["box"]["APs"]["n"] == 0
    assert summary["dcnv2"]["mask"]["APs"]["n"] == 2


def test_summarize_one_seed_has_zero_std(rng):
    """A row of one run: its values as the mean, std 0."""
    runs = _runs(rng, seeds=1, absent=())
    summary = ablation_report.summarize(runs)
    for row, (run,) in runs.items():
        stat = summary[row]["box"]["AP"]
        assert stat == {"mean": pytest.approx(100 * run["metrics"]["box"]["AP"]),
                        "std": 0.0, "n": 1}


def test_summarize_takes_the_side_by_side_times_where_given(rng):
    """A row timed side by side shows that measurement (one value, std 0) in place of
    its runs' times; a row left out of the timings keeps its runs' mean."""
    runs = _runs(rng, absent=())
    timings = {"regular": {"step_s": 0.25, "inference_s": 0.125},
               "dcnv2": {"step_s": 0.375, "inference_s": 0.1875}}
    summary = ablation_report.summarize(runs, timings)
    for row, times in timings.items():
        for key, value in times.items():
            assert summary[row][key] == {"mean": value, "std": 0.0, "n": 1}
    steps = [r["step_s"] for r in runs["dcnv1"]]
    assert summary["dcnv1"]["step_s"]["mean"] == pytest.approx(np.mean(steps))
    assert summary["dcnv1"]["step_s"]["n"] == 3


def _summary(means, stds=None):
    """A summary holding only box AP mean / std per row."""
    stds = stds or {}
    return {row: {"box": {"AP": {"mean": mean, "std": stds.get(row, 0.0), "n": 3}}}
            for row, mean in means.items()}


@pytest.mark.parametrize("means, holds", [
    ({"regular": 30, "dcnv1": 32, "dcnv2": 35, "dcnv2+mimic": 36}, True),
    ({"regular": 30, "dcnv1": 32, "dcnv2": 35, "dcnv2+mimic": 35}, True),  # <= allowed
    ({"regular": 30, "dcnv1": 32, "dcnv2": 35, "dcnv2+mimic": 34.9}, False),
    ({"regular": 30, "dcnv1": 35, "dcnv2": 35, "dcnv2+mimic": 36}, False),  # strict
    ({"regular": 32, "dcnv1": 32, "dcnv2": 35}, False),  # strict
    ({"regular": 33, "dcnv1": 32, "dcnv2": 35}, False),
    ({"regular": 30, "dcnv2": 31}, True),  # rows absent are skipped
    ({"dcnv2": 31, "regular": 30, "dcnv1": 30.5, "other": 1.0}, True),  # any order
    ({"dcnv1": 40, "dcnv2+mimic": 39}, False),
])
def test_ordering_holds_only_in_the_papers_order(means, holds):
    """regular < dcnv1 < dcnv2 <= dcnv2+mimic over the rows present (in the paper's
    order whatever the summary's order; other rows ignored)."""
    check = ablation_report.ordering(_summary(means))
    present = [row for row in ("regular", "dcnv1", "dcnv2", "dcnv2+mimic") if row in means]
    assert check["rows"] == present
    assert check["box_AP"] == [means[row] for row in present]
    assert check["ordering_holds"] is holds


@pytest.mark.parametrize("regular, dcnv2, above", [
    ((30.0, 1.0), (33.0, 1.0), True),  # gap 3 > 2 * 1
    ((30.0, 1.0), (31.5, 1.0), False),
    ((30.0, 0.5), (32.0, 2.0), False),  # pooled sqrt((0.25 + 4) / 2) = 1.458
    ((30.0, 0.0), (30.1, 0.0), True),
])
def test_ordering_gap_against_twice_the_pooled_std(regular, dcnv2, above):
    """dcnv2 - regular and the pooled std sqrt((s_r^2 + s_d^2) / 2), the gap flagged
    when above twice it; absent without both rows."""
    summary = _summary({"regular": regular[0], "dcnv2": dcnv2[0]},
                       {"regular": regular[1], "dcnv2": dcnv2[1]})
    check = ablation_report.ordering(summary)
    pooled = np.sqrt(np.mean([regular[1] ** 2, dcnv2[1] ** 2]))
    assert check["dcnv2_minus_regular"] == pytest.approx(dcnv2[0] - regular[0])
    assert check["pooled_std"] == pytest.approx(pooled)
    assert check["gap_above_two_std"] is above
    assert "pooled_std" not in ablation_report.ordering(_summary({"dcnv2": 1.0,
                                                                   "dcnv1": 0.5}))


def test_one_seed_gives_no_pooled_std():
    """With one seed a row has no standard deviation: the gap is reported, but not
    as above (or below) twice a pooled standard deviation of 0."""
    summary = _summary({"regular": 30.0, "dcnv2": 30.4})
    summary["regular"]["box"]["AP"]["n"] = 1
    check = ablation_report.ordering(summary)
    assert check["dcnv2_minus_regular"] == pytest.approx(0.4)
    assert check["pooled_std"] is None and check["gap_above_two_std"] is None
    sentence = ablation_report.ordering_sentence(check)
    assert "one seed" in sentence and "above" not in sentence


def test_markdown_table_one_line_per_row(rng):
    """A header, a rule and one line per row, all with the same number of cells;
    several seeds show mean ± std, one seed the value alone, no value '-'."""
    summary = ablation_report.summarize(_runs(rng))
    table = ablation_report.markdown_table(summary)
    lines = table.splitlines()
    assert len(lines) == 2 + len(summary)
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert header[0] == "row" and "box AP" in header and "mask APl" in header
    assert set(lines[1].replace("|", "")) == {"-"}
    width = len(header)
    for line, row in zip(lines[2:], summary):
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        assert len(cells) == width and cells[0] == row
        box_ap = summary[row]["box"]["AP"]
        assert cells[header.index("box AP")] == (
            f"{box_ap['mean']:.1f} ± {box_ap['std']:.1f}")
        assert cells[header.index("seeds")] == "3"
    regular = lines[2].strip("|").split("|")
    assert regular[header.index("box APs")].strip() == "-"  # no run has the bucket
    assert "±" in lines[3]
    single = ablation_report.markdown_table(ablation_report.summarize(
        _runs(rng, seeds=1)))
    assert "±" not in single


def test_write_report(tmp_path, rng):
    """table.md (title, table, ordering sentence), table.json (settings, runs, the
    side-by-side timings, summary, ordering as computed here) and a PNG bar chart."""
    runs = _runs(rng)
    settings = {"image_size": 64, "train_steps": 10, "seeds": [0, 1, 2]}
    timings = {row: {"step_s": 0.5 + i, "inference_s": 0.25 + i}
               for i, row in enumerate(runs)}
    paths = ablation_report.write_report(str(tmp_path / "report"), runs, settings,
                                         title="Tiny ablation", timings=timings)
    assert sorted(paths) == ["ablation.png", "table.json", "table.md"]
    text = open(paths["table.md"]).read()
    assert text.startswith("Tiny ablation\n\n")
    summary = ablation_report.summarize(runs, timings)
    assert ablation_report.markdown_table(summary) in text
    assert "Box AP ordering regular < dcnv1 < dcnv2" in text
    with open(paths["table.json"]) as f:
        report = json.load(f)
    assert set(report) == {"settings", "runs", "timings", "summary", "ordering"}
    assert report["settings"] == settings
    assert report["timings"] == timings
    assert report["summary"]["dcnv1"]["step_s"]["mean"] == 1.5
    assert report["runs"] == json.loads(json.dumps(runs))
    check = ablation_report.ordering(summary)
    assert report["ordering"] == json.loads(json.dumps(check))
    for row in runs:
        assert report["summary"][row]["box"]["AP"]["mean"] == pytest.approx(
            summary[row]["box"]["AP"]["mean"])
    image = cv2.imread(paths["ablation.png"])
    assert image is not None and image.shape[2] == 3 and min(image.shape[:2]) > 100


def test_deformation_table_means_over_seeds_per_part():
    """Means over the seeds for every part any row reports, conv stages first in order;
    '-' for a statistic a row lacks (no modulation in DCNv1); rows without deformation
    left out."""
    stats = lambda offset, mask: {"conv5": {"offset_mean": offset, "offset_over_1": 0.5,
                                            **({"mask_mean": mask} if mask else {})}}
    runs = {"regular": [{"deformation": {}}],
            "dcnv1": [{"deformation": stats(1.0, None)}, {"deformation": stats(2.0, None)}],
            "dcnv2": [{"deformation": {"box RoI pooling": {"offset_mean": 0.04,
                                                           "offset_over_1": 0.0,
                                                           "mask_mean": 0.5},
                                       "conv4": {"offset_mean": 0.25,
                                                 "offset_over_1": 0.0,
                                                 "mask_mean": 0.75},
                                       **stats(0.5, 0.25)}}]}
    lines = ablation_report.deformation_table(runs).splitlines()
    assert lines[0] == ("| row | conv4 offset | conv4 share > 1 | conv4 modulation | "
                        "conv5 offset | conv5 share > 1 | conv5 modulation | "
                        "box RoI pooling offset | box RoI pooling share > 1 | "
                        "box RoI pooling modulation |")
    assert lines[2:] == ["| dcnv1 | - | - | - | 1.50 | 50% | - | - | - | - |",
                         "| dcnv2 | 0.25 | 0% | 0.75 | 0.50 | 50% | 0.25 | 0.04 | 0% | 0.50 |"]
    assert ablation_report.deformation_table({"regular": [{"deformation": {}}]}) == ""
