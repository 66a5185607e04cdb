"""A model's config for training: this repository's LLaDA classes or, with --model_implementation
remote, the checkpoint's own code; its vocabulary width and length; the mask id.
"""
import glob
import json
import logging
import os
import re

from transformers import AutoConfig, PretrainedConfig
from transformers.dynamic_module_utils import get_class_from_dynamic_module

from modeling_llada import LLaDAConfig

logger = logging.getLogger(__name__)

HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]*[A-Za-z0-9]")  # owner/name


def model_source(path):
    """(path, kind) of a model to load: a model folder (config.json and weights: *.safetensors or
    pytorch_model*.bin, every shard of a weights index) as an absolute path, kind "folder"; or a hub
    id owner/name that is no local path, kind "hub id" ("outputs/typo" with outputs/ present is a
    missing local folder). Anything else raises ValueError saying what is wrong (the caller names
    the flag or variable)."""
    if os.path.isdir(path):
        problem = model_folder_problem(path)
        if problem:
            raise ValueError(f"is not a model folder: it {problem}")
        return os.path.abspath(path), "folder"
    if os.path.exists(path):
        raise ValueError("is a file: give the model's folder (config.json and weights)")
    if HUB_ID.fullmatch(path) and ".." not in path and not os.path.isdir(path.split("/")[0]):
        return path, "hub id"
    raise ValueError("no such model folder, and not a hub id (owner/name): give a model folder (config.json and "
                     "weights) or a hub id")


def model_folder_problem(folder):
    """What keeps `folder` from being a model folder ("has no config.json", ...), or None."""
    if not os.path.isfile(os.path.join(folder, "config.json")):
        steps = sorted(int(m.group(1)) for name in (os.listdir(folder) if os.path.isdir(folder) else ())
                       if (m := re.fullmatch(r"checkpoint-(\d+)", name)))
        return "has no config.json" + (f" (it holds training checkpoints, e.g. checkpoint-{steps[-1]}: "
                                       "give one of them)" if steps else "")
    for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if os.path.isfile(os.path.join(folder, index)):
            try:
                with open(os.path.join(folder, index)) as f:
                    shards = sorted(set(json.load(f)["weight_map"].values()))
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
                return f"has an unreadable {index} ({type(e).__name__}: {e})"
            missing = [s for s in shards if not os.path.isfile(os.path.join(folder, s))]
            if not shards or missing:
                return f"lacks shards its {index} names: {', '.join(missing) or 'it names none'}"
            return None
    if not any(glob.glob(os.path.join(glob.escape(folder), p)) for p in ("*.safetensors", "pytorch_model*.bin")):
        return "has no weights (*.safetensors or pytorch_model*.bin)"
    return None


def config_file(model_args):
    """(the config's name or path, its config.json as a dict: what was actually given)."""
    name = model_args.config_name or model_args.model_name_or_path
    config_dict, _ = PretrainedConfig.get_config_dict(name, cache_dir=model_args.cache_dir,
                                                      revision=model_args.model_revision, token=model_args.token)
    return name, config_dict


def check_remote_code(name, config_dict):
    """--model_implementation remote needs the checkpoint's own code: an auto_map in its config,
    and (for a local folder) the code files it points at."""
    auto_map = config_dict.get("auto_map") or {}
    if not (auto_map.get("AutoConfig") and (auto_map.get("AutoModel") or auto_map.get("AutoModelForCausalLM"))):
        raise ValueError(f"--model_implementation remote runs the checkpoint's own code, but {name}'s config has no "
                         "auto_map for AutoConfig and AutoModel (no code ships with it); "
                         "use --model_implementation native")
    if os.path.isdir(name):
        for module_file in code_files(auto_map):
            if not os.path.isfile(os.path.join(name, module_file)):
                raise ValueError(f"--model_implementation remote: {name}'s config points at {module_file}, "
                                 "which is not in the folder; copy the checkpoint's code files there "
                                 "or use --model_implementation native")


def code_files(auto_map):
    """The code files a config's auto_map points at ("module.Class", "repo--module.Class", or a list
    of them for a tokenizer's slow and fast classes), as file names in the model's folder."""
    pointers = [p for v in auto_map.values() for p in (v if isinstance(v, (list, tuple)) else [v]) if p]
    return sorted({p.split("--")[-1].rsplit(".", 1)[0] + ".py" for p in pointers})


def load_config(model_args, config_dict=None):
    """The model config (config_dict: config_file's, if already read)."""
    name = model_args.config_name or model_args.model_name_or_path
    if config_dict is None:
        _, config_dict = config_file(model_args)
    hub = dict(cache_dir=model_args.cache_dir, revision=model_args.model_revision, token=model_args.token)
    if config_dict.get("model_type") == "llada" and model_args.model_implementation == "native":
        # The auto_map pointers at LLaDA's own code files stay (see modeling_llada.LLADA_AUTO_MAP).
        return LLaDAConfig.from_dict(config_dict)
    remote_config = config_dict.get("auto_map", {}).get("AutoConfig")
    if model_args.model_implementation == "remote":
        check_remote_code(name, config_dict)
        # AutoConfig would pick the class registered for the model type (ours, for llada) over the
        # checkpoint's code even with trust_remote_code; a config of the checkpoint's own class then
        # also makes AutoModel take the checkpoint's model code.
        config_class = get_class_from_dynamic_module(remote_config, name, **hub)
        return config_class.from_pretrained(name, **hub)
    return AutoConfig.from_pretrained(name, trust_remote_code=model_args.trust_remote_code, **hub)


def model_vocab_size(config):
    """The width of the embedding and output head (LLaDA pads it past the tokenizer's vocab_size);
    None when the config gives neither."""
    return getattr(config, "embedding_size", None) or getattr(config, "vocab_size", None)


def max_length(config):
    for name in ("max_sequence_length", "max_position_embeddings"):
        if getattr(config, name, None):
            return getattr(config, name)
    return None


def resolve_mask_id(config, tokenizer, override):
    """The mask id: --mask_token_id wins, then the model config's mask_token_id, then the
    tokenizer's mask token. Only values actually given count (the caller sets the config's field
    to None when its config.json has none): the config and the tokenizer must agree unless
    --mask_token_id chooses, and then it is warned about. The mask may not share the tokenizer's eos
    or pad id (packed data ends every text with eos)."""
    found = {"--mask_token_id": override, "the model config's mask_token_id": getattr(config, "mask_token_id", None),
             "the tokenizer's mask token": tokenizer.mask_token_id}
    found = {k: v for k, v in found.items() if v is not None}
    if not found:
        raise ValueError("no mask token id: the model config has no mask_token_id and the tokenizer no mask token; "
                         "pass --mask_token_id")
    source, mask_id = next(iter(found.items()))
    others = {k: v for k, v in found.items() if v != mask_id}
    if others and override is None:
        raise ValueError(f"mask token ids disagree: {found}; pass --mask_token_id to choose one")
    if others:
        logger.warning(f"--mask_token_id {override} overrides {others}")
    logger.info(f"mask id {mask_id}, from {source}")
    clashes = [name for name in ("eos", "pad") if getattr(tokenizer, f"{name}_token_id") == mask_id]
    if clashes:
        raise ValueError(f"mask token id {mask_id} (from {source}) is the tokenizer's {' and '.join(clashes)} "
                         "token id: the eos after every packed text (and the padding) would read as a mask; give the "
                         "mask an id of its own with --mask_token_id")
    N = model_vocab_size(config)
    if not 0 <= mask_id < N:
        raise ValueError(f"mask token id {mask_id} is outside the model's vocabulary [0, {N})")
    return mask_id
