"""OpenCompass model wrapper for LLaDA-class diffusion models (unforked `opencompass`), and the
answer extraction / scoring of the paper's evaluation where OpenCompass 0.5.4 differs from it.

Configs name everything here by its dotted path (`type="opencompass_llada.DiffusionLM"`,
`type="opencompass_llada.gsm8k_first_answer"`, ...), with this repository on PYTHONPATH
(scripts/eval_opencompass.sh sets it). Each batch OpenCompass hands over is generated in one
call of `generate.generate` (left-padded prompts), with the sampling settings of the config;
its likelihood requests (PPL and LL modes) go to likelihood.estimate in one call per batch.
"""
import dataclasses
import numbers
import re
import warnings
from typing import List, Optional

import numpy as np
from opencompass.datasets import MBPPEvaluator
from opencompass.models.base import BaseModel
from opencompass.openicl.icl_evaluator import BaseEvaluator
from opencompass.registry import MODELS

import modeling_llada  # noqa: F401  (native LLaDA model for model_type "llada")
from generate import SamplerSettings, complete, load_model
from likelihood import estimate, estimate_texts, estimator_settings


@MODELS.register_module()
class DiffusionLM(BaseModel):
    """A diffusion LM checkpoint: generation (gen mode) and likelihood (PPL and LL modes).

    generate: `gen_length` tokens in `steps` steps; k = 0 is LLaDA's sampler, k > 0 the XDLM
    sampler (re-editing budget k/(1-k)). As the paper's evaluation does, the whole generation is
    decoded with special tokens skipped (text after an eos is kept), then cut before the first of
    the dataset's stop words.

    get_ppl, get_loglikelihood: likelihood.py's Monte-Carlo bound of an answer given its context,
    with the estimator settings of the config: `estimator` ("masked", LLaDA's; "xdlm", the XDLM
    bound under the model's k), `cfg`, `mc_num`, `mc_batch_size` (LLaDA's batch_size: draws per
    systematic group; the config's batch_size is OpenCompass's, the texts per call), `seed` and
    `draws_per_forward` (defaults: LLaDA's 0, 128, 8, 1234; 64).
    """

    def __init__(self, path: str, tokenizer_path: Optional[str] = None, max_seq_len: int = 4096,
                 dtype: Optional[str] = None, meta_template: Optional[dict] = None,
                 generation_kwargs: Optional[dict] = None, estimator: str = "masked", cfg: float = 0.0,
                 mc_num: int = 128, mc_batch_size: int = 8, seed: int = 1234, draws_per_forward: int = 64,
                 **settings):
        """`settings`: the fields of generate.SamplerSettings (the config's steps, k, ...; its defaults
        for the rest). k is also the XDLM estimator's."""
        names = [field.name for field in dataclasses.fields(SamplerSettings)]
        if generation_kwargs:
            raise ValueError(f"generation_kwargs {generation_kwargs} are not used: set the sampler's settings "
                             f"({', '.join(names)}) on the model config")
        self.settings = SamplerSettings.named("DiffusionLM", **settings)  # a bad row refused before loading 8B
        if max_seq_len <= self.settings.gen_length:
            raise ValueError(f"max_seq_len ({max_seq_len}) must exceed gen_length ({self.settings.gen_length}): "
                             "prompts need room")
        try:
            self.estimator_settings = estimator_settings(estimator, self.settings.k, cfg=cfg, mc_num=mc_num,
                                                         batch_size=mc_batch_size, seed=seed,
                                                         draws_per_forward=draws_per_forward)
        except ValueError as e:  # named by the config's keys
            raise ValueError("DiffusionLM: " + re.sub(r"\bbatch_size\b", "mc_batch_size", str(e))) from None
        super().__init__(path=path, max_seq_len=max_seq_len, meta_template=meta_template)
        self.warned_max_out_len = False
        self.warned_cfg = False
        self.model, self.tokenizer, self.device = load_model(path, dtype, tokenizer_path=tokenizer_path)

    def get_token_len(self, prompt: str) -> int:
        return len(self.tokenizer(prompt)["input_ids"])

    def generate(self, inputs: List[str], max_out_len: int, stopping_criteria: List[str] = ()) -> List[str]:
        if max_out_len < 1:
            raise ValueError(f"max_out_len must be a positive number of tokens, got {max_out_len}")
        if not inputs:
            return []
        gen_length = self.settings.gen_length
        if max_out_len > gen_length and not self.warned_max_out_len:
            # The sampler writes exactly gen_length tokens (the paper's protocol): say so once.
            warnings.warn(f"max_out_len ({max_out_len}) exceeds the model's gen_length ({gen_length}): "
                          f"completions have {gen_length} tokens", stacklevel=2)
            self.warned_max_out_len = True
        return complete(self.model, self.tokenizer, inputs, self.settings, self.max_seq_len,
                        stop_words=[stopping_criteria] * len(inputs), max_new_tokens=[max_out_len] * len(inputs))

    def get_ppl(self, inputs: List[str], mask_length: Optional[List[int]] = None) -> np.ndarray:
        """OpenCompass's perplexity score of each text (PPLInferencer: the lowest wins): the
        estimated negative log-likelihood per answer token. A text's tokens, with the special
        tokens the tokenizer adds (as get_token_len counts them), are split after the first
        mask_length[i]: those are the context, the rest the answer, and the score is the bound of
        the answer given the context divided by the answer's length. Without mask_length (the
        PPLInferencer's default; it passes one only with normalizing_str) the whole text is the
        answer, with no context."""
        if mask_length is not None and len(mask_length) != len(inputs):
            raise ValueError(f"get_ppl: {len(mask_length)} mask lengths for {len(inputs)} texts")
        requests = []
        for i, text in enumerate(inputs):
            ids = self.tokenizer(text)["input_ids"]
            context_length = 0 if mask_length is None else mask_length[i]
            if not isinstance(context_length, numbers.Integral) or not 0 <= context_length < len(ids):
                raise ValueError(f"get_ppl: mask_length[{i}] = {context_length!r} for a text of {len(ids)} tokens; "
                                 "the context must leave at least one token to score")
            requests.append((ids[:context_length], ids[context_length:]))
        if self.estimator_settings["cfg"] and any(not context for context, _ in requests) and not self.warned_cfg:
            # Guidance masks the context; with none, the guided logits are the conditional ones.
            warnings.warn(f"cfg={self.estimator_settings['cfg']} has no effect on a text scored without context "
                          "(get_ppl without mask_length scores the whole text)", stacklevel=2)
            self.warned_cfg = True
        estimates = estimate(self.model, requests, **self.estimator_settings)
        return np.array([-e.log_likelihood / len(answer) for e, (_, answer) in zip(estimates, requests)])

    def get_loglikelihood(self, inputs: List[str], conts: List[str]) -> np.ndarray:
        """OpenCompass's log-likelihood of each continuation (LLInferencer: the largest wins): the
        estimate of conts[i] given the text of inputs[i] before it, summed over its tokens; the pair
        is encoded as LLaDA's evaluation does (likelihood.encode_pair, as lm_eval_llada.py)."""
        if len(conts) != len(inputs):
            raise ValueError(f"get_loglikelihood: {len(conts)} continuations for {len(inputs)} texts")
        pairs = []
        for i, (text, cont) in enumerate(zip(inputs, conts)):
            if not cont or not text.endswith(cont):
                raise ValueError(f"get_loglikelihood: text {i} must end with its continuation, {cont!r}")
            pairs.append((text[:len(text) - len(cont)], cont))
        estimates = estimate_texts(self.model, self.tokenizer, pairs, **self.estimator_settings)
        return np.array([e.log_likelihood for e in estimates])


