"""Table and plot of OpenCompass evaluations beside the paper's numbers, each number with the
evaluation and the checkpoint it came from.

An evaluation is what one OpenCompass launch leaves in its work folder (<time>/ under the folder
given with -w): configs/<time>_<pid>.py, the models (abbr, checkpoint path) and datasets it ran, as
OpenCompass wrote them, and, once it finished, summary/summary_<time>.csv. Every evaluation under
RUN_DIR (e.g. outputs/opencompass, where scripts/eval_opencompass.sh writes one folder per benchmark)
is read, oldest first; the latest evaluation of a (row, steps, benchmark) decides its cell: its
score, "failed" (it produced no score: a task failed) or "no summary" (it never finished). An older
score is never shown in its place. Writes RUN_DIR/report.md: the scores per row and step count,
which rows are comparable with the paper's numbers (the paper's exact sampler at its step count),
the paper's numbers, and for every cell its evaluation and checkpoint; and RUN_DIR/report.png (score
against steps, one line per row, one panel per benchmark, the paper's numbers as stars; a likelihood
row, which has no steps, as a dashed level).

usage: python scripts/eval_report.py RUN_DIR
       python scripts/eval_report.py --check WORK_DIR   (exit 1 naming each task of the latest
                                                         evaluation under WORK_DIR that has no result)
"""
import argparse
import csv
import glob
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from opencompass_configs.benchmarks import BENCHMARKS, PAPER_STEPS, ROWS, STEPS, parse_abbr  # noqa: E402


def evaluations(run_dir):
    """[(work folder, time, config)] of every evaluation under run_dir, oldest first."""
    from mmengine.config import Config

    found = []
    for path in glob.glob(os.path.join(glob.escape(run_dir), "**", "configs", "*_*.py"), recursive=True):
        folder = os.path.dirname(os.path.dirname(path))
        time = os.path.basename(path)[:-len(".py")].rsplit("_", 1)[0]  # <time>_<pid>.py
        found.append((time, folder, Config.fromfile(path, format_python_code=False)))
    if not found:
        raise SystemExit(f"{run_dir!r}: no OpenCompass evaluation under it (a work folder's "
                         "configs/<time>_<pid>.py); run scripts/eval_opencompass.sh first")
    return [(folder, time, cfg) for time, folder, cfg in sorted(found, key=lambda f: f[:2])]


def failed_tasks(folder, cfg):
    """[(task, why, its logs)] of each (model, dataset) of the evaluation without a score: OpenCompass
    writes results/<model>/<dataset>.json for each task that scored, and exits 0 either way."""
    from opencompass.utils import dataset_abbr_from_cfg, get_infer_output_path, model_abbr_from_cfg

    failed = []
    for model in cfg.models:
        for dataset in cfg.datasets:
            result = get_infer_output_path(model, dataset, os.path.join(folder, "results"))
            try:
                with open(result) as f:
                    error = json.load(f).get("error")
            except FileNotFoundError:
                error = "no result"
            except (OSError, ValueError, AttributeError) as e:
                error = f"unreadable result ({type(e).__name__}: {e})"
            if error:
                task = f"{model_abbr_from_cfg(model)}/{dataset_abbr_from_cfg(dataset)}"
                logs = [os.path.join(folder, "logs", stage, task + ".out") for stage in ("infer", "eval")]
                failed.append((task, str(error), [log for log in logs if os.path.isfile(log)]))
    return failed


def check(work_dir):
    """Exit 1 naming every failed task of the latest evaluation under work_dir."""
    folder, _, cfg = evaluations(work_dir)[-1]
    failed = failed_tasks(folder, cfg)
    if failed:
        raise SystemExit(f"{len(failed)} of {len(cfg.models) * len(cfg.datasets)} OpenCompass task(s) failed in "
                         f"{folder}:\n" + "\n".join(f"  {task}: {why}" + (f" (see {', '.join(logs)})" if logs else "")
                                                    for task, why, logs in failed))
    print(f"all {len(cfg.models) * len(cfg.datasets)} OpenCompass task(s) of {folder} have results")


