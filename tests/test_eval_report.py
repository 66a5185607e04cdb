"""scripts/eval_report.py on OpenCompass work folders made here by hand, laid out as OpenCompass
0.5.4 writes them (<time>/configs/<time>_<pid>.py, <time>/summary/summary_<time>.csv,
<time>/results/<model>/<dataset>.json): one markdown table beside the paper's numbers, where each
cell is the latest evaluation's (a failed or unfinished one is shown as such), each number's
evaluation and checkpoint, which rows compare with the paper; and --check, which names failed tasks."""
import os

import pytest

import eval_report
from helpers import run_main

HEADER = ["dataset", "version", "metric", "mode"]
PAPER_TITLES = ("GSM8K", "MATH", "HumanEval", "MBPP", "BBH")


def evaluation(run, folder, models, datasets, summary=None, groups=(), results=(), time=None):
    """An evaluation in run/folder: its config (models {abbr: checkpoint}, dataset abbrs, summary
    groups), its summary (lines of values in the models' order; None: it never finished) and the
    results of the (model, dataset) tasks in `results`."""
    time = time or os.path.basename(folder)
    root = os.path.join(run, folder)
    os.makedirs(os.path.join(root, "configs"))
    with open(os.path.join(root, "configs", f"{time}_4242.py"), "w") as f:
        f.write("models = [\n" + "".join(f"    dict(abbr={a!r}, path={p!r}, type='opencompass_llada.DiffusionLM'),\n"
                                         for a, p in models.items()) + "]\n")
        f.write("datasets = [\n" + "".join(f"    dict(abbr={d!r}, path='opencompass/{d}', type='x.Dataset'),\n"
                                           for d in datasets) + "]\n")
        f.write(f"summarizer = dict(summary_groups=[{', '.join(f'dict(name={g!r}, subsets=[])' for g in groups)}])\n")
    if summary is not None:
        os.makedirs(os.path.join(root, "summary"))
        with open(os.path.join(root, "summary", f"summary_{time}.csv"), "w") as f:
            f.write("\n".join(",".join(r) for r in [HEADER + list(models)] + summary) + "\n")
    for abbr, dataset, content in results:
        os.makedirs(os.path.join(root, "results", abbr), exist_ok=True)
        with open(os.path.join(root, "results", abbr, f"{dataset}.json"), "w") as f:
            f.write(content)
    return root


def report(run, capsys):
    code, out, err = run_main(eval_report.main, [str(run)], capsys)
    assert code == 0, err
    return (run / "report.md").read_text().splitlines()


def scores(lines):
    """{(row, steps): {column: cell}} of the report's first table, whose columns are row, steps (None
    for "-", a likelihood row), one per benchmark of the table (the paper's five among them) and "vs paper"."""
    start = next(i for i, line in enumerate(lines) if line.startswith("| row | steps |"))
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    assert [c for c in header if c in PAPER_TITLES] == list(PAPER_TITLES) and header[-1] == "vs paper"
    table = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        table[cells[0], None if cells[1] == "-" else int(cells[1])] = dict(zip(header[2:], cells[2:]))
    return table


def assert_row(table, key, vs_paper, **shown):
    """A table row holds `shown` in those benchmarks' columns, "-" (not evaluated) in the others."""
    cells = dict(table[key])
    assert cells.pop("vs paper") == vs_paper, cells
    assert cells == {k: shown.get(k, "-") for k in cells} and set(shown) <= set(cells), cells


