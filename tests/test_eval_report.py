"""scripts/eval_report.py on hand-made OpenCompass work folders (laid out as OpenCompass 0.5.4 writes
them: <work>/<timestamp>/configs/<timestamp>_<pid>.py with the models and datasets it ran, results/
MODEL/DATASET.json, summary/summary_<timestamp>.csv): one markdown table beside the paper's numbers,
the checkpoint and evaluation of every cell, the latest evaluation deciding each cell, and --check
naming the tasks that gave no result."""
import json
import os

from helpers import run_main
from opencompass_configs.benchmarks import BENCHMARKS


def dump(value):
    """A value as OpenCompass's dumped configs write it (dicts as dict(key=value, ...))."""
    if isinstance(value, dict):
        return "dict(" + ", ".join(f"{k}={dump(v)}" for k, v in value.items()) + ")"
    if isinstance(value, list):
        return "[" + ", ".join(dump(v) for v in value) + "]"
    return repr(value)


def write_evaluation(work, stamp, models, datasets, summary=None, results=None, groups=()):
    """One evaluation <work>/<stamp>/: the config it ran (models {abbr: checkpoint path}, dataset abbrs,
    summary groups {name: subsets}), summary rows ([dataset, metric, value per model]; None: no summary)
    and result files ({(model, dataset): result dict}; default: one for every task)."""
    folder = os.path.join(work, stamp)
    os.makedirs(os.path.join(folder, "configs"))
    with open(os.path.join(folder, "configs", f"{stamp}_4242.py"), "w") as f:
        f.write(f"datasets={dump([dict(abbr=d, type='opencompass.datasets.CustomDataset') for d in datasets])}\n")
        wrapper = "opencompass_llada.DiffusionLM"
        f.write(f"models={dump([dict(abbr=a, path=p, type=wrapper) for a, p in models.items()])}\n")
        if groups:
            f.write(f"summarizer={dump(dict(summary_groups=[dict(name=n, subsets=s) for n, s in groups.items()]))}\n")
        f.write(f"work_dir={folder!r}\n")
    if results is None:
        results = {(m, d): {"score": 1.0} for m in models for d in datasets}
    for (model, dataset), result in results.items():
        os.makedirs(os.path.join(folder, "results", model), exist_ok=True)
        with open(os.path.join(folder, "results", model, f"{dataset}.json"), "w") as f:
            json.dump(result, f)
    if summary is not None:
        os.makedirs(os.path.join(folder, "summary"))
        with open(os.path.join(folder, "summary", f"summary_{stamp}.csv"), "w") as f:
            f.write(",".join(["dataset", "version", "metric", "mode", *models]) + "\n")
            for dataset, metric, *values in summary:
                f.write(",".join([dataset, "abc123", metric, "gen", *values]) + "\n")
    return folder


def report(run_dir, capsys, *flags):
    """scripts/eval_report.py [FLAGS] RUN_DIR in this process: (exit code, stdout, stderr)."""
    import eval_report

    return run_main(eval_report.main, [*flags, str(run_dir)], capsys)


def line(row, steps, **cells):
    """A line of the score table: `cells` by benchmark name, "-" under the table's other benchmarks."""
    assert set(cells) <= set(BENCHMARKS)
    return f"| {row} | {steps} | " + " | ".join(cells.get(name, "-") for name in BENCHMARKS) + " |"


def table_lines(run, capsys):
    code, _, err = report(run, capsys)
    assert code == 0, err
    return (run / "report.md").read_text().splitlines()