def read_cells(run_dir):
    """{(row, steps, benchmark): cell} from the latest evaluation of each, where row carries the
    sampler's mode ("xdlm-k0.1 [b32-dual]") and cell is a dict: score (None unless it scored), status
    ("ok", "failed" or "no summary"), evaluation (its work folder under run_dir, and the time when
    that is not the folder's name) and checkpoint."""
    from opencompass.utils import dataset_abbr_from_cfg

    found = evaluations(run_dir)
    configured = {folder for folder, _, _ in found}
    for summary in glob.glob(os.path.join(glob.escape(run_dir), "**", "summary", "summary_*.csv"), recursive=True):
        folder = os.path.dirname(os.path.dirname(summary))
        if folder not in configured:  # never dropped in silence
            raise SystemExit(f"{folder}: an OpenCompass summary without the configs/ written beside it (the models "
                             "and checkpoints it ran), so its scores cannot be placed: move it out of RUN_DIR")
    cells = {}
    for folder, time, cfg in found:
        groups = {g["name"] for g in (cfg.get("summarizer") or {}).get("summary_groups", [])}
        ran = {dataset_abbr_from_cfg(d) for d in cfg.datasets} | groups
        summary = {}
        try:
            with open(os.path.join(folder, "summary", f"summary_{time}.csv")) as f:
                summary = {(line["dataset"], line["metric"]): line for line in csv.DictReader(f)}
            status = "failed"
        except FileNotFoundError:
            status = "no summary"
        where = os.path.relpath(folder, run_dir) + ("" if os.path.basename(folder) == time else f" @{time}")
        for model in cfg.models:
            found = parse_abbr(model.get("abbr"))
            if not found:
                continue
            row, steps, mode = found
            # A row sampled faster than the paper's protocol (models.py: -b32, -dual, -t0.9) keeps its mode
            # in its name: it is never merged with, or compared as, a paper row. So does a likelihood row
            # (ll-ESTIMATOR..., steps None).
            row = f"{row} [{mode}]" if mode else row
            for name, bench in BENCHMARKS.items():
                if bench.dataset in ran:
                    value = summary.get((bench.dataset, bench.metric), {}).get(model["abbr"])
                    score = float(value) if value not in (None, "", "-") else None
                    cells[row, steps, name] = dict(score=score, status="ok" if score is not None else status,
                                                   evaluation=where, checkpoint=model.get("path", "?"))
    if not cells:
        raise SystemExit(f"RUN_DIR {run_dir!r}: its evaluations ran none of {', '.join(BENCHMARKS)} for models "
                         "named ROW-sSTEPS or ROW-ll-ESTIMATOR (opencompass_configs/models.py)")
    return cells


def row_order(row):
    base = row.split(" [")[0]
    return (list(ROWS).index(base) if base in ROWS else len(ROWS), " [" in row, row)


def comparable(row, steps):
    """Whether a row's scores compare with the paper's numbers, and if not, why."""
    if steps is None:
        return "no: a likelihood row (the paper reports generation)"
    if " [" in row:
        return "no: a faster sampler"
    if not any(row in b.paper for b in BENCHMARKS.values()):
        return "no: the paper has no numbers for it"
    return "yes" if steps == PAPER_STEPS else f"no: the paper's numbers are at {PAPER_STEPS} steps"


def _steps(steps):
    return "-" if steps is None else steps  # a likelihood row has none


