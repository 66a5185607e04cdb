"""scripts/eval_lm_eval.sh (its runs listed by opencompass_configs/benchmarks.py --likelihood) and
scripts/lm_eval_report.py: the commands equal LLaDA's likelihood table, stated here from LLaDA's own
script and EVAL.md, as lm-eval itself parses them; bad rows, tasks, settings and checkpoints are
refused in one line before anything runs; the report on lm-eval result files made here by hand
(laid out as lm-eval 0.4.13 writes them) and, slow, on a real run of the script."""
import glob
import json
import os
import pathlib
import re
import shlex
import subprocess
import sys

import pytest
import torch

import lm_eval_report
from helpers import ROOT, run_main
from opencompass_configs import benchmarks

# LLaDA's eval_llada_lm_eval.sh (ML-GSAI/LLaDA), its conditional-likelihood commands, all with
# is_check_greedy=False: task: (num_fewshot, batch_size, cfg, mc_num).
LLADA_SCRIPT = {
    "gpqa_main_n_shot": (5, 8, 0.5, 128),
    "truthfulqa_mc2": (0, 8, 2.0, 128),
    "arc_challenge": (0, 8, 0.5, 128),
    "hellaswag": (0, 8, 0.5, 128),
    "winogrande": (5, 8, 0.0, 128),
    "piqa": (0, 8, 0.5, 128),
    "mmlu": (5, 1, 0.0, 1),
    "cmmlu": (5, 1, 0.0, 1),
    "ceval-valid": (5, 1, 0.0, 1),
}
LLADA_SEED = 1234  # eval_llada.py: set_seed(1234) before lm-eval's command line
# LLaDA's EVAL.md, LLaDA-8B-Base's likelihood benchmarks: w/o CFG (the paper's Table 1), w/ CFG.
LLADA_WITHOUT_CFG = {"arc_challenge": 45.9, "hellaswag": 70.5, "truthfulqa_mc2": 46.1, "winogrande": 74.8,
                     "gpqa_main_n_shot": 25.2, "piqa": 73.6, "mmlu": 65.9, "cmmlu": 69.9, "ceval-valid": 70.5}
LLADA_WITH_CFG = {"arc_challenge": 47.9, "hellaswag": 72.5, "truthfulqa_mc2": 46.4, "winogrande": 74.8,
                  "gpqa_main_n_shot": 26.1, "piqa": 74.4}
VARIABLES = ("LM_EVAL_ROWS", "LM_EVAL_CFG", "LM_EVAL_DEVICE", "LM_EVAL_WORK_DIR", "LM_EVAL_LIMIT", "LM_EVAL_MODEL_ARGS",
             "LM_EVAL_INCLUDE_PATH", "LLADA_BASE", "MDM_CKPT", "XDLM_CKPT")
TASKS_DIR = os.path.join(ROOT, "tests", "lm_eval_tasks")


def as_lm_eval_reads_it(args):
    """lm_eval_llada.py's arguments as lm-eval 0.4.13's command line parses them."""
    from lm_eval._cli.harness import HarnessCLI
    from lm_eval.config.evaluate_config import EvaluatorConfig

    return EvaluatorConfig.from_cli(HarnessCLI()._parser.parse_args(["run", *args]))


def check_llada_s_settings(runs, mode, checkpoints):
    """runs [(row, task, lm_eval_llada.py args)] are, row by row, every task of LLaDA's script with its
    settings: its cfg (mode "llada") or none (mode "none"); LLaDA's masked estimator but on the
    xdlm-bound row, which takes the XDLM bound at k = 0.1."""
    assert sorted({row for row, _, _ in runs}) == sorted(checkpoints)
    for row in checkpoints:
        tasks = [task for r, task, _ in runs if r == row]
        assert sorted(tasks) == sorted(LLADA_SCRIPT) and len(set(tasks)) == len(tasks)
    for row, task, args in runs:
        shots, batch, cfg, mc_num = LLADA_SCRIPT[task]
        config = as_lm_eval_reads_it(args)
        assert (config.model, config.tasks, config.num_fewshot, int(config.batch_size)) == (
            "xdlm_llada", [task], shots, batch), (row, task)
        bound = dict(estimator="xdlm", k=0.1) if row == "xdlm-bound" else dict(estimator="masked")
        assert config.model_args == dict(pretrained=checkpoints[row], **bound, cfg=cfg if mode == "llada" else 0,
                                         mc_num=mc_num, seed=LLADA_SEED), (row, task)
        assert config.seed[3] == 1234  # the few-shot examples drawn as in LLaDA's runs (lm-eval's default)
        assert config.limit is None


