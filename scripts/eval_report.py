"""Table and plot of OpenCompass evaluations beside the paper's numbers, with where each number
came from; and the check that every task of an evaluation gave a result.

RUN_DIR holds OpenCompass work folders (e.g. outputs/opencompass, where scripts/eval_opencompass.sh
writes one per benchmark). Each launch of OpenCompass is one evaluation, <work folder>/<timestamp>/:
the config it ran (configs/<time>_<pid>.py: every model's abbr and checkpoint path), its results/ and
its summary/. For each (row, steps, benchmark) the latest evaluation that ran it decides the cell:
its score, or "failed" (it gave no score), or "unfinished" (it has no summary: killed, or still
running); an older evaluation's score never stands in for it. Writes RUN_DIR/report.md (the scores
per row and step count, the paper's 32-step numbers and which scores are comparable with them, and
the checkpoint and evaluation of every cell) and RUN_DIR/report.png (score against steps, one line
per row, one panel per benchmark, the paper's numbers as stars at 32 steps).

With --check, writes nothing: exits 1 naming every task (model/dataset) of the latest evaluation
in each work folder under RUN_DIR that gave no result. OpenCompass exits 0 when a task failed:
scripts/eval_opencompass.sh and scripts/eval_tiny.sh run this after it.

usage: python scripts/eval_report.py RUN_DIR
       python scripts/eval_report.py --check RUN_DIR
"""
import argparse
import csv
import glob
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from opencompass_configs.benchmarks import BENCHMARKS, PAPER_STEPS, ROWS, STEPS, parse_abbr  # noqa: E402

CONFIG_NAME = re.compile(r"\d{8}_\d{6}_\d+\.py")  # configs/<launch time>_<pid>.py, as OpenCompass names it


def evaluation_configs(root):
    """{evaluation folder: its latest config} for every OpenCompass evaluation under root, oldest
    launch first (a folder reused with -r holds one config per launch)."""
    configs = {}
    for path in sorted(glob.glob(os.path.join(root, "**", "configs", "*.py"), recursive=True)):
        if CONFIG_NAME.fullmatch(os.path.basename(path)):
            configs[os.path.dirname(os.path.dirname(path))] = path  # sorted: the latest launch wins
    return dict(sorted(configs.items(), key=lambda item: (os.path.basename(item[1]), item[0])))


def read_evaluation(folder, config):
    """What one evaluation ran and what it gave: models {abbr: checkpoint path}, datasets [abbr],
    groups [summary group names], summary {(dataset, metric): {model abbr: value}} (None: no summary)."""
    from mmengine.config import Config

    cfg = Config.fromfile(config, format_python_code=False)
    summaries = sorted(glob.glob(os.path.join(folder, "summary", "summary_*.csv")))
    summary = None
    if summaries:
        summary = {}
        with open(summaries[-1]) as f:
            for line in csv.DictReader(f):
                summary[line["dataset"], line["metric"]] = line
    return dict(models={m["abbr"]: m["path"] for m in cfg.get("models", [])},
                datasets=[d["abbr"] for d in cfg.get("datasets", [])],
                groups=[g["name"] for g in cfg.get("summarizer", {}).get("summary_groups", [])],
                summary=summary)


def failed_tasks(root):
    """'folder: model/dataset: what is wrong' for every task of the latest evaluation in each work
    folder under root that gave no result (no results/MODEL/DATASET.json, or one holding an error),
    and for such an evaluation without a summary."""
    latest = {}
    for folder, config in evaluation_configs(root).items():
        latest[os.path.dirname(os.path.abspath(folder))] = (folder, config)  # oldest first: the latest wins
    if not latest:
        return [f"{root}: no OpenCompass evaluation (<timestamp>/configs/) under it"]
    problems = []
    for folder, config in latest.values():
        evaluation = read_evaluation(folder, config)
        for model in evaluation["models"]:
            for dataset in evaluation["datasets"]:
                result = os.path.join(folder, "results", model, f"{dataset}.json")
                if not os.path.exists(result):
                    problems.append(f"{folder}: {model}/{dataset}: no result (see {os.path.join(folder, 'logs')})")
                    continue
                with open(result) as f:
                    error = json.load(f).get("error")
                if error is not None:
                    problems.append(f"{folder}: {model}/{dataset}: {error}")
        if evaluation["summary"] is None:
            problems.append(f"{folder}: no summary (OpenCompass stopped before writing summary/)")
    return problems


