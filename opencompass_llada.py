"""OpenCompass model wrapper for LLaDA-class diffusion models (unforked `opencompass`).

Configs name it by its dotted path, `type="opencompass_llada.DiffusionLM"`, with this
repository on PYTHONPATH (scripts/eval_opencompass.sh sets it). Each batch OpenCompass
hands over is generated in one call of `generate.generate` (left-padded prompts), with
the sampling settings of the config.
"""
from typing import List, Optional

import torch
import transformers
from opencompass.models.base import BaseModel
from opencompass.registry import MODELS, TEXT_POSTPROCESSORS

import modeling_llada  # noqa: F401  (native LLaDA model for model_type "llada")
from generate import SAMPLERS, decode_completion, generate


@MODELS.register_module()
class DiffusionLM(BaseModel):
    """A diffusion LM checkpoint generating `gen_length` tokens in `steps` steps.

    k = 0 is LLaDA's sampler, k > 0 the XDLM sampler (re-editing budget k/(1-k)).
    Completions are cut at the first eos and at the dataset's stop words; a stop word in
    `keep_stop_words` stays in the text (MBPP's scorer needs its "[DONE]").
    """

    def __init__(self, path: str, tokenizer_path: Optional[str] = None, max_seq_len: int = 4096,
                 steps: int = 32, gen_length: int = 256, block_length: int = 256, k: float = 0.0,
                 temperature: float = 0.0, remasking: str = "low_confidence", sampler: str = "confidence",
                 dtype: Optional[str] = None, keep_stop_words=("[DONE]",), meta_template: Optional[dict] = None,
                 generation_kwargs: Optional[dict] = None):
        if generation_kwargs:
            raise ValueError(f"generation_kwargs {generation_kwargs} are not used: set steps, gen_length, block_length, "
                             "k, temperature, remasking and sampler on the model config")
        if max_seq_len <= gen_length:
            raise ValueError(f"max_seq_len ({max_seq_len}) must exceed gen_length ({gen_length}): prompts need room")
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
        super().__init__(path=path, max_seq_len=max_seq_len, meta_template=meta_template)
        self.settings = dict(steps=steps, gen_length=gen_length, block_length=block_length, k=k,
                             temperature=temperature, remasking=remasking, sampler=sampler)
        self.keep_stop_words = tuple(keep_stop_words)
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = getattr(torch, dtype or ("bfloat16" if self.device == "cuda" else "float32"))
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(tokenizer_path or path)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = transformers.AutoModel.from_pretrained(path, dtype=dtype).to(self.device).eval()

    def get_token_len(self, prompt: str) -> int:
        return len(self.tokenizer(prompt)["input_ids"])

    def generate(self, inputs: List[str], max_out_len: int, stopping_criteria: List[str] = ()) -> List[str]:
        enc = self.tokenizer(inputs, return_tensors="pt", padding=True)
        # prompt + completion must fit the model: keep the end of over-long prompts
        keep = self.max_seq_len - self.settings["gen_length"]
        ids, mask = enc["input_ids"][:, -keep:].to(self.device), enc["attention_mask"][:, -keep:].to(self.device)
        out = generate(self.model, ids, attention_mask=mask, **self.settings)
        texts = []
        for row in out[:, ids.shape[1]:]:
            text = decode_completion(self.tokenizer, row[:max_out_len])
            for stop in stopping_criteria:
                at = text.find(stop)
                if at >= 0:
                    text = text[:at + len(stop)] if stop in self.keep_stop_words else text[:at]
            texts.append(text)
        return texts


@TEXT_POSTPROCESSORS.register_module("first_line")
def first_line(text: str) -> str:
    """The first non-empty line, stripped (next-line completion tasks)."""
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""