@pytest.fixture
def environment(monkeypatch):
    """A clean environment for the listing: none of eval_lm_eval.sh's variables set."""
    for var in VARIABLES:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(ROOT)
    return monkeypatch


def listing(argv, capsys):
    """(exit code, [(row, task, cfg, args)], stderr) of `benchmarks.py --likelihood ARGV`."""
    code, out, err = run_main(benchmarks.likelihood_main, argv, capsys)
    runs = []
    for line in out.splitlines():
        row, task, cfg, quoted = line.split(" ", 3)
        runs.append((row, task, float(cfg), shlex.split(quoted)))
    return code, runs, err


@pytest.mark.parametrize("mode", ["llada", "none"])
def test_the_runs_are_llada_s_table_for_every_row(environment, capsys, llada_dir, tmp_path, mode):
    other = tmp_path / "xdlm"
    os.symlink(llada_dir, other)
    environment.setenv("MDM_CKPT", llada_dir)
    environment.setenv("XDLM_CKPT", str(other))
    environment.setenv("LM_EVAL_CFG", mode)
    code, runs, err = listing(["--dry_run"], capsys)
    assert code == 0, err
    check_llada_s_settings([(r, t, a) for r, t, _, a in runs], mode, {
        "base": "GSAI-ML/LLaDA-8B-Base", "mdm": llada_dir, "xdlm": str(other), "xdlm-bound": str(other)})
    assert all(cfg == float(a[a.index("--model_args") + 1].split("cfg=")[1].split(",")[0]) for _, _, cfg, a in runs)
    assert all(a[a.index("--device") + 1] == "cuda" for _, _, _, a in runs)  # the default; not checked in a dry run


def test_the_rows_run_by_default_are_those_with_a_checkpoint(environment, capsys, llada_dir):
    code, runs, err = listing(["--dry_run", "piqa"], capsys)
    assert (code, [r for r, _, _, _ in runs]) == (0, ["base"])
    assert "left out: mdm (set MDM_CKPT), xdlm (set XDLM_CKPT), xdlm-bound (set XDLM_CKPT)" in err
    environment.setenv("XDLM_CKPT", llada_dir)
    code, runs, err = listing(["--dry_run", "piqa"], capsys)
    assert [r for r, _, _, _ in runs] == ["base", "xdlm", "xdlm-bound"] and "left out: mdm (set MDM_CKPT)" in err
    environment.setenv("LM_EVAL_ROWS", "xdlm-bound")
    code, runs, err = listing(["--dry_run", "piqa", "mmlu"], capsys)
    assert [(r, t) for r, t, _, _ in runs] == [("xdlm-bound", "piqa"), ("xdlm-bound", "mmlu")]
    assert "xdlm (not in LM_EVAL_ROWS)" in err


