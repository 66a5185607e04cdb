"""Table of the likelihood runs of scripts/eval_lm_eval.sh beside LLaDA-8B-Base's published numbers,
each number with its settings and the checkpoint it came from.

A run is a folder RUN_DIR/ROW/TASK/cfgCFG/<time>/ made by eval_lm_eval.sh: command.sh, lm_eval.log,
and lm-eval's results_<date>.json once the run finished, or `failed` when it exited non-zero. The
latest run of a (row, task, cfg) decides its cell: its score, "failed", or "unfinished" (no results:
still running, or killed). An older score is never shown in its place.

A score is comparable with LLaDA's when it was measured as LLaDA measured its number: LLaDA's masked
estimator, the task's few-shot count, mc_num, batch and seed of LLaDA's script at a cfg LLaDA
published a number for (its script's cfg, or 0: the paper's Table 1), on every item (no --limit).
The xdlm-bound row scores with the model's own XDLM bound: never comparable, labelled as such.
Writes RUN_DIR/report.md and prints it.

usage: python scripts/lm_eval_report.py [RUN_DIR]   (default outputs/lm_eval)
"""
import argparse
import glob
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from opencompass_configs.benchmarks import LIKELIHOOD_ROWS, LIKELIHOOD_TASKS, likelihood_settings  # noqa: E402

SETTINGS = ("num_fewshot", "mc_num", "batch_size", "seed")  # compared with LLaDA's, besides estimator and cfg


def latest_runs(run_dir):
    """{(row, task, cfg): (time, run folder)} of the latest run of each."""
    latest = {}
    for folder in glob.glob(os.path.join(glob.escape(run_dir), "*", "*", "cfg*", "*")):
        row, task, cfg_name, time = os.path.normpath(folder).split(os.sep)[-4:]
        try:
            cfg = float(cfg_name[len("cfg"):])
        except ValueError:
            raise SystemExit(f"{folder}: not a run of eval_lm_eval.sh (ROW/TASK/cfgCFG/<time>): move it out of "
                             "RUN_DIR") from None
        if os.path.isdir(folder) and ((row, task, cfg) not in latest or latest[row, task, cfg][0] < time):
            latest[row, task, cfg] = (time, folder)
    if not latest:
        raise SystemExit(f"{run_dir!r}: no run of eval_lm_eval.sh under it (ROW/TASK/cfgCFG/<time>/); run "
                         "scripts/eval_lm_eval.sh first")
    return latest


def read_cell(run_dir, task, cfg, folder):
    """The run's cell: status ("ok", "failed", "unfinished"), and from lm-eval's results file the
    score (%), its standard error over items, the metric, the settings and the checkpoint."""
    cell = dict(run=os.path.relpath(folder, run_dir), status="unfinished", score=None)
    results = sorted(glob.glob(os.path.join(glob.escape(folder), "results_*.json")))
    if not results:
        cell["status"] = "failed" if os.path.exists(os.path.join(folder, "failed")) else "unfinished"
        return cell
    with open(results[-1]) as f:
        data = json.load(f)
    config, scores = data["config"], data["results"].get(task, {})
    model_args = config["model_args"]
    if float(model_args.get("cfg", 0)) != cfg:
        raise SystemExit(f"{results[-1]}: its model_args say cfg={model_args.get('cfg', 0)}, its folder cfg{cfg:g}: "
                         "move it out of RUN_DIR")
    metric = LIKELIHOOD_TASKS[task].metric if task in LIKELIHOOD_TASKS else next(
        (key.split(",")[0] for key in scores if key.endswith(",none") and "_stderr" not in key), "acc")
    value, stderr = scores.get(f"{metric},none"), scores.get(f"{metric}_stderr,none")
    cell.update(status="ok" if isinstance(value, (int, float)) else f"no {metric} in its results",
                score=100 * value if isinstance(value, (int, float)) else None,
                stderr=100 * stderr if isinstance(stderr, (int, float)) else None, metric=metric,
                estimator=model_args.get("estimator", "?"), k=model_args.get("k", 0), cfg=cfg,
                num_fewshot=data["n-shot"].get(task), mc_num=model_args.get("mc_num"),
                batch_size=int(config["batch_size"]), seed=model_args.get("seed"), limit=config.get("limit"),
                checkpoint=model_args.get("pretrained", "?"))
    return cell


def read_cells(run_dir):
    return {key: read_cell(run_dir, key[1], key[2], folder) for key, (_, folder) in latest_runs(run_dir).items()}


def published(task, cfg):
    """LLaDA-8B-Base's number for the task at this cfg, or None."""
    return LIKELIHOOD_TASKS[task].published.get(cfg) if task in LIKELIHOOD_TASKS else None


def comparable(task, cell):
    """"yes" when the cell was measured as LLaDA measured its number, else "no: why"."""
    if task not in LIKELIHOOD_TASKS:
        return "no: not one of LLaDA's tasks"
    if cell["estimator"] != "masked":
        return f"no: the model's own XDLM bound (k={cell['k']}), not LLaDA's estimator"
    if published(task, cell["cfg"]) is None:
        return f"no: LLaDA publishes no number at cfg {cell['cfg']:g}"
    llada = likelihood_settings(task, "llada")
    why = [f"{name} {cell[name]} (LLaDA's {llada[name]})" for name in SETTINGS if cell[name] != llada[name]]
    why += [f"--limit {cell['limit']:g} (a subset)"] if cell["limit"] else []
    return "no: " + ", ".join(why) if why else "yes"