def test_report_merges_runs_and_places_each_score(tmp_path, capsys):
    run = tmp_path / "opencompass"
    # MBPP: two runs, the later one redoing base-k0 at 32 steps; BBH's average and a task row
    evaluation(run, "mbpp/20260101_000000", {"base-k0-s32": "/c/base", "xdlm-k0.1-s32": "/c/xdlm"}, ["mbpp"], [
        ["mbpp", "830460", "score", "gen", "5.00", "14.20"],
        ["mbpp", "830460", "pass", "gen", "25", "71"],
    ])
    evaluation(run, "mbpp/20260102_000000", {"base-k0-s32": "/c/base"}, ["mbpp"], [
        ["mbpp", "830460", "score", "gen", "6.80"],
    ])
    evaluation(run, "bbh/20260101_000000", {"base-k0-s32": "/c/base", "base-k0-s256": "/c/base"},
               ["bbh-navigate"], [
                   ["bbh-navigate", "5a2b1c", "score", "gen", "50.00", "60.00"],
                   ["bbh", "-", "naive_average", "gen", "5.50", "7.25"],
               ], groups=["bbh"])
    lines = report(run, capsys)
    table = scores(lines)
    assert_row(table, ("base-k0", 32), "yes", MBPP="6.8", BBH="5.5")  # the later MBPP run wins
    assert_row(table, ("base-k0", 256), "no: the paper's numbers are at 32 steps", BBH="7.2")
    assert_row(table, ("xdlm-k0.1", 32), "yes", MBPP="14.2")
    assert {k: table["xdlm-k0.1 (paper)", 32][k] for k in PAPER_TITLES} == dict(
        GSM8K="~43", MATH="~30", HumanEval="~4.8", MBPP="15.0", BBH="~11")
    assert {k: table["base-k0 (paper)", 32][k] for k in PAPER_TITLES} == dict(
        GSM8K="42.7", MATH="24.5", HumanEval="4.8", MBPP="6.8", BBH="5.5")
    assert len(table) == 3 + 3  # three evaluated rows, the paper's three
    # where each number came from
    assert "| base-k0 | 32 | MBPP | 6.8 | mbpp/20260102_000000 | /c/base |" in lines
    assert "| base-k0 | 32 | BBH | 5.5 | bbh/20260101_000000 | /c/base |" in lines
    assert "| xdlm-k0.1 | 32 | MBPP | 14.2 | mbpp/20260101_000000 | /c/xdlm |" in lines
    assert (run / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_failed_or_unfinished_latest_evaluation_replaces_an_older_score(tmp_path, capsys):
    run = tmp_path / "opencompass"
    models = {"mdm-k0-s32": "/c/mdm-old", "mdm-k0-s64": "/c/mdm-old"}
    evaluation(run, "mbpp/20260101_000000", models, ["mbpp"], [["mbpp", "830460", "score", "gen", "4.40", "5.00"]])
    # a mistyped MDM_CKPT: its task failed, OpenCompass's summary says "-"
    evaluation(run, "mbpp/20260102_000000", {"mdm-k0-s32": "/c/mdm-typo"}, ["mbpp"],
               [["mbpp", "830460", "score", "gen", "-"]])
    # the 64-step evaluation was killed before its summary
    evaluation(run, "mbpp/20260103_000000", {"mdm-k0-s64": "/c/mdm-new"}, ["mbpp"], summary=None)
    lines = report(run, capsys)
    table = scores(lines)
    assert_row(table, ("mdm-k0", 32), "yes", MBPP="failed")
    assert_row(table, ("mdm-k0", 64), "no: the paper's numbers are at 32 steps", MBPP="no summary")
    assert "| mdm-k0 | 32 | MBPP | failed | mbpp/20260102_000000 | /c/mdm-typo |" in lines
    assert "| mdm-k0 | 64 | MBPP | no summary | mbpp/20260103_000000 | /c/mdm-new |" in lines
    assert not any("4.4" in line or "5.0" in line for line in lines if line.startswith("| mdm-k0 |"))


def test_a_row_whose_scores_come_from_several_checkpoints_says_so(tmp_path, capsys):
    run = tmp_path / "opencompass"
    evaluation(run, "gsm8k/20260101_000000", {"xdlm-k0.1-s32": "/c/xdlm-a"}, ["gsm8k"],
               [["gsm8k", "1d7fe4", "accuracy", "gen", "40.00"]])
    evaluation(run, "math/20260101_000000", {"xdlm-k0.1-s32": "/c/xdlm-b"}, ["math"],
               [["math", "393424", "accuracy", "gen", "30.00"]])
    evaluation(run, "mbpp/20260101_000000", {"mdm-k0-s32": "/c/mdm"}, ["mbpp"],
               [["mbpp", "830460", "score", "gen", "4.40"]])
    lines = report(run, capsys)
    assert "- xdlm-k0.1: its scores come from 2 checkpoints (/c/xdlm-a, /c/xdlm-b); see where each came from below." \
        in lines
    assert not any(line.startswith("- mdm-k0") for line in lines)


def test_an_evaluation_resumed_into_an_older_folder_is_dated_by_its_own_config(tmp_path, capsys):
    """opencompass -r reuses a work folder: its config and summary carry the new time."""
    run = tmp_path / "opencompass"
    evaluation(run, "mbpp/20260105_000000", {"base-k0-s32": "/c/a"}, ["mbpp"],
               [["mbpp", "830460", "score", "gen", "7.00"]])
    evaluation(run, "mbpp/20260101_000000", {"base-k0-s32": "/c/b"}, ["mbpp"],
               [["mbpp", "830460", "score", "gen", "1.00"]], time="20260109_000000")
    lines = report(run, capsys)
    assert "| base-k0 | 32 | MBPP | 1.0 | mbpp/20260101_000000 @20260109_000000 | /c/b |" in lines


def test_which_rows_compare_with_the_papers_numbers(tmp_path, capsys):
    run = tmp_path / "opencompass"
    abbrs = ["base-k0-s32", "base-k0.1-s32", "xdlm-k0.1-s32-b32-dual-t0.9", "xdlm-k0.1-s32", "xdlm-k0.1-s128"]
    evaluation(run, "mbpp/20260101_000000", dict.fromkeys(abbrs, "/c"), ["mbpp"],
               [["mbpp", "830460", "score", "gen", "6.0", "7.0", "12.0", "14.2", "16.0"]])
    table = scores(report(run, capsys))
    assert_row(table, ("base-k0", 32), "yes", MBPP="6.0")
    assert_row(table, ("base-k0.1", 32), "no: the paper has no numbers for it", MBPP="7.0")
    assert_row(table, ("xdlm-k0.1", 32), "yes", MBPP="14.2")  # never merged with the faster row
    assert_row(table, ("xdlm-k0.1", 128), "no: the paper's numbers are at 32 steps", MBPP="16.0")
    assert_row(table, ("xdlm-k0.1 [b32-dual-t0.9]", 32), "no: a faster sampler", MBPP="12.0")


def test_a_likelihood_row_has_its_own_line_without_steps_and_is_not_compared(tmp_path, capsys):
    run = tmp_path / "opencompass"
    evaluation(run, "arc_c/20260101_000000", {"base-k0-ll-masked": "/c/base", "xdlm-k0.1-ll-xdlm-cfg0.5": "/c/xdlm"},
               ["ARC-c"], [["ARC-c", "d52a21", "accuracy", "ppl", "41.25", "38.50"]])
    evaluation(run, "mbpp/20260101_000000", {"base-k0-s32": "/c/base"}, ["mbpp"],
               [["mbpp", "830460", "score", "gen", "6.0"]])
    lines = report(run, capsys)
    table = scores(lines)
    likelihood = "no: a likelihood row (the paper reports generation)"
    assert_row(table, ("base-k0 [ll-masked]", None), likelihood, **{"ARC-C (PPL)": "41.2"})
    assert_row(table, ("xdlm-k0.1 [ll-xdlm-cfg0.5]", None), likelihood, **{"ARC-C (PPL)": "38.5"})
    assert_row(table, ("base-k0", 32), "yes", MBPP="6.0")  # the generation row apart
    assert "| base-k0 [ll-masked] | - | ARC-C (PPL) | 41.2 | arc_c/20260101_000000 | /c/base |" in lines
    assert (run / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_refuses_a_folder_without_evaluations(tmp_path, capsys):
    os.makedirs(tmp_path / "mbpp" / "20260101_000000" / "summary")  # a summary alone says nothing of its models
    code, _, err = run_main(eval_report.main, [str(tmp_path)], capsys)
    assert code != 0 and "no OpenCompass evaluation under it" in err


def test_report_refuses_a_summary_without_the_config_it_came_from(tmp_path, capsys):
    evaluation(tmp_path, "mbpp/20260101_000000", {"base-k0-s32": "/c/base"}, ["mbpp"],
               [["mbpp", "830460", "score", "gen", "6.00"]])
    stray = evaluation(tmp_path, "gsm8k/20260102_000000", {"base-k0-s32": "/c/base"}, ["gsm8k"],
                       [["gsm8k", "17d0dc", "accuracy", "gen", "40.00"]])
    os.remove(os.path.join(stray, "configs", "20260102_000000_4242.py"))  # its scores' models are unknown now
    code, _, err = run_main(eval_report.main, [str(tmp_path)], capsys)
    assert code != 0 and err.startswith(f"{stray}: an OpenCompass summary without the configs/")


def test_check_names_each_task_of_the_latest_evaluation_without_a_result(tmp_path, capsys):
    work = tmp_path / "gsm8k"
    models = {"base-k0-s32": "/c/base", "mdm-k0-s32": "/c/mdm"}
    ok = '{"accuracy": 40.0}'
    evaluation(work, "20260101_000000", models, ["gsm8k", "gsm8k-extra"], results=[
        ("base-k0-s32", "gsm8k", ok), ("base-k0-s32", "gsm8k-extra", ok),
        ("mdm-k0-s32", "gsm8k", '{"error": "No predictions found."}')])  # mdm-k0-s32/gsm8k-extra: none at all
    os.makedirs(work / "20260101_000000" / "logs" / "infer" / "mdm-k0-s32")
    (work / "20260101_000000" / "logs" / "infer" / "mdm-k0-s32" / "gsm8k-extra.out").write_text("OSError: ...")
    code, _, err = run_main(eval_report.main, ["--check", str(work)], capsys)
    assert code == 1
    lines = err.splitlines()
    assert lines[0] == f"2 of 4 OpenCompass task(s) failed in {work / '20260101_000000'}:"
    assert lines[1:] == ["  mdm-k0-s32/gsm8k: No predictions found.",
                         f"  mdm-k0-s32/gsm8k-extra: no result (see {work}/20260101_000000/logs/infer/mdm-k0-s32/"
                         "gsm8k-extra.out)"]
    # a later evaluation in which every task scored passes
    evaluation(work, "20260102_000000", models, ["gsm8k"], results=[(m, "gsm8k", ok) for m in models])
    code, out, err = run_main(eval_report.main, ["--check", str(work)], capsys)
    assert code == 0 and "all 2 OpenCompass task(s)" in out and not err


@pytest.mark.parametrize("content", ["", "{not json", "[1, 2]"])
def test_check_counts_an_unreadable_result_as_failed(tmp_path, capsys, content):
    evaluation(tmp_path, "20260101_000000", {"base-k0-s32": "/c"}, ["mbpp"], results=[("base-k0-s32", "mbpp", content)])
    code, _, err = run_main(eval_report.main, ["--check", str(tmp_path)], capsys)
    assert code == 1 and "base-k0-s32/mbpp: unreadable result" in err