def test_published_numbers_and_metrics_are_llada_s_and_lm_eval_s():
    """The report's numbers are LLaDA's EVAL.md's at the cfg they were measured at; each task is one
    of lm-eval 0.4.13's (a task or group of its YAML files) and reports the table's metric."""
    assert sorted(benchmarks.LIKELIHOOD_TASKS) == sorted(LLADA_SCRIPT)
    for task, (shots, batch, cfg, mc_num) in LLADA_SCRIPT.items():
        t = benchmarks.LIKELIHOOD_TASKS[task]
        assert t.published[0.0] == LLADA_WITHOUT_CFG[task]
        assert t.published[cfg] == LLADA_WITH_CFG.get(task, LLADA_WITHOUT_CFG[task])  # cfg 0: the same settings
        assert (t.num_fewshot, t.batch_size, t.cfg, t.mc_num) == (shots, batch, cfg, mc_num)
        assert set(t.published) == {0.0, cfg}
    import lm_eval

    root = os.path.join(os.path.dirname(lm_eval.__file__), "tasks")
    texts = {p: pathlib.Path(p).read_text() for p in glob.glob(os.path.join(root, "**", "*yaml"), recursive=True)}
    for task, t in benchmarks.LIKELIHOOD_TASKS.items():
        declaring = [p for p, text in texts.items()
                     if re.search(rf"^(task|group): {re.escape(task)}$", text, re.MULTILINE)]
        assert declaring, task
        included = [os.path.join(os.path.dirname(p), name) for p in declaring
                    for name in re.findall(r"^include: (\S+)$", texts[p], re.MULTILINE)]
        assert any(f"metric: {t.metric}\n" in texts[p] for p in declaring + included), (task, t.metric)


def one_line_refusal(argv, capsys, *fragments):
    code, runs, err = listing(argv, capsys)
    assert code == 2 and runs == [] and len(err.strip().splitlines()) == 1, (code, err)
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    return err


def test_bad_rows_tasks_and_settings_are_refused_in_one_line(environment, capsys, tmp_path):
    environment.setenv("LM_EVAL_ROWS", "base,xdlm-k0.1")
    one_line_refusal([], capsys, "LM_EVAL_ROWS='base,xdlm-k0.1'", "base, mdm, xdlm, xdlm-bound")
    environment.delenv("LM_EVAL_ROWS")
    one_line_refusal(["arc_easy"], capsys, "unknown task 'arc_easy'", "arc_challenge, hellaswag")
    environment.setenv("LM_EVAL_CFG", "0.5")
    one_line_refusal([], capsys, "LM_EVAL_CFG='0.5'", "llada or none")
    environment.delenv("LM_EVAL_CFG")
    environment.setenv("LM_EVAL_LIMIT", "ten")
    one_line_refusal(["piqa"], capsys, "LM_EVAL_LIMIT='ten'")
    environment.delenv("LM_EVAL_LIMIT")
    environment.setenv("LM_EVAL_MODEL_ARGS", "pretrained=/elsewhere")
    one_line_refusal(["piqa"], capsys, "LM_EVAL_MODEL_ARGS='pretrained=/elsewhere'", "other than pretrained")
    environment.delenv("LM_EVAL_MODEL_ARGS")
    environment.setenv("LM_EVAL_INCLUDE_PATH", str(tmp_path / "no-such-folder"))
    one_line_refusal(["piqa"], capsys, "LM_EVAL_INCLUDE_PATH=", "is not a folder")
    environment.setenv("LM_EVAL_INCLUDE_PATH", TASKS_DIR)
    one_line_refusal(["xdlm_tiny_nope"], capsys, "unknown task 'xdlm_tiny_nope'", f"none of {TASKS_DIR} declares it")


def test_bad_checkpoints_are_refused_in_one_line_naming_the_variable(environment, capsys, tmp_path, llada_dir):
    environment.setenv("LM_EVAL_ROWS", "mdm")
    one_line_refusal([], capsys, "row mdm: set MDM_CKPT")
    environment.setenv("MDM_CKPT", str(tmp_path / "typo"))
    one_line_refusal([], capsys, f"MDM_CKPT='{tmp_path / 'typo'}': no such model folder")
    (tmp_path / "empty").mkdir()
    environment.setenv("MDM_CKPT", str(tmp_path / "empty"))
    one_line_refusal([], capsys, "MDM_CKPT=", "is not a model folder: it has no config.json")
    os.symlink(llada_dir, tmp_path / "a,b")
    environment.setenv("MDM_CKPT", str(tmp_path / "a,b"))
    one_line_refusal([], capsys, "MDM_CKPT=", "cannot hold a path with a comma")
    environment.setenv("MDM_CKPT", llada_dir)
    environment.setenv("LM_EVAL_ROWS", "mdm,xdlm,xdlm-bound")  # XDLM_CKPT unset: named for each of its rows
    err = one_line_refusal([], capsys, "row xdlm: set XDLM_CKPT", "row xdlm-bound: set XDLM_CKPT")
    assert "MDM_CKPT" not in err


