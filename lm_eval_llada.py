#!/usr/bin/env python
"""An lm-evaluation-harness (lm-eval 0.4.13) model for LLaDA-class diffusion LMs, registered as
"xdlm_llada":
  loglikelihood          likelihood.py's estimator (LLaDA's masked one or the XDLM bound) of the
                         continuation given the context, pairs encoded as LLaDA's eval_llada.py does;
  loglikelihood_rolling  the bound of a whole document as a sum of window bounds (below);
  generate_until         generate.py's sampler, batched, cut at the task's stop strings.

lm-eval 0.4.13 finds models only in its own registry (it reads no entry points), so the plain
`lm_eval` command does not know "xdlm_llada". Run lm-eval's command line through this file,
which registers the model first (as LLaDA's eval_llada.py does); every lm-eval flag works:

  python lm_eval_llada.py --model xdlm_llada --device cuda --batch_size 8 --tasks arc_challenge \\
      --model_args pretrained=DIR,estimator=masked,cfg=0.5,mc_num=128

In Python, `import lm_eval_llada` registers it for lm_eval.simple_evaluate(model="xdlm_llada", ...).

model_args (besides lm-eval's --batch_size and --device):
  pretrained        the checkpoint folder; tokenizer=DIR if the tokenizer lives elsewhere
  estimator         "masked" (LLaDA's, default) or "xdlm" (the XDLM bound under k)
  k                 the model's mixing ratio: the XDLM estimator's k and the sampler's re-edit
                    budget k/(1-k); the masked estimator is LLaDA's k = 0 bound whatever k is
  cfg, mc_num, seed, draws_per_forward   likelihood.estimate's (defaults 0, 128, 1234, 64)
  --batch_size      LLaDA's batch_size: Monte-Carlo draws per systematic group; mc_num must be a
                    multiple of it. lm-eval's command line passes 1 unless told (LLaDA's commands
                    pass --batch_size 8); lm_eval.simple_evaluate without batch_size gives 8
  check_greedy      False (default): is_greedy is False for every request, as LLaDA's runs
                    (is_check_greedy=False). True: is_greedy says whether decoding the answer's
                    length from the context, one token a step by confidence (generate.py, k = 0,
                    no CFG: refused with cfg > 0), gives exactly the answer (LLaDA's
                    suffix_greedy_prediction); for tasks scored on it (LAMBADA's acc)
  steps, gen_length, block_length, temperature, remasking, sampler, cache, threshold
                    the fields of generate.py's SamplerSettings (its defaults), with k above
  generate_batch_size   prompts sampled together (default 8)
  dtype, mask_id    default: bfloat16 on a GPU and float32 on CPU; the config's mask_token_id

loglikelihood_rolling: a document (no special tokens) is cut into lm-eval's rolling windows of
the model's max_sequence_length (lm_eval.utils.get_rolling_token_windows with context_len 1):
every token is scored once, as the answer of one window, given the tokens before it in that
window (the tokenizer's BOS, else its EOS, before the first). Full windows thus score
max_sequence_length - 1 tokens given one token of context, and the last window fills its context
with the tokens before its answer. The document's log-likelihood is the sum of the windows'
estimates (each a bound, with its own Monte-Carlo draws).

generate_until: the sampler writes gen_length tokens; the task's max_gen_toks keeps the first
max_gen_toks of them (a larger max_gen_toks than gen_length is refused). The completion is
decoded with special tokens skipped (generate.complete: text after an eos is kept, as the
paper's OpenCompass protocol) and cut before the first of the task's `until` strings. The task's
other generation settings (do_sample, temperature, top_p, ...) are not applied: the sampler's
come from model_args; a warning lists any that disagree. One process: the requests are not
split across ranks.
"""
import logging
import sys

import torch
from lm_eval.api.model import LM
from lm_eval.api.registry import model_registry
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

from generate import SamplerSettings, complete, generate, load_model, resolve_mask_id, sampling_device_and_dtype
from likelihood import encode_pair, estimate, estimator_settings

logger = logging.getLogger(__name__)
MODEL_NAME = "xdlm_llada"