def test_report_merges_runs_and_places_each_score(tmp_path, capsys):
    run = tmp_path / "opencompass"
    # MBPP: two runs, the later one redoing base-k0 at 32 steps; BBH's average and a task row
    write_evaluation(run / "mbpp", "20260101_000000", {"base-k0-s32": "/ckpt/base", "xdlm-k0.1-s32": "/ckpt/xdlm"},
                     ["mbpp"], [["mbpp", "score", "5.00", "14.20"], ["mbpp", "pass", "25", "71"]])
    write_evaluation(run / "mbpp", "20260102_000000", {"base-k0-s32": "/ckpt/base", "base-k0-s64": "/ckpt/base"},
                     ["mbpp"], [["mbpp", "score", "6.80", "-"]])
    write_evaluation(run / "bbh", "20260101_000000", {"base-k0-s32": "/ckpt/base", "base-k0-s256": "/ckpt/base"},
                     ["bbh-navigate"], [["bbh-navigate", "score", "50.00", "60.00"],
                                        ["bbh", "naive_average", "5.50", "7.25"]],
                     groups={"bbh": ["bbh-navigate"]})
    lines = table_lines(run, capsys)
    assert any(x.startswith("| row | steps | GSM8K | MATH | HumanEval | MBPP | BBH |") for x in lines)
    assert line("base-k0", 32, mbpp="6.8", bbh="5.5") in lines       # the later MBPP run wins
    assert line("base-k0", 256, bbh="7.2") in lines
    assert line("xdlm-k0.1", 32, mbpp="14.2") in lines
    assert line("base-k0", 64, mbpp="failed") in lines  # run, and no score: said, not left out
    assert line("xdlm-k0.1 (paper)", 32, gsm8k="~43", math="~30", humaneval="~4.8", mbpp="15.0", bbh="~11") in lines
    assert line("base-k0 (paper)", 32, gsm8k="42.7", math="24.5", humaneval="4.8", mbpp="6.8", bbh="5.5") in lines
    assert (run / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_refuses_a_folder_without_evaluations_or_a_summary_without_its_config(tmp_path, capsys):
    code, _, err = report(tmp_path, capsys)
    assert code != 0 and "no OpenCompass summary or evaluation" in err
    folder = write_evaluation(tmp_path / "mbpp", "20260101_000000", {"base-k0-s32": "/ckpt/base"}, ["mbpp"],
                              [["mbpp", "score", "5.00"]])
    os.remove(os.path.join(folder, "configs", "20260101_000000_4242.py"))
    code, _, err = report(tmp_path, capsys)
    assert code != 0 and f"{folder} has an OpenCompass summary but no configs/" in err


def test_an_accelerated_row_is_never_merged_with_a_paper_protocol_row(tmp_path, capsys):
    run = tmp_path / "opencompass"
    write_evaluation(run / "mbpp", "20260101_000000",
                     {"xdlm-k0.1-s32": "/ckpt/xdlm", "xdlm-k0.1-s32-b32-dual-t0.9": "/ckpt/xdlm"},
                     ["mbpp"], [["mbpp", "score", "14.20", "12.00"]])
    lines = table_lines(run, capsys)
    assert line("xdlm-k0.1", 32, mbpp="14.2") in lines
    assert line("xdlm-k0.1 [b32-dual-t0.9]", 32, mbpp="12.0") in lines


def test_a_failed_or_unfinished_latest_evaluation_is_shown_as_such_never_an_older_score(tmp_path, capsys):
    """A mistyped checkpoint's row fails after the others ran: its older score must not stay as current."""
    run = tmp_path / "opencompass"
    write_evaluation(run / "mbpp", "20260101_000000", {"mdm-k0-s32": "/ckpt/mdm-old", "base-k0-s32": "/ckpt/base"},
                     ["mbpp"], [["mbpp", "score", "3.90", "6.80"]])
    write_evaluation(run / "gsm8k", "20260101_000000", {"mdm-k0-s32": "/ckpt/mdm-old"}, ["gsm8k"],
                     [["gsm8k", "accuracy", "41.00"]])
    write_evaluation(run / "mbpp", "20260105_000000", {"mdm-k0-s32": "/ckpt/mdm-new", "base-k0-s32": "/ckpt/base"},
                     ["mbpp"], [["mbpp", "score", "-", "7.00"]], results={("base-k0-s32", "mbpp"): {"score": 7.0}})
    write_evaluation(run / "gsm8k", "20260106_000000", {"mdm-k0-s32": "/ckpt/mdm-new"}, ["gsm8k"], summary=None)
    lines = table_lines(run, capsys)
    assert line("mdm-k0", 32, gsm8k="unfinished", mbpp="failed") in lines
    assert line("base-k0", 32, mbpp="7.0") in lines
    assert not any("3.9" in line or "41.0" in line for line in lines)  # the old checkpoint's scores are gone
    # where each cell comes from: its checkpoint and its evaluation folder
    assert "| mdm-k0 | 32 | GSM8K | unfinished | /ckpt/mdm-new | gsm8k/20260106_000000 |" in lines
    assert "| mdm-k0 | 32 | MBPP | failed | /ckpt/mdm-new | mbpp/20260105_000000 |" in lines
    assert "| base-k0 | 32 | MBPP | 7.0 | /ckpt/base | mbpp/20260105_000000 |" in lines


def test_each_score_names_its_checkpoint_and_a_row_of_several_checkpoints_is_flagged(tmp_path, capsys):
    run = tmp_path / "opencompass"
    write_evaluation(run / "mbpp", "20260101_000000", {"xdlm-k0.1-s32": "/ckpt/xdlm-600"}, ["mbpp"],
                     [["mbpp", "score", "15.00"]])
    write_evaluation(run / "math", "20260102_000000", {"xdlm-k0.1-s32": "/ckpt/xdlm-1200"}, ["math"],
                     [["math", "accuracy", "31.00"]])
    lines = table_lines(run, capsys)
    assert line("xdlm-k0.1", 32, math="31.0", mbpp="15.0") in lines
    assert "| xdlm-k0.1 | 32 | MBPP | 15.0 | /ckpt/xdlm-600 | mbpp/20260101_000000 |" in lines
    assert "| xdlm-k0.1 | 32 | MATH | 31.0 | /ckpt/xdlm-1200 | math/20260102_000000 |" in lines
    assert ("Warning: xdlm-k0.1 at 32 steps: its scores come from 2 checkpoints (/ckpt/xdlm-1200, /ckpt/xdlm-600)."
            in lines)


def test_only_the_papers_protocol_at_its_step_count_in_a_row_it_reports_is_called_comparable(tmp_path, capsys):
    run = tmp_path / "opencompass"
    models = {"base-k0-s32": "/b", "base-k0-s64": "/b", "base-k0.1-s32": "/b", "xdlm-k0.1-s32-dual": "/x",
              "xdlm-k0.1-s32": "/x"}
    write_evaluation(run / "mbpp", "20260101_000000", models, ["mbpp"], [["mbpp", "score", "1", "2", "3", "4", "5"]])
    (line,) = [x for x in table_lines(run, capsys) if x.startswith("Comparable with the paper's numbers:")]
    assert line.startswith("Comparable with the paper's numbers: base-k0 at 32 steps, xdlm-k0.1 at 32 steps (")


def test_check_names_every_task_of_the_latest_evaluation_without_a_result(tmp_path, capsys):
    work = tmp_path / "opencompass"
    models = {"base-k0-s32": "/b", "mdm-k0-s32": "/m"}
    # an older evaluation that failed does not count; the latest of each work folder does
    write_evaluation(work / "gsm8k", "20260101_000000", models, ["gsm8k"], [["gsm8k", "accuracy", "1", "-"]],
                     results={("base-k0-s32", "gsm8k"): {"accuracy": 1.0}})
    write_evaluation(work / "gsm8k", "20260102_000000", models, ["gsm8k"], [["gsm8k", "accuracy", "1", "2"]])
    code, out, err = report(work, capsys, "--check")
    assert code == 0 and not err and "every task" in out
    latest = write_evaluation(work / "bbh", "20260103_000000", models, ["bbh-navigate", "bbh-snarks"], summary=None,
                              results={("base-k0-s32", "bbh-navigate"): {"score": 1.0},
                                       ("base-k0-s32", "bbh-snarks"): {"error": "predictions do not match the data"},
                                       ("mdm-k0-s32", "bbh-snarks"): {"score": 1.0}})
    code, _, err = report(work, capsys, "--check")
    assert code == 1
    assert err.splitlines() == [
        f"failed: {latest}: base-k0-s32/bbh-snarks: predictions do not match the data",
        f"failed: {latest}: mdm-k0-s32/bbh-navigate: no result (see {os.path.join(latest, 'logs')})",
        f"failed: {latest}: no summary (OpenCompass stopped before writing summary/)",
    ]
    code, _, err = report(tmp_path / "opencompass" / "gsm8k", capsys, "--check")  # one work folder alone
    assert code == 0, err