def test_no_gpu_is_refused_unless_it_is_a_dry_run(environment, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    one_line_refusal(["piqa"], capsys, "LM_EVAL_DEVICE='cuda': no GPU here; set LM_EVAL_DEVICE=cpu")
    assert listing(["--dry_run", "piqa"], capsys)[0] == 0
    environment.setenv("LM_EVAL_DEVICE", "cpu")
    code, runs, _ = listing(["piqa"], capsys)
    assert code == 0 and runs[0][3][runs[0][3].index("--device") + 1] == "cpu"


def test_local_tasks_limit_and_extra_model_args(environment, capsys, llada_dir):
    environment.setenv("LLADA_BASE", llada_dir)
    environment.setenv("LM_EVAL_INCLUDE_PATH", TASKS_DIR)
    environment.setenv("LM_EVAL_LIMIT", "3")
    environment.setenv("LM_EVAL_MODEL_ARGS", "draws_per_forward=16,mc_num=32")
    code, runs, err = listing(["--dry_run", "xdlm_tiny_mc", "piqa"], capsys)
    assert code == 0, err
    (_, _, cfg_local, local), (_, _, cfg_piqa, piqa) = runs
    local, piqa = as_lm_eval_reads_it(local), as_lm_eval_reads_it(piqa)
    assert (cfg_local, local.num_fewshot, int(local.batch_size), local.limit, local.include_path) == (
        0.0, 0, 8, 3, TASKS_DIR)
    assert local.model_args == dict(pretrained=llada_dir, estimator="masked", cfg=0, mc_num=32, seed=1234,
                                    draws_per_forward=16)
    assert (cfg_piqa, piqa.model_args["cfg"], piqa.model_args["mc_num"]) == (0.5, 0.5, 32)


# ------------------------------------------------------------------ the report, on hand-made runs


def run_folder(run_dir, row, task, cfg, time, results=None, failed=False, n_shot=0, limit=None, batch="8",
               **model_args):
    """A run as eval_lm_eval.sh leaves it: ROW/TASK/cfgCFG/TIME/ with lm-eval 0.4.13's results file
    (results: {task or group: {metric: value}}) or a `failed` marker, or neither (unfinished)."""
    folder = run_dir / row / task / f"cfg{cfg:g}" / time
    folder.mkdir(parents=True)
    (folder / "command.sh").write_text("python lm_eval_llada.py ...")
    if failed:
        (folder / "failed").write_text("lm_eval_llada.py exited with 1")
    if results is not None:
        args = dict(dict(pretrained=f"/ckpt/{row}", estimator="masked", cfg=cfg, mc_num=128, seed=1234), **model_args)
        data = {"results": {name: {"alias": name, **{f"{m},none": v for m, v in metrics.items()}}
                            for name, metrics in results.items()},
                "n-shot": {task: n_shot}, "n-samples": {task: {"original": 100, "effective": 100}},
                "config": {"model": "xdlm_llada", "model_args": args, "batch_size": batch, "batch_sizes": [],
                           "device": "cuda", "limit": limit, "random_seed": 0, "numpy_seed": 1234,
                           "torch_seed": 1234, "fewshot_seed": 1234},
                "lm_eval_version": "0.4.13", "model_name": args["pretrained"]}
        (folder / "results_2026-01-01T00-00-00.000000.json").write_text(json.dumps(data))
    return folder


def report_tables(run_dir, capsys):
    code, out, err = run_main(lm_eval_report.main, [str(run_dir)], capsys)
    assert code == 0, err
    text = (run_dir / "report.md").read_text()
    assert text in out
    tables, current = [], None
    for line in text.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if current is None:
                current = [cells]
                tables.append(current)
            elif not set(line) <= set("|- "):
                current.append(cells)
        else:
            current = None
    (head, *rows), (detail_head, *details) = tables
    return ({(r[0], r[1]): dict(zip(head[2:], r[2:])) for r in rows},
            {(d[0], d[1], d[5]): dict(zip(detail_head, d)) for d in details})


def test_report_beside_llada_s_numbers_with_settings_checkpoints_and_comparability(tmp_path, capsys):
    run = tmp_path / "lm_eval"
    run_folder(run, "base", "arc_challenge", 0.5, "20260101_1", {"arc_challenge": dict(
        acc=0.40, acc_stderr=0.0143, acc_norm=0.4567, acc_norm_stderr=0.0151)})
    run_folder(run, "base", "arc_challenge", 0.0, "20260101_1", {"arc_challenge": dict(acc=0.41, acc_norm=0.44)})
    run_folder(run, "base", "winogrande", 0.0, "20260101_1", {"winogrande": dict(acc=0.70)}, n_shot=5)
    run_folder(run, "base", "mmlu", 0.0, "20260101_1", {"mmlu": dict(acc=0.6), "mmlu_anatomy": dict(acc=0.5)},
               n_shot=5, batch="1", mc_num=1)
    run_folder(run, "xdlm-bound", "arc_challenge", 0.5, "20260101_1", {"arc_challenge": dict(acc=0.2, acc_norm=0.3)},
               estimator="xdlm", k=0.1)
    run_folder(run, "mdm", "piqa", 0.5, "20260101_1", {"piqa": dict(acc=0.6, acc_norm=0.65)}, limit=100.0, mc_num=32)
    run_folder(run, "xdlm", "hellaswag", 0.5, "20260101_1", {"hellaswag": dict(acc=0.4, acc_norm=0.5)})
    run_folder(run, "xdlm", "hellaswag", 0.5, "20260102_1", failed=True)  # the latest: failed
    run_folder(run, "xdlm", "piqa", 0.5, "20260101_1")  # no results, no marker: unfinished
    summary, details = report_tables(run, capsys)

    cols = ["ARC-C", "HellaSwag", "WinoGrande", "PIQA", "MMLU"]  # LLaDA's order, the tasks that ran
    assert list(summary["base", "LLaDA's cfg"]) == cols
    assert list(summary["base", "LLaDA's cfg"].values()) == ["45.7", "-", "70.0", "-", "60.0"]  # acc_norm for ARC-C
    assert list(summary["base", "no CFG"].values()) == ["44.0", "-", "70.0", "-", "60.0"]  # WinoGrande, MMLU: no CFG
    assert list(summary["xdlm-bound", "LLaDA's cfg"].values()) == ["30.0 †", "-", "-", "-", "-"]
    assert ("xdlm-bound", "no CFG") not in summary
    assert list(summary["mdm", "LLaDA's cfg"].values()) == ["-", "-", "-", "65.0 †", "-"]
    assert list(summary["xdlm", "LLaDA's cfg"].values()) == ["-", "failed", "-", "unfinished", "-"]
    assert list(summary["LLaDA-8B-Base, published", "w/ CFG: LLaDA's cfg"].values()) == [
        "47.9", "72.5", "74.8", "74.4", "65.9"]
    assert list(summary["LLaDA-8B-Base, published", "Table 1: no CFG"].values()) == [
        "45.9", "70.5", "74.8", "73.6", "65.9"]

    d = details["base", "arc_challenge", "0.5"]
    assert (d["metric"], d["score ± se"], d["estimator"], d["shots"], d["mc_num"], d["batch"], d["LLaDA's"],
            d["comparable"], d["checkpoint"], d["run"]) == (
        "acc_norm", "45.7 ± 1.5", "masked", "0", "128", "8", "47.9", "yes", "/ckpt/base",
        os.path.join("base", "arc_challenge", "cfg0.5", "20260101_1"))
    assert (details["base", "arc_challenge", "0"]["LLaDA's"], details["base", "arc_challenge", "0"]["comparable"]) == (
        "45.9", "yes")
    assert (details["base", "mmlu", "0"]["score ± se"], details["base", "mmlu", "0"]["comparable"]) == ("60.0", "yes")
    bound = details["xdlm-bound", "arc_challenge", "0.5"]
    assert (bound["estimator"], bound["comparable"]) == (
        "xdlm (k=0.1)", "no: the model's own XDLM bound (k=0.1), not LLaDA's estimator")
    assert details["mdm", "piqa", "0.5"]["comparable"] == "no: mc_num 32 (LLaDA's 128), --limit 100 (a subset)"
    assert details["xdlm", "hellaswag", "0.5"]["score ± se"] == "failed"
    assert "50.0" not in (run / "report.md").read_text()  # the older score is not shown in the failed one's place
    assert details["xdlm", "piqa", "0.5"]["score ± se"] == "unfinished"


def test_report_names_a_row_of_several_checkpoints_and_refuses_what_it_cannot_place(tmp_path, capsys):
    run = tmp_path / "lm_eval"
    run_folder(run, "mdm", "piqa", 0.5, "20260101_1", {"piqa": dict(acc_norm=0.6)}, pretrained="/ckpt/mdm-a")
    run_folder(run, "mdm", "hellaswag", 0.5, "20260101_1", {"hellaswag": dict(acc_norm=0.6)}, pretrained="/ckpt/mdm-b")
    code, out, err = run_main(lm_eval_report.main, [str(run)], capsys)
    assert code == 0 and "- mdm: its scores come from 2 checkpoints (/ckpt/mdm-a, /ckpt/mdm-b)" in out
    (run / "mdm" / "piqa" / "cfg0" / "x").mkdir(parents=True)  # a results file of cfg 0.5 under cfg0
    os.rename(next((run / "mdm" / "piqa" / "cfg0.5" / "20260101_1").glob("results_*.json")),
              run / "mdm" / "piqa" / "cfg0" / "x" / "results_1.json")
    code, _, err = run_main(lm_eval_report.main, [str(run)], capsys)
    assert code == 1 and "its model_args say cfg=0.5, its folder cfg0" in err
    code, _, err = run_main(lm_eval_report.main, [str(tmp_path / "nothing")], capsys)
    assert code == 1 and "is not a folder" in err
    (tmp_path / "empty").mkdir()
    code, _, err = run_main(lm_eval_report.main, [str(tmp_path / "empty")], capsys)
    assert code == 1 and "no run of eval_lm_eval.sh under it" in err


# ------------------------------------------------------------------ the script itself (processes)


def script(args, tmp_path, **env):
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES} | dict(
        OMP_NUM_THREADS="1", PYTHON=sys.executable, LM_EVAL_WORK_DIR=str(tmp_path / "work")) | env
    return subprocess.run(["bash", "scripts/eval_lm_eval.sh", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.slow
def test_dry_run_lists_llada_s_table_and_runs_nothing(tmp_path, llada_dir):
    proc = script(["--dry_run"], tmp_path, MDM_CKPT=llada_dir, XDLM_CKPT=llada_dir)
    assert proc.returncode == 0, proc.stderr
    runs = []
    for line in proc.stdout.splitlines():
        where, command = line.split(": ", 1)
        row, task = where.split()
        argv = shlex.split(command)
        assert argv[:2] == [sys.executable, "lm_eval_llada.py"]
        assert argv[-2:] == ["--output_path", str(tmp_path / "work" / row / task / f"cfg{LLADA_SCRIPT[task][2]:g}"
                                                  / "<time>" / "results.json")]
        runs.append((row, task, argv[2:-2]))
    check_llada_s_settings(runs, "llada", dict(base="GSAI-ML/LLaDA-8B-Base", mdm=llada_dir, xdlm=llada_dir,
                                               **{"xdlm-bound": llada_dir}))
    assert not (tmp_path / "work").exists()


@pytest.mark.slow
def test_a_bad_checkpoint_stops_the_script_in_one_line_before_anything_runs(tmp_path):
    proc = script(["piqa"], tmp_path, LM_EVAL_ROWS="base,mdm", MDM_CKPT="/no/such/folder", LM_EVAL_DEVICE="cpu")
    assert proc.returncode == 2 and proc.stdout == ""
    (line,) = proc.stderr.splitlines()
    assert line.startswith("eval_lm_eval: MDM_CKPT='/no/such/folder': no such model folder")
    assert not (tmp_path / "work").exists()


@pytest.mark.slow
def test_a_failed_run_is_named_and_marked_and_the_others_still_run(tmp_path, llada_dir, capsys):
    """lm_eval_llada.py replaced by a stand-in through $PYTHON: it fails for one task and does
    nothing for the other (which the report then calls unfinished)."""
    fake = tmp_path / "python"
    fake.write_text(f'#!/bin/bash\nif [ "$1" = lm_eval_llada.py ]; then echo "$@" >> {tmp_path}/ran\n'
                    f'  [[ " $* " == *" --tasks xdlm_tiny_mc "* ]] && exit 3; exit 0; fi\nexec {sys.executable} "$@"\n')
    fake.chmod(0o755)
    proc = script(["xdlm_tiny_mc", "xdlm_tiny_gen"], tmp_path, PYTHON=str(fake), LLADA_BASE=llada_dir,
                  LM_EVAL_DEVICE="cpu", LM_EVAL_INCLUDE_PATH=TASKS_DIR)
    assert proc.returncode == 1
    assert len((tmp_path / "ran").read_text().splitlines()) == 2
    (failed,) = glob.glob(str(tmp_path / "work" / "base" / "xdlm_tiny_mc" / "cfg0" / "*"))
    assert os.path.isfile(os.path.join(failed, "failed")) and os.path.isfile(os.path.join(failed, "command.sh"))
    assert proc.stderr.splitlines()[-1] == (f"eval_lm_eval: 1 of 2 runs failed: base/xdlm_tiny_mc (see {failed}/"
                                            "lm_eval.log)")
    code, out, _ = run_main(lm_eval_report.main, [str(tmp_path / "work")], capsys)
    assert code == 0 and "| base | LLaDA's cfg | unfinished | failed |" in out  # columns: local tasks by name


@pytest.mark.slow
def test_the_script_runs_lm_eval_end_to_end_and_the_report_reads_its_results(tmp_path, llada_dir, capsys):
    """One real run (row base, the local multiple-choice task, the tiny checkpoint, on CPU)."""
    proc = script(["xdlm_tiny_mc"], tmp_path, LLADA_BASE=llada_dir, LM_EVAL_DEVICE="cpu",
                  LM_EVAL_INCLUDE_PATH=TASKS_DIR, HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (folder,) = glob.glob(str(tmp_path / "work" / "base" / "xdlm_tiny_mc" / "cfg0" / "*"))
    (results,) = glob.glob(os.path.join(folder, "results_*.json"))
    data = json.loads(pathlib.Path(results).read_text())
    assert data["config"]["model_args"] == dict(pretrained=llada_dir, estimator="masked", cfg=0, mc_num=128,
                                                seed=1234)
    assert (data["config"]["batch_size"], data["n-shot"]["xdlm_tiny_mc"]) == ("8", 0)
    assert "|xdlm_tiny_mc|" in pathlib.Path(folder, "lm_eval.log").read_text()
    _, details = report_tables(tmp_path / "work", capsys)
    d = details["base", "xdlm_tiny_mc", "0"]
    assert d["score ± se"].split(" ± ")[0] == f"{100 * data['results']['xdlm_tiny_mc']['acc,none']:.1f}"
    assert (d["checkpoint"], d["comparable"]) == (llada_dir, "no: not one of LLaDA's tasks")