def read_cells(run_dir):
    """{(row, mode, steps, benchmark): cell} from the latest evaluation of each under run_dir; a cell is
    {score: float or None, status: "ok", "failed" or "unfinished", checkpoint, evaluation}."""
    configs = evaluation_configs(run_dir)
    for summary in glob.glob(os.path.join(run_dir, "**", "summary", "summary_*.csv"), recursive=True):
        folder = os.path.dirname(os.path.dirname(summary))
        if folder not in configs:
            raise SystemExit(f"RUN_DIR {run_dir!r}: {folder} has an OpenCompass summary but no configs/ (the config "
                             "OpenCompass ran, written beside it): which checkpoint its scores came from is unknown")
    if not configs:
        raise SystemExit(f"RUN_DIR {run_dir!r}: no OpenCompass summary or evaluation (<timestamp>/configs/) under it; "
                         "run scripts/eval_opencompass.sh first")
    cells = {}
    for folder, config in configs.items():  # oldest first: a later evaluation replaces a cell, score or not
        evaluation = read_evaluation(folder, config)
        ran = evaluation["datasets"] + evaluation["groups"]
        for abbr, checkpoint in evaluation["models"].items():
            parsed = parse_abbr(abbr)
            if parsed is None:
                continue
            row, steps, mode = parsed
            for name, bench in BENCHMARKS.items():
                if bench["headline"][0] not in ran:
                    continue
                if evaluation["summary"] is None:
                    score, status = None, "unfinished"
                else:
                    value = evaluation["summary"].get(bench["headline"], {}).get(abbr)
                    score = float(value) if value and re.fullmatch(r"-?\d+(\.\d+)?", value) else None
                    status = "ok" if score is not None else "failed"
                cells[row, mode, steps, name] = dict(score=score, status=status, checkpoint=checkpoint,
                                                     evaluation=os.path.relpath(folder, run_dir))
    if not cells:
        raise SystemExit(f"RUN_DIR {run_dir!r}: its evaluations hold none of {', '.join(BENCHMARKS)} for models named "
                         "ROW-sSTEPS (opencompass_configs/benchmarks.py)")
    return cells


def label(row, mode):
    # A row sampled faster than the paper's protocol (-b32, -dual, -t0.9) keeps its mode in its name:
    # it is never merged with, or compared as, a paper row.
    return f"{row} [{mode}]" if mode else row


def lines_of(cells):
    """[(row, mode, steps)] of the table, in the paper's row order, paper-protocol rows first."""
    return sorted({key[:3] for key in cells}, key=lambda k: (list(ROWS).index(k[0]), k[1] != "", k[1], k[2]))


def comparable(row, mode, steps):
    """Whether a row's scores can stand beside the paper's: its exact sampler, at its step count, a row it reports."""
    return mode == "" and steps == PAPER_STEPS and any(row in bench["paper"] for bench in BENCHMARKS.values())