def first_line(text: str) -> str:
    """The first non-empty line, stripped (next-line completion tasks)."""
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def gsm8k_first_answer(text: str) -> str:
    """GSM8K answer as the paper's evaluation reads it: the number after the first "The answer
    is" (any case); failing that, the last number before any "Question:"; else "NULL".
    (OpenCompass 0.5.4's gsm8k_postprocess takes the last number of the whole text.)"""
    found = re.search(r"The answer is[:\s]*(-?\d+(?:\.\d+)?)", text, re.IGNORECASE)
    if found:
        return found.group(1)
    numbers = re.findall(r"-?\d+\.\d+|-?\d+", text.split("Question:")[0])
    return numbers[-1] if numbers else "NULL"


def bbh_first_answer(text: str) -> str:
    """BBH free-form answer as OpenCompass 0.4.2 (the paper's) reads it: the first line after the
    first "answer is ", without a final period; a **bold** part if any. (0.5.4 takes the last
    "answer is", which, with no stop word, is usually in a made-up follow-on question.)"""
    parts = text.split("answer is ")
    if len(parts) > 1:
        text = parts[1].strip()
    text = text.split("\n")[0].strip()
    if text.endswith("."):
        text = text[:-1].strip()
    bold = re.search(r"\*\*(.*?)\*\*", text)
    return bold.group(1) if bold else text


class BBHFirstAnswerEvaluator(BaseEvaluator):
    """BBH free-form scoring of OpenCompass 0.4.2: exact match of `bbh_first_answer` of the
    prediction with the raw target (0.5.4 also normalises case, commas and yes/no forms)."""

    def score(self, predictions, references):
        if len(predictions) != len(references):
            return {"error": "predictions and references have different length"}
        details = []
        for pred, ref in zip(predictions, references):
            answer = bbh_first_answer(pred)
            details.append({"pred": answer, "answer": ref, "correct": answer == ref})
        return {"score": 100 * sum(d["correct"] for d in details) / len(details), "details": details}


class MBPPPlainEvaluator(MBPPEvaluator):
    """MBPP scoring of the paper's OpenCompass: the answer extracted as 0.5.4 does, then stripped
    of one enclosing quote (the few-shot answers are quoted: '[BEGIN]\\n 'code' \\n[DONE]'), and
    run as one program with the dataset's plain asserts (0.5.4 rewrites the asserts into a
    type-aware comparison, under which 2.0 != 2)."""

    def __init__(self):
        super().__init__(metric="MBPP")

    def _process_answer(self, text):
        text = super()._process_answer(text)
        if text.startswith("'"):
            text = text[1:]
        if text.endswith("'"):
            text = text[:-1]
        return text

    def _process_test(self, test_case, pred):
        # 0.5.4's executor runs (code, tests) in turn; all in `code` and no tests is plain execution
        return pred + "\n" + test_case, ""