class HarnessDiffusionLM(LM):
    """lm-eval's LM over a LLaDA-class checkpoint (see the module's docstring for the settings)."""

    def __init__(self, pretrained, tokenizer=None, estimator="masked", k=0.0, cfg=0.0, mc_num=128, batch_size=8,
                 seed=1234, draws_per_forward=64, check_greedy=False, generate_batch_size=8, dtype=None, device=None,
                 mask_id=None, max_batch_size=None, **sampler):
        """`sampler`: the other fields of generate.SamplerSettings (steps, gen_length, ...; its defaults
        for the rest)."""
        super().__init__()
        batch_size = _positive_int("batch_size (lm-eval's --batch_size: draws per systematic group)", batch_size)
        generate_batch_size = _positive_int("generate_batch_size", generate_batch_size)
        if max_batch_size is not None:
            raise ValueError("max_batch_size applies to lm-eval's --batch_size auto, which this model does not take: "
                             "--batch_size is the estimator's draws per systematic group")
        if check_greedy not in (True, False):
            raise ValueError(f"check_greedy must be true or false, got {check_greedy!r}")
        if check_greedy and cfg:
            raise ValueError("check_greedy decodes with generate.py, which has no classifier-free guidance: use it "
                             "with cfg=0")
        self.estimator_settings = estimator_settings(estimator, k, cfg=cfg, mc_num=mc_num, batch_size=batch_size,
                                                     seed=seed, draws_per_forward=draws_per_forward)  # before loading
        self.sampler_settings = SamplerSettings.named(f"{MODEL_NAME} model_args", k=k, **sampler)
        if device is not None and str(device).startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device {device!r}: no GPU here (lm-eval's --device defaults to cuda:0); pass "
                             "--device cpu")
        sampling_device_and_dtype(device, dtype)  # refuses a bad dtype name before loading
        self.model, self.tokenizer, self._device = load_model(pretrained, dtype, device, tokenizer_path=tokenizer)
        self.mask_id = resolve_mask_id(mask_id, self.model.config.mask_token_id)
        self.max_length = self.model.config.max_sequence_length
        self.check_greedy = check_greedy
        self.generate_batch_size = generate_batch_size
        self.warned_settings = False
        logger.info(f"{MODEL_NAME}: {pretrained} ({self.model.dtype} on {self.device}); likelihood "
                    f"{self.estimator_settings}; generation {self.sampler_settings}")

    # ------------------------------------------------------------------ likelihood

    def _estimate(self, requests):
        return estimate(self.model, requests, mask_id=self.mask_id, progress=True, **self.estimator_settings)

    def loglikelihood(self, requests, disable_tqdm=False):
        pairs = [encode_pair(self.tokenizer, *req.args) for req in requests]
        greedy = self._greedy(pairs) if self.check_greedy else [False] * len(pairs)
        return [(e.log_likelihood, g) for e, g in zip(self._estimate(pairs), greedy)]

    def _greedy(self, pairs):
        """Per (context, answer): does decoding len(answer) tokens after the context, one a step by
        confidence, give the answer? Batched over requests of one answer length (left padding)."""
        by_length = {}
        for i, (_, answer) in enumerate(pairs):
            by_length.setdefault(len(answer), []).append(i)
        greedy = [False] * len(pairs)
        pad = self.tokenizer.pad_token_id
        for L, members in by_length.items():
            for start in range(0, len(members), self.generate_batch_size):
                batch = members[start:start + self.generate_batch_size]
                P = max(len(pairs[i][0]) for i in batch)
                ids = torch.tensor([[pad] * (P - len(pairs[i][0])) + pairs[i][0] for i in batch], device=self.device)
                mask = torch.tensor([[0] * (P - len(pairs[i][0])) + [1] * len(pairs[i][0]) for i in batch],
                                    device=self.device)
                out = generate(self.model, ids, attention_mask=mask, steps=L, gen_length=L, block_length=L, k=0.0,
                               temperature=0.0, mask_id=self.mask_id)
                for i, row in zip(batch, out[:, P:].tolist()):
                    greedy[i] = row == pairs[i][1]
        return greedy

    def loglikelihood_rolling(self, requests, disable_tqdm=False):
        prefix = self.tokenizer.bos_token_id if self.tokenizer.bos_token_id is not None else self.tokenizer.eos_token_id
        if prefix is None:
            raise ValueError("loglikelihood_rolling needs a token before the document: the tokenizer has no BOS or EOS")
        windows, owner = [], []
        for i, req in enumerate(requests):
            (text,) = req.args
            tokens = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            for context, answer in map(make_disjoint_window,
                                       get_rolling_token_windows(tokens, prefix, self.max_length - 1, context_len=1)):
                windows.append((context, answer))
                owner.append(i)
        totals = [0.0] * len(requests)
        for i, e in zip(owner, self._estimate(windows)):
            totals[i] += e.log_likelihood
        return totals

    # ------------------------------------------------------------------ generation

    def generate_until(self, requests, disable_tqdm=False):
        gen_length = self.sampler_settings.gen_length
        contexts, stops, limits = [], [], []
        for n, req in enumerate(requests):
            context, gen_kwargs = req.args
            gen_kwargs = dict(gen_kwargs or {})
            until = gen_kwargs.pop("until", None) or []
            max_gen_toks = gen_kwargs.pop("max_gen_toks", gen_length)
            if max_gen_toks > gen_length:
                raise ValueError(f"generate_until request {n} asks for max_gen_toks={max_gen_toks} tokens but the "
                                 f"sampler writes gen_length={gen_length}: raise gen_length in model_args")
            self._warn_task_settings(gen_kwargs)
            contexts.append(context)
            stops.append([until] if isinstance(until, str) else list(until))
            limits.append(max_gen_toks)
        order = sorted(range(len(contexts)), key=lambda i: -len(contexts[i]))
        out = [None] * len(contexts)
        for start in range(0, len(order), self.generate_batch_size):
            batch = order[start:start + self.generate_batch_size]
            texts = complete(self.model, self.tokenizer, [contexts[i] for i in batch], self.sampler_settings,
                             self.max_length, stop_words=[stops[i] for i in batch],
                             max_new_tokens=[limits[i] for i in batch], mask_id=self.mask_id)
            for i, text in zip(batch, texts):
                out[i] = text
        return out

    def _warn_task_settings(self, gen_kwargs):
        temperature = self.sampler_settings.temperature
        agree = {"do_sample": temperature > 0, "temperature": temperature}
        differ = {k: v for k, v in gen_kwargs.items() if not (k in agree and v == agree[k])}
        if differ and not self.warned_settings:
            logger.warning(f"{MODEL_NAME}: the task's generation settings {differ} are not applied; the sampler's come "
                           f"from model_args ({self.sampler_settings})")
            self.warned_settings = True


def _positive_int(name, value):
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if isinstance(value, bool) or number < 1 or number != float(value):
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return number


# A lazy entry ("module:class"): registering twice (this file run as __main__, then imported as
# lm_eval_llada) names the same target, and lm-eval imports the module when the model is asked for.
model_registry.register(MODEL_NAME, target=f"lm_eval_llada:{HarnessDiffusionLM.__name__}")


def main(argv=None):
    """lm-eval's command line (the same flags) with this model registered."""
    from lm_eval.__main__ import cli_evaluate

    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    cli_evaluate()


if __name__ == "__main__":
    main()
