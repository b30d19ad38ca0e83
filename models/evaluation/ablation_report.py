"""The ablation's report: rows over seeds as mean +- standard deviation, as Markdown,
JSON and a bar chart, and whether the paper's ordering holds.

A row's runs (one per seed) each give `metrics` (`{'box': {AP, ...}, 'mask': {...}}`
as `models.evaluation.coco` returns them, fractions), `params`, `step_s`,
`inference_s` and the descriptive columns of `models.training.ablation`. `summarize`
reduces them to means and sample standard deviations (in percent for AP), taking a
row's times from a side-by-side measurement where one is given;
`ordering` checks regular < dcnv1 < dcnv2 <= dcnv2+mimic on box AP and whether
dcnv2 - regular exceeds twice their pooled standard deviation; `markdown_table`,
`write_report` and `bar_chart` lay them out, and `deformation_table` the runs'
offsets and modulation per stage (`models.evaluation.deformation_stats`).
"""

import json
import math
import os
from typing import Dict, List, Mapping, Optional, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from models.evaluation import coco  # noqa: E402

DESCRIPTIVE = ("deform. conv", "deform. RoI pool", "mimic")
COSTS = (("params", 1e-6, "params (M)", "{:.2f}"),
         ("step_s", 1.0, "train step (s)", "{:.3f}"),
         ("inference_s", 1.0, "inference (s)", "{:.3f}"))
TABLE_METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
PAPER_ORDER = ("regular", "dcnv1", "dcnv2", "dcnv2+mimic")


def _mean_std(values: Sequence[float]) -> Dict[str, float]:
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return {"mean": float("nan"), "std": float("nan"), "n": 0}
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return {"mean": float(np.mean(values)), "std": std, "n": len(values)}


def summarize(runs: Mapping[str, Sequence[dict]],
              timings: Optional[Mapping[str, dict]] = None) -> Dict[str, dict]:
    """`{row: {'box': {AP: {mean, std, n}, ...}, 'mask': ..., cost: {...}, descriptive
    columns, 'seeds': n}}` with AP in percent (absent size buckets left out).

    `timings` (`{row: {'step_s', 'inference_s'}}`, the rows timed side by side)
    replaces the times the runs measured while training."""
    summary = {}
    for row, results in runs.items():
        entry = {"seeds": len(results)}
        for kind in coco.KINDS:
            entry[kind] = {}
            for key in coco.METRIC_KEYS:
                values = [100 * r["metrics"][kind][key] for r in results
                          if kind in r["metrics"] and r["metrics"][kind][key] >= 0]
                entry[kind][key] = _mean_std(values)
        for key, scale, _, _ in COSTS:
            values = [timings[row][key]] if timings and key in timings.get(row, {}) \
                else [r.get(key) for r in results]
            entry[key] = _mean_std([v * scale if v is not None else None for v in values])
        for column in DESCRIPTIVE:
            entry[column] = results[0].get(column, "") if results else ""
        summary[row] = entry
    return summary


def ordering(summary: Mapping[str, dict], kind: str = "box") -> dict:
    """Whether mean AP follows regular < dcnv1 < dcnv2 <= dcnv2+mimic (over the rows
    present), and dcnv2 - regular against twice their pooled standard deviation."""
    present = [row for row in PAPER_ORDER if row in summary]
    means = {row: summary[row][kind]["AP"]["mean"] for row in present}
    # Each step strictly better, except mimicking, which need only be no worse.
    holds = all(means[low] <= means[high] if high == "dcnv2+mimic"
                else means[low] < means[high]
                for low, high in zip(present[:-1], present[1:]))
    result = {"rows": present, f"{kind}_AP": [means[row] for row in present],
              "ordering_holds": bool(holds)}
    if "regular" in summary and "dcnv2" in summary:
        regular, dcnv2 = summary["regular"][kind]["AP"], summary["dcnv2"][kind]["AP"]
        gap = dcnv2["mean"] - regular["mean"]
        result["dcnv2_minus_regular"] = gap
        if regular["n"] > 1 and dcnv2["n"] > 1:
            pooled = math.sqrt((regular["std"] ** 2 + dcnv2["std"] ** 2) / 2)
            result.update(pooled_std=pooled, gap_above_two_std=bool(gap > 2 * pooled))
        else:  # one seed gives no standard deviation
            result.update(pooled_std=None, gap_above_two_std=None)
    return result


def _cell(stat: dict, fmt: str = "{:.1f}") -> str:
    if not stat or stat["n"] == 0:
        return "-"
    if stat["n"] == 1:
        return fmt.format(stat["mean"])
    return f"{fmt.format(stat['mean'])} ± {fmt.format(stat['std'])}"


