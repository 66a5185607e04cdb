"""Table and plot of an evaluation run beside the paper's numbers.

Reads every OpenCompass summary CSV under RUN_DIR (e.g. outputs/opencompass, where
scripts/eval_opencompass.sh writes one work folder per benchmark; runs of single rows or step
counts are merged, a later run's value winning) and writes RUN_DIR/report.md (score per row and
step count, and the paper's 32-step numbers) and RUN_DIR/report.png (score against steps, one line
per row, one panel per benchmark, the paper's numbers as stars at 32 steps).

usage: python scripts/eval_report.py RUN_DIR
"""
import argparse
import csv
import glob
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from opencompass_configs.benchmarks import BENCHMARKS, PAPER_STEPS, ROWS, STEPS, parse_abbr  # noqa: E402

TITLES = [b.title for b in BENCHMARKS.values()]


def read_scores(run_dir):
    """{(row, steps): {benchmark: score}} from all summary CSVs under run_dir, oldest first."""
    files = glob.glob(os.path.join(run_dir, "**", "summary", "summary_*.csv"), recursive=True)
    if not files:
        raise SystemExit(f"RUN_DIR {run_dir!r}: no OpenCompass summary (summary/summary_*.csv) under it; "
                         "run scripts/eval_opencompass.sh first")
    wanted = {(b.dataset, b.metric): b.title for b in BENCHMARKS.values()}
    scores = {}
    for path in sorted(files, key=lambda p: os.path.basename(p)):  # summary_<timestamp>.csv: oldest first
        with open(path) as f:
            for line in csv.DictReader(f):
                bench = wanted.get((line["dataset"], line["metric"]))
                if bench is None:
                    continue
                for abbr, value in line.items():
                    found = parse_abbr(abbr)
                    if found and value not in (None, "", "-"):
                        row, steps, mode = found
                        # A row sampled faster than the paper's protocol (models.py: -b32, -dual, -t0.9)
                        # keeps its mode in its name: it is never merged with, or compared as, a paper row.
                        row = f"{row} [{mode}]" if mode else row
                        scores.setdefault((row, steps), {})[bench] = float(value)
    if not scores:
        raise SystemExit(f"RUN_DIR {run_dir!r}: its summaries hold none of {', '.join(TITLES)} for models "
                         "named ROW-sSTEPS (opencompass_configs/models.py)")
    return scores


def row_order(row):
    base = row.split(" [")[0]
    return (list(ROWS).index(base) if base in ROWS else len(ROWS), " [" in row, row)


def markdown(scores):
    lines = ["| row | steps | " + " | ".join(TITLES) + " |", "| --- | --- |" + " --- |" * len(TITLES)]
    for row, steps in sorted(scores, key=lambda rs: (row_order(rs[0]), rs[1])):
        cells = [f"{scores[row, steps][b]:.1f}" if b in scores[row, steps] else "-" for b in TITLES]
        lines.append(f"| {row} | {steps} | " + " | ".join(cells) + " |")
    for row in ROWS:
        if any(row in b.paper for b in BENCHMARKS.values()):
            cells = [b.paper.get(row, "-") for b in BENCHMARKS.values()]
            lines.append(f"| {row} (paper) | {PAPER_STEPS} | " + " | ".join(cells) + " |")
    return (f"Scores (%) of this run, and the paper's at {PAPER_STEPS} steps (gen length 256, block 256; "
            "~: read off the paper's radar chart). A row with [mode] was sampled with a faster, approximate "
            "mode (block length, KV cache, confidence threshold): not comparable with the paper's numbers."
            "\n\n" + "\n".join(lines) + "\n")


def plot(scores, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(BENCHMARKS), figsize=(4 * len(BENCHMARKS), 3.6), squeeze=False)
    paper = {b.title: b.paper for b in BENCHMARKS.values()}
    rows = sorted({row for row, _ in scores}, key=row_order)
    colors = {row: f"C{i}" for i, row in enumerate(rows)}
    for ax, bench in zip(axes[0], TITLES):
        for row in rows:
            points = sorted((s, v[bench]) for (r, s), v in scores.items() if r == row and bench in v)
            if points:
                ax.plot(*zip(*points), marker="o", color=colors[row], label=row)
            if row in paper[bench]:
                ax.plot([PAPER_STEPS], [float(paper[bench][row].lstrip("~"))], marker="*", markersize=12, linestyle="",
                        color=colors[row], label=f"{row} (paper)")
        ax.set_xscale("log", base=2)
        ax.set_xticks(STEPS, [str(s) for s in STEPS])
        ax.set_xlim(min(STEPS) / 1.23, max(STEPS) * 1.23)
        ax.set_title(bench)
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir", help="folder holding OpenCompass work folders (e.g. outputs/opencompass)")
    args = ap.parse_args()
    if not os.path.isdir(args.run_dir):
        raise SystemExit(f"RUN_DIR {args.run_dir!r} is not a folder")
    scores = read_scores(args.run_dir)
    table = markdown(scores)
    with open(os.path.join(args.run_dir, "report.md"), "w") as f:
        f.write(table)
    plot(scores, os.path.join(args.run_dir, "report.png"))
    print(table + f"\nwrote {os.path.join(args.run_dir, 'report.md')} and report.png")


if __name__ == "__main__":
    main()