def markdown(cells):
    def text(cell):
        if cell is None:
            return "-"
        return f"{cell['score']:.1f}" if cell["status"] == "ok" else cell["status"]

    table = ["| row | steps | " + " | ".join(b["title"] for b in BENCHMARKS.values()) + " |",
             "| --- | --- |" + " --- |" * len(BENCHMARKS)]
    for row, mode, steps in lines_of(cells):
        table.append(f"| {label(row, mode)} | {steps} | " +
                     " | ".join(text(cells.get((row, mode, steps, name))) for name in BENCHMARKS) + " |")
    for row in ROWS:
        if any(row in b["paper"] for b in BENCHMARKS.values()):
            table.append(f"| {row} (paper) | {PAPER_STEPS} | " +
                         " | ".join(b["paper"].get(row, "-") for b in BENCHMARKS.values()) + " |")
    same = [f"{row} at {steps} steps" for row, mode, steps in lines_of(cells) if comparable(row, mode, steps)]
    notes = [f"Comparable with the paper's numbers: {', '.join(same) or 'none of these scores'} (the paper's "
             f"sampler at {PAPER_STEPS} steps, in a row the paper reports). Not comparable: other step counts, rows "
             "the paper does not report, and rows with a [mode] (a faster, approximate sampler: block length, KV "
             "cache, confidence threshold)."]
    for row, mode, steps in lines_of(cells):
        checkpoints = sorted({c["checkpoint"] for k, c in cells.items() if k[:3] == (row, mode, steps)})
        if len(checkpoints) > 1:
            notes.append(f"Warning: {label(row, mode)} at {steps} steps: its scores come from {len(checkpoints)} "
                         f"checkpoints ({', '.join(checkpoints)}).")
    where = ["| row | steps | benchmark | score | checkpoint | evaluation |", "| --- | --- | --- | --- | --- | --- |"]
    for row, mode, steps in lines_of(cells):
        for name, bench in BENCHMARKS.items():
            cell = cells.get((row, mode, steps, name))
            if cell is not None:
                where.append(f"| {label(row, mode)} | {steps} | {bench['title']} | {text(cell)} | {cell['checkpoint']} "
                             f"| {cell['evaluation']} |")
    return ("Scores (%) of the latest evaluation of each row, step count and benchmark, and the paper's at "
            f"{PAPER_STEPS} steps (gen length 256, block 256; ~: read off the paper's radar chart). failed: the "
            "latest evaluation gave no score (see its logs/); unfinished: it has no summary (killed, or still "
            "running); -: not evaluated.\n\n" + "\n".join(table) + "\n\n" + "\n\n".join(notes) +
            "\n\n## Where each score comes from\n\n" + "\n".join(where) + "\n")


def plot(cells, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(BENCHMARKS), figsize=(4 * len(BENCHMARKS), 3.6), squeeze=False)
    rows = list(dict.fromkeys((row, mode) for row, mode, _ in lines_of(cells)))
    colors = {row: f"C{i}" for i, row in enumerate(rows)}
    for ax, (name, bench) in zip(axes[0], BENCHMARKS.items()):
        for row, mode in rows:
            points = sorted((s, c["score"]) for (r, m, s, b), c in cells.items()
                            if (r, m, b) == (row, mode, name) and c["status"] == "ok")
            if points:
                ax.plot(*zip(*points), marker="o", color=colors[row, mode], label=label(row, mode))
            if not mode and row in bench["paper"]:
                ax.plot([PAPER_STEPS], [float(bench["paper"][row].lstrip("~"))], marker="*", markersize=12,
                        linestyle="", color=colors[row, mode], label=f"{row} (paper)")
        ax.set_xscale("log", base=2)
        ax.set_xticks(STEPS, [str(s) for s in STEPS])
        ax.set_xlim(STEPS[0] * 0.8, STEPS[-1] * 1.25)
        ax.set_title(bench["title"])
        ax.set_xlabel("steps")
        ax.set_ylabel("score (%)")
    legend = {}  # one entry per line over all panels
    for ax in axes[0]:
        for handle, text in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(text, handle)
    fig.tight_layout(rect=(0, 0, 0.88, 1))
    fig.legend(legend.values(), legend.keys(), loc="center right", fontsize=8)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir", help="folder holding OpenCompass work folders (e.g. outputs/opencompass)")
    ap.add_argument("--check", action="store_true",
                    help="write nothing; exit 1 naming every task of the latest evaluation in each work folder "
                         "that gave no result")
    args = ap.parse_args(argv)
    if not os.path.isdir(args.run_dir):
        raise SystemExit(f"RUN_DIR {args.run_dir!r} is not a folder")
    if args.check:
        problems = failed_tasks(args.run_dir)
        if problems:
            raise SystemExit("\n".join(f"failed: {p}" for p in problems))
        print(f"every task of the latest evaluation in {args.run_dir} gave a result")
        return
    cells = read_cells(args.run_dir)
    table = markdown(cells)
    with open(os.path.join(args.run_dir, "report.md"), "w") as f:
        f.write(table)
    plot(cells, os.path.join(args.run_dir, "report.png"))
    print(table + f"\nwrote {os.path.join(args.run_dir, 'report.md')} and report.png")


if __name__ == "__main__":
    main()