def markdown_table(summary: Mapping[str, dict]) -> str:
    """One line per row: descriptive columns, box and mask AP (mean ± std over seeds,
    percent), parameters and times."""
    header = (["row", *DESCRIPTIVE, "seeds"]
              + [f"{kind} {key}" for kind in coco.KINDS for key in TABLE_METRICS]
              + [title for _, _, title, _ in COSTS])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row, entry in summary.items():
        cells = [row, *(str(entry[c]) for c in DESCRIPTIVE), str(entry["seeds"])]
        cells += [_cell(entry[kind][key]) for kind in coco.KINDS for key in TABLE_METRICS]
        cells += [_cell(entry[key], fmt) for key, _, _, fmt in COSTS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def deformation_table(runs: Mapping[str, Sequence[dict]]) -> str:
    """Per row and deformable part (conv stages, RoI pooling), means over seeds of the
    mean offset length (pixels for convolutions, before gamma in units of the RoI's
    size for pooling), the share of offsets longer than 1 and the mean modulation
    ("-" without modulation); rows that deform nothing are left out. Empty when no
    row deforms."""
    parts = []
    for results in runs.values():
        for part in (results[0].get("deformation") or {}) if results else {}:
            if part not in parts:
                parts.append(part)
    # The conv stages in order, then the RoI pooling parts as they come.
    order = {part: index for index, part in enumerate(parts)}
    parts.sort(key=lambda part: (not part.startswith("conv"),
                                 part if part.startswith("conv") else "", order[part]))
    if not parts:
        return ""
    header = ["row", *(f"{part} {what}" for part in parts
                       for what in ("offset", "share > 1", "modulation"))]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row, results in runs.items():
        stats = [r.get("deformation") or {} for r in results]
        if not any(stats):
            continue
        cells = [row]
        for part in parts:
            for key, fmt in (("offset_mean", "{:.2f}"), ("offset_over_1", "{:.0%}"),
                             ("mask_mean", "{:.2f}")):
                values = [s[part][key] for s in stats
                          if part in s and s[part].get(key) is not None]
                cells.append(fmt.format(float(np.mean(values))) if values else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def bar_chart(summary: Mapping[str, dict], out_path: str, title: str = "") -> str:
    """Box and mask AP of each row, bars at the mean, error bars one standard
    deviation, the seeds' values as dots; returns `out_path`."""
    rows = list(summary)
    x = np.arange(len(rows))
    width = 0.38
    figure, axis = plt.subplots(figsize=(max(6, 1.6 * len(rows)), 4.2))
    for offset, kind in ((-width / 2, "box"), (width / 2, "mask")):
        means = [summary[r][kind]["AP"]["mean"] for r in rows]
        stds = [summary[r][kind]["AP"]["std"] for r in rows]
        axis.bar(x + offset, means, width, yerr=stds, capsize=4, label=f"{kind} AP",
                 alpha=0.85)
    axis.set_xticks(x)
    axis.set_xticklabels(rows)
    axis.set_ylabel("AP (percent, COCO AP@[.5:.95])")
    axis.grid(axis="y", alpha=0.3)
    axis.legend()
    seeds = max((summary[r]["seeds"] for r in rows), default=0)
    axis.set_title(title or f"mean ± std over {seeds} seeds")
    figure.tight_layout()
    figure.savefig(out_path, dpi=100)
    plt.close(figure)
    return out_path


def write_report(out_dir: str, runs: Mapping[str, List[dict]], settings: dict,
                 title: str = "", timings: Optional[Mapping[str, dict]] = None
                 ) -> Dict[str, str]:
    """Writes `table.md`, `table.json` (settings, every run, the side-by-side
    `timings` when given, the summary and the ordering check) and `ablation.png` to
    `out_dir`; returns their paths."""
    summary = summarize(runs, timings)
    check = ordering(summary)
    paths = {name: os.path.join(out_dir, name)
             for name in ("table.md", "table.json", "ablation.png")}
    os.makedirs(out_dir, exist_ok=True)
    with open(paths["table.md"], "w") as f:
        if title:
            f.write(f"{title}\n\n")
        f.write(markdown_table(summary) + "\n\n" + ordering_sentence(check) + "\n")
        deformation = deformation_table(runs)
        if deformation:
            f.write("\nOffsets and modulation on a validation batch, means over seeds "
                    "(offsets in pixels for convolutions, in RoI sizes before gamma for "
                    "RoI pooling):\n\n" + deformation + "\n")
    with open(paths["table.json"], "w") as f:
        json.dump({"settings": settings, "runs": runs, "timings": timings,
                   "summary": summary, "ordering": check}, f, indent=2, sort_keys=True)
    bar_chart(summary, paths["ablation.png"], title)
    return paths


def ordering_sentence(check: dict) -> str:
    """The ordering check in words."""
    rows = " < ".join(check["rows"])
    text = (f"Box AP ordering {rows}: "
            f"{'holds' if check['ordering_holds'] else 'does not hold'} "
            f"({', '.join(f'{v:.1f}' for v in check['box_AP'])}).")
    if "dcnv2_minus_regular" in check:
        text += f" dcnv2 - regular = {check['dcnv2_minus_regular']:.1f} points, "
        if check["pooled_std"] is None:
            text += "with no standard deviation to compare it with (one seed)."
        else:
            text += (f"{'above' if check['gap_above_two_std'] else 'not above'} twice the "
                     f"pooled standard deviation ({2 * check['pooled_std']:.1f}).")
    return text