def markdown(cells):
    titles = [b.title for b in BENCHMARKS.values()]
    lines = ["| row | steps | " + " | ".join(titles) + " | vs paper |", "| --- | --- |" + " --- |" * (len(titles) + 1)]
    for row, steps in sorted({(r, s) for r, s, _ in cells}, key=lambda rs: (row_order(rs[0]), rs[1])):
        shown = [cells.get((row, steps, name)) for name in BENCHMARKS]
        shown = ["-" if c is None else f"{c['score']:.1f}" if c["score"] is not None else c["status"] for c in shown]
        lines.append(f"| {row} | {_steps(steps)} | " + " | ".join(shown) + f" | {comparable(row, steps)} |")
    for row in ROWS:
        if any(row in b.paper for b in BENCHMARKS.values()):
            shown = [b.paper.get(row, "-") for b in BENCHMARKS.values()]
            lines.append(f"| {row} (paper) | {PAPER_STEPS} | " + " | ".join(shown) + " | the paper's |")
    sources = ["| row | steps | benchmark | score | evaluation | checkpoint |", "| --- | --- | --- | --- | --- | --- |"]
    for (row, steps, name), c in sorted(cells.items(), key=lambda kv: (row_order(kv[0][0]), kv[0][1],
                                                                        list(BENCHMARKS).index(kv[0][2]))):
        score = f"{c['score']:.1f}" if c["score"] is not None else c["status"]
        sources.append(f"| {row} | {_steps(steps)} | {BENCHMARKS[name].title} | {score} | {c['evaluation']} | "
                       f"{c['checkpoint']} |")
    notes = []
    for row in sorted({r for r, _, _ in cells}, key=row_order):
        ckpts = sorted({c["checkpoint"] for (r, _, _), c in cells.items() if r == row and c["score"] is not None})
        if len(ckpts) > 1:
            notes.append(f"- {row}: its scores come from {len(ckpts)} checkpoints ({', '.join(ckpts)}); "
                         "see where each came from below.")
    return (f"Scores (%) of the latest evaluation of each row, step count and benchmark, and the paper's at "
            f"{PAPER_STEPS} steps (gen length 256, block 256; ~: read off the paper's radar chart). \"failed\": the "
            "latest evaluation produced no score (a task failed; see its work folder's logs/); \"no summary\": it "
            "did not finish; \"-\": not evaluated. A row with [mode] was sampled with a faster, approximate mode "
            "(block length, KV cache, confidence threshold); a row with [ll-ESTIMATOR] is a likelihood row "
            "(likelihood.py's estimator in PPL or LL mode; no steps). Only rows marked \"yes\" compare with the "
            "paper's numbers.\n\n" + "\n".join(lines) + "\n" + ("\n" + "\n".join(notes) + "\n" if notes else "")
            + "\nWhere each cell came from (the evaluation: its work folder under this folder):\n\n"
            + "\n".join(sources) + "\n")


def plot(cells, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(BENCHMARKS), figsize=(4 * len(BENCHMARKS), 3.6), squeeze=False)
    rows = sorted({row for row, _, _ in cells}, key=row_order)
    colors = {row: f"C{i}" for i, row in enumerate(rows)}
    for ax, (name, bench) in zip(axes[0], BENCHMARKS.items()):
        for row in rows:
            points = sorted((s, c["score"]) for (r, s, b), c in cells.items()
                            if r == row and b == name and c["score"] is not None)
            if points and points[0][0] is None:  # a likelihood row: one score, at no step count
                ax.axhline(points[0][1], linestyle="--", color=colors[row], label=row)
            elif points:
                ax.plot(*zip(*points), marker="o", color=colors[row], label=row)
            if row in bench.paper:
                ax.plot([PAPER_STEPS], [float(bench.paper[row].lstrip("~"))], marker="*", markersize=12,
                        linestyle="", color=colors[row], label=f"{row} (paper)")
        ax.set_xscale("log", base=2)
        ax.set_xticks(STEPS, [str(s) for s in STEPS])
        ax.set_xlim(min(STEPS) / 1.23, max(STEPS) * 1.23)
        ax.set_title(bench.title)
        ax.set_xlabel("steps")
        ax.set_ylabel("score (%)")
    legend = {}  # one entry per line over all panels
    for ax in axes[0]:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    fig.tight_layout(rect=(0, 0, 0.88, 1))
    fig.legend(legend.values(), legend.keys(), loc="center right", fontsize=8)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir", help="folder holding OpenCompass work folders (e.g. outputs/opencompass)")
    ap.add_argument("--check", action="store_true",
                    help="only check the latest evaluation under RUN_DIR: exit 1 naming each task without a result")
    args = ap.parse_args(argv)
    if not os.path.isdir(args.run_dir):
        raise SystemExit(f"RUN_DIR {args.run_dir!r} is not a folder")
    if args.check:
        return check(args.run_dir)
    cells = read_cells(args.run_dir)
    table = markdown(cells)
    with open(os.path.join(args.run_dir, "report.md"), "w") as f:
        f.write(table)
    plot(cells, os.path.join(args.run_dir, "report.png"))
    print(table + f"\nwrote {os.path.join(args.run_dir, 'report.md')} and report.png")


if __name__ == "__main__":
    main()
