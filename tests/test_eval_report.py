"""scripts/eval_report.py: OpenCompass summary CSVs of several runs -> one markdown table beside the
paper's numbers, and a PNG."""
import os

from helpers import run_main


def write_summary(path, rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(",".join(r) for r in rows) + "\n")


def report(run_dir, capsys):
    """scripts/eval_report.py RUN_DIR in this process: (exit code, stdout, stderr)."""
    import eval_report

    return run_main(eval_report.main, [str(run_dir)], capsys)


def test_report_merges_runs_and_places_each_score(tmp_path, capsys):
    run = tmp_path / "opencompass"
    # MBPP: two runs, the later one redoing base-k0 at 32 steps; BBH's average and a task row
    write_summary(str(run / "mbpp/20260101_000000/summary/summary_20260101_000000.csv"), [
        ["dataset", "version", "metric", "mode", "base-k0-s32", "xdlm-k0.1-s32"],
        ["mbpp", "830460", "score", "gen", "5.00", "14.20"],
        ["mbpp", "830460", "pass", "gen", "25", "71"],
    ])
    write_summary(str(run / "mbpp/20260102_000000/summary/summary_20260102_000000.csv"), [
        ["dataset", "version", "metric", "mode", "base-k0-s32", "base-k0-s64"],
        ["mbpp", "830460", "score", "gen", "6.80", "-"],
    ])
    write_summary(str(run / "bbh/20260101_000000/summary/summary_20260101_000000.csv"), [
        ["dataset", "version", "metric", "mode", "base-k0-s32", "base-k0-s256"],
        ["bbh-navigate", "5a2b1c", "score", "gen", "50.00", "60.00"],
        ["bbh", "-", "naive_average", "gen", "5.50", "7.25"],
    ])
    code, _, err = report(run, capsys)
    assert code == 0, err
    table = (run / "report.md").read_text()
    lines = table.splitlines()
    assert "| row | steps | GSM8K | MATH | HumanEval | MBPP | BBH |" in lines
    assert "| base-k0 | 32 | - | - | - | 6.8 | 5.5 |" in lines       # the later MBPP run wins
    assert "| base-k0 | 256 | - | - | - | - | 7.2 |" in lines
    assert "| xdlm-k0.1 | 32 | - | - | - | 14.2 | - |" in lines
    assert not any(line.startswith("| base-k0 | 64 |") for line in lines)  # "-" only: no score
    assert "| xdlm-k0.1 (paper) | 32 | ~43 | ~30 | ~4.8 | 15.0 | ~11 |" in lines
    assert "| base-k0 (paper) | 32 | 42.7 | 24.5 | 4.8 | 6.8 | 5.5 |" in lines
    assert (run / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_refuses_a_folder_without_summaries(tmp_path, capsys):
    code, _, err = report(tmp_path, capsys)
    assert code != 0 and "no OpenCompass summary" in err


def test_an_accelerated_row_is_never_merged_with_a_paper_protocol_row(tmp_path, capsys):
    run = tmp_path / "opencompass"
    write_summary(str(run / "mbpp/20260101_000000/summary/summary_20260101_000000.csv"), [
        ["dataset", "version", "metric", "mode", "xdlm-k0.1-s32", "xdlm-k0.1-s32-b32-dual-t0.9"],
        ["mbpp", "830460", "score", "gen", "14.20", "12.00"],
    ])
    code, _, err = report(run, capsys)
    assert code == 0, err
    lines = (run / "report.md").read_text().splitlines()
    assert "| xdlm-k0.1 | 32 | - | - | - | 14.2 | - |" in lines
    assert "| xdlm-k0.1 [b32-dual-t0.9] | 32 | - | - | - | 12.0 | - |" in lines