def order(row):
    return (list(LIKELIHOOD_ROWS).index(row) if row in LIKELIHOOD_ROWS else len(LIKELIHOOD_ROWS), row)


def shown(cell, task, with_error=False):
    if cell is None:
        return "-"
    if cell["score"] is None:
        return cell["status"]
    text = f"{cell['score']:.1f}" + (f" ± {cell['stderr']:.1f}" if with_error and cell["stderr"] is not None else "")
    return text + ("" if with_error or comparable(task, cell) == "yes" else " †")


def markdown(cells):
    tasks = sorted({t for _, t, _ in cells}, key=lambda t: (list(LIKELIHOOD_TASKS).index(t)
                                                            if t in LIKELIHOOD_TASKS else len(LIKELIHOOD_TASKS), t))
    titles = [LIKELIHOOD_TASKS[t].title if t in LIKELIHOOD_TASKS else t for t in tasks]
    modes = {"llada": "LLaDA's cfg", "none": "no CFG"}
    lines = ["| row | cfg | " + " | ".join(titles) + " |", "| --- | --- |" + " --- |" * len(tasks)]
    guided = [t for t in tasks if likelihood_settings(t, "llada")["cfg"] != 0]  # where the two settings differ
    for row in sorted({r for r, _, _ in cells}, key=order):
        ran = {mode: any((row, t, likelihood_settings(t, mode)["cfg"]) in cells for t in guided) for mode in modes}
        for mode, label in modes.items():
            # a line per setting the row ran; tasks without CFG in LLaDA's script are the same cell in both
            if ran[mode] or (mode == "llada" and not ran["none"]):
                line = [cells.get((row, t, likelihood_settings(t, mode)["cfg"])) for t in tasks]
                lines.append(f"| {row} | {label} | " + " | ".join(shown(c, t) for c, t in zip(line, tasks)) + " |")
    for mode, label in (("llada", "w/ CFG: LLaDA's cfg"), ("none", "Table 1: no CFG")):
        numbers = [published(t, likelihood_settings(t, mode)["cfg"]) for t in tasks]
        lines.append(f"| LLaDA-8B-Base, published | {label} | "
                     + " | ".join("-" if n is None else f"{n:.1f}" for n in numbers) + " |")
    details = ["| row | task | metric | score ± se | estimator | cfg | shots | mc_num | batch | LLaDA's | comparable "
               "| checkpoint | run |", "| --- " * 13 + "|"]
    for (row, task, cfg), c in sorted(cells.items(), key=lambda kv: (order(kv[0][0]), tasks.index(kv[0][1]),
                                                                      kv[0][2])):
        llada = published(task, cfg)
        if c["score"] is None and "estimator" not in c:
            details.append(f"| {row} | {task} | | {c['status']} | | {cfg:g} | | | | "
                           f"{'-' if llada is None else f'{llada:.1f}'} | | | {c['run']} |")
            continue
        estimator = c["estimator"] + (f" (k={c['k']})" if c["estimator"] == "xdlm" else "")
        details.append(f"| {row} | {task} | {c['metric']} | {shown(c, task, with_error=True)} | {estimator} | "
                       f"{cfg:g} | {c['num_fewshot']} | {c['mc_num']} | {c['batch_size']} | "
                       f"{'-' if llada is None else f'{llada:.1f}'} | {comparable(task, c)} | {c['checkpoint']} | "
                       f"{c['run']} |")
    notes = []
    for row in sorted({r for r, _, _ in cells}, key=order):
        ckpts = sorted({c["checkpoint"] for (r, _, _), c in cells.items() if r == row and c["score"] is not None})
        if len(ckpts) > 1:
            notes.append(f"- {row}: its scores come from {len(ckpts)} checkpoints ({', '.join(ckpts)}).")
    return ("Likelihood benchmarks (%): the latest run of each row, task and cfg, beside LLaDA-8B-Base's "
            "published numbers (LLaDA's EVAL.md; Table 1 of its paper is without CFG). Rows: base, mdm and xdlm "
            "score with LLaDA's masked estimator; xdlm-bound with the model's own XDLM bound (k = 0.1), which is "
            "not comparable with LLaDA's numbers. †: not comparable (the details say why). \"failed\": the run "
            "exited non-zero (see its lm_eval.log); \"unfinished\": no results (running, or killed); \"-\": not "
            "run.\n\n" + "\n".join(lines) + "\n" + ("\n" + "\n".join(notes) + "\n" if notes else "")
            + "\nEach cell (score ± lm-eval's standard error over items; LLaDA's: its number at this cfg; run: the "
            "run's folder under this folder):\n\n" + "\n".join(details) + "\n")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir", nargs="?", default="outputs/lm_eval",
                    help="eval_lm_eval.sh's LM_EVAL_WORK_DIR (default outputs/lm_eval)")
    args = ap.parse_args(argv)
    if not os.path.isdir(args.run_dir):
        raise SystemExit(f"RUN_DIR {args.run_dir!r} is not a folder")
    table = markdown(read_cells(args.run_dir))
    with open(os.path.join(args.run_dir, "report.md"), "w") as f:
        f.write(table)
    print(table + f"\nwrote {os.path.join(args.run_dir, 'report.md')}")


if __name__ == "__main__":
    main()
