"""Training data for llada_cpt.py: local files, local dataset folders (a hub snapshot or a
`datasets` Arrow cache) or the hub, streamed or not; texts packed into blocks, or
(prompt, answer) pairs padded to one block each."""
import glob
import json
import logging
import os
from itertools import chain

import datasets
import pyarrow as pa
import pyarrow.compute as pc

logger = logging.getLogger(__name__)

# Local data files: extension -> the `datasets` builder that reads it. The flags' help and
# every error about file formats read this table.
LOCAL_FILE_BUILDERS = {"txt": "text", "text": "text", "json": "json", "jsonl": "json", "parquet": "parquet"}
LOCAL_FILE_FORMATS = ", ".join("." + ext for ext in LOCAL_FILE_BUILDERS)


def builder_for(path):
    """The `datasets` builder of a local data file, or None for an extension not in the table."""
    return LOCAL_FILE_BUILDERS.get(path.rsplit(".", 1)[-1].lower())


LOCAL_DATASET_LAYOUTS = (
    "(1) a hub snapshot, as `hf download REPO --repo-type dataset --local-dir DIR` leaves it: "
    "a README.md whose YAML header lists `configs`, or data files (" + LOCAL_FILE_FORMATS + ") such as "
    "sample/10BT/*.parquet; (2) a `datasets` Arrow cache folder, as load_dataset leaves it in its cache "
    "(e.g. HuggingFaceFW___fineweb-edu): CONFIG/VERSION/HASH/dataset_info.json beside *.arrow files, "
    "with --dataset_config_name naming CONFIG")


def arrow_cache_files(folder, config_name):
    """{split: [.arrow files]} when `folder` is a `datasets` Arrow cache folder of a dataset
    (CONFIG/VERSION/HASH/ with dataset_info.json and NAME-SPLIT[-00000-of-0000N].arrow, what
    load_dataset leaves in HF_DATASETS_CACHE), else None. load_dataset cannot read that layout back
    by path: it treats the folder as data files of a config 'default'."""
    builds = [os.path.dirname(p)
              for p in glob.glob(os.path.join(glob.escape(folder), "*", "*", "*", "dataset_info.json"))
              if not p.split(os.sep)[-2].endswith(".incomplete")]  # an interrupted build
    if not builds:
        return None
    configs = sorted({b.split(os.sep)[-3] for b in builds})
    if config_name is None and len(configs) == 1:
        config_name = configs[0]
    if config_name not in configs:
        raise ValueError(f"--dataset_name {folder} is a `datasets` Arrow cache folder: set --dataset_config_name to "
                         f"one of its configs ({', '.join(configs)}), got {config_name!r}")
    builds = sorted((b for b in builds if b.split(os.sep)[-3] == config_name), key=os.path.getmtime)
    if len(builds) > 1:
        logger.warning(f"{len(builds)} cached builds of config {config_name!r} in {folder}; "
                       f"using the newest, {builds[-1]}")
    with open(os.path.join(builds[-1], "dataset_info.json")) as f:
        splits = json.load(f).get("splits") or {}
    files = {}
    for split in splits:
        shards = [os.path.join(glob.escape(builds[-1]), f"*-{split}{tail}")
                  for tail in (".arrow", "-[0-9]*-of-[0-9]*.arrow")]
        files[split] = sorted(chain.from_iterable(glob.glob(pattern) for pattern in shards))
        if not files[split]:
            raise ValueError(f"the Arrow cache {builds[-1]} lists split {split!r} but holds no .arrow file of it")
    return files


def load_local_dataset(folder, data_args):
    """A local --dataset_name folder: an Arrow cache is memory-mapped in place (no copy; streamed
    from the same files with --streaming); a hub snapshot goes to load_dataset as a hub name would."""
    files = arrow_cache_files(folder, data_args.dataset_config_name)
    if files is not None:
        raw = datasets.DatasetDict(
            {split: datasets.concatenate_datasets([datasets.Dataset.from_file(f) for f in shards])
             for split, shards in files.items()})
        if data_args.streaming:
            raw = datasets.IterableDatasetDict({split: ds.to_iterable_dataset(num_shards=len(files[split]))
                                                for split, ds in raw.items()})
        return raw
    if _readme_declares_configs(folder):
        return None  # load_dataset reads the configs (e.g. sample-10BT -> sample/10BT/*) from the README
    if not any(builder_for(name) for _, _, names in os.walk(folder) for name in names):
        raise ValueError(f"--dataset_name {folder} is a local folder in neither layout accepted: "
                         f"{LOCAL_DATASET_LAYOUTS}")
    if data_args.dataset_config_name:
        # load_dataset would take every data file as one config 'default' and fail on the name
        raise ValueError(f"--dataset_name {folder} holds data files but no README.md whose YAML header lists "
                         f"`configs`, so no config {data_args.dataset_config_name!r}: download the dataset card with "
                         "the data (hf download ... --include README.md) or leave out --dataset_config_name")
    return None


def _readme_declares_configs(folder):
    readme = os.path.join(folder, "README.md")
    if not os.path.isfile(readme):
        return False
    with open(readme, encoding="utf-8", errors="replace") as f:
        text = f.read()
    header = text.split("---")[1] if text.startswith("---") else ""  # the YAML between the first two ---
    return any(line.startswith("configs:") for line in header.splitlines())


STREAMED_VALIDATION_TEXTS = 256  # held out from the start of a stream without a validation split (--max_eval_samples)


def load_raw_datasets(data_args, model_args, seed, need_validation):
    """The raw splits: train, and validation (the data's own, --validation_file, or cut from train);
    the text columns checked (validation's only when need_validation)."""
    hub = dict(cache_dir=model_args.cache_dir, token=model_args.token, streaming=data_args.streaming)
    if data_args.dataset_name:
        raw = None
        if os.path.isdir(data_args.dataset_name):
            raw = load_local_dataset(data_args.dataset_name, data_args)
        if raw is None:
            raw = datasets.load_dataset(data_args.dataset_name, data_args.dataset_config_name, **hub)
    else:
        files = {"train": data_args.train_file}
        if data_args.validation_file:
            files["validation"] = data_args.validation_file
        builders = {builder_for(f) for f in files.values()}
        if len(builders) > 1:
            raise ValueError("--train_file and --validation_file must have the same format, "
                             f"got {sorted(files.values())}")
        builder = builders.pop()
        try:
            raw = datasets.load_dataset(builder, data_files=files, **hub)
        except datasets.exceptions.DatasetGenerationError as error:
            if builder == "json":  # Arrow reads a column as one type: name the row that breaks it
                for split, path in files.items():
                    check_json_types(path, data_args, split)
            raise ValueError(f"{' and '.join(files.values())} could not be read: {error.__cause__ or error}") from None
    if "train" not in raw:
        raise ValueError(f"the dataset has no 'train' split (splits: {', '.join(raw.keys())})")
    if not data_args.streaming:  # before a validation split reorders the rows
        for split, ds in raw.items():
            if split == "validation" and not need_validation:
                continue
            source = (f"--{split}_file {getattr(data_args, split + '_file')}" if not data_args.dataset_name
                      else f"--dataset_name {data_args.dataset_name}, split {split}")
            check_text_columns(ds, columns_read(ds.column_names, data_args, split), source)
    if "validation" not in raw and data_args.validation_split_percentage > 0:
        # Cut whether or not this run evaluates, so that the training data does not depend on --do_eval (a
        # relaunch that adds it continues the same stream), as run_clm.py does.
        if data_args.streaming:
            # Hold out the first texts of the stream for validation.
            n = data_args.max_eval_samples or STREAMED_VALIDATION_TEXTS
            raw["validation"] = raw["train"].take(n)
            raw["train"] = raw["train"].skip(n)
        elif len(raw["train"]) > 1:
            split = raw["train"].train_test_split(test_size=data_args.validation_split_percentage / 100, seed=seed)
            raw["train"], raw["validation"] = split["train"], split["test"]
    return raw


def columns_read(columns, data_args, split):
    """The columns tokenization reads: (prompt, answer), or the text column (--text_column,
    else 'text', else the only column)."""
    if data_args.prompt_column:
        wanted = [data_args.prompt_column, data_args.answer_column]
    else:
        wanted = [data_args.text_column or ("text" if "text" in columns or len(columns) != 1 else columns[0])]
    for col in wanted:
        if col not in columns:
            hint = "" if data_args.prompt_column else "; set --text_column"
            what = "column" if data_args.prompt_column else "text column"
            raise ValueError(f"{what} {col!r} not in the {split} data (columns: {', '.join(columns)}){hint}")
    return wanted


def check_text_columns(ds, columns, source):
    """Every value tokenization reads is a string; else the file (or dataset), row and column.
    Read from the Arrow columns, without a pass over the rows in Python."""
    for col in columns:
        values = ds.data.column(col)
        if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
            row = 0 if pa.types.is_null(values.type) else pc.index(pc.is_valid(values), True).as_py()
            raise ValueError(f"{source}: row {row + 1} (counting from 1), column {col!r}: expected text (a string), "
                             f"got {values[row].as_py()!r} (the column holds {values.type} values)")
        if values.null_count:
            row = pc.index(pc.is_null(values), True).as_py()
            raise ValueError(f"{source}: row {row + 1} (counting from 1), column {col!r}: expected text (a string), "
                             "got null")


def json_kind(value):
    """A JSON value's type, as an error message names it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return {str: "text (a string)", int: "a number", float: "a number", list: "a list"}.get(type(value), "an object")


def json_rows(path):
    """The rows of a JSON Lines file one by one, up to a line that is not JSON; or of a file holding one
    JSON list of rows."""
    with open(path, encoding="utf-8") as f:
        is_list = f.read(4096).lstrip().startswith("[")
        f.seek(0)
        try:
            if is_list:
                yield from json.load(f)
                return
            for line in f:
                if line.strip():
                    yield json.loads(line)
        except json.JSONDecodeError:
            return  # the generic error (Arrow's) names it


def check_json_types(path, data_args, split):
    """For a JSON file Arrow refused: the first value tokenization reads that is not a string, else the
    first value whose type differs from the values before it in its column (Arrow reads a column as
    one type), as a ValueError naming the file, row and column; nothing if the file shows neither."""
    source = f"--{split}_file {path}"
    read, kinds = None, {}
    for i, row in enumerate(json_rows(path)):
        if not isinstance(row, dict):
            raise ValueError(f"{source}: row {i + 1} (counting from 1) is {json_kind(row)}, not an object of columns")
        read = read or columns_read(list(row), data_args, split)
        for col, value in row.items():
            kind = json_kind(value)
            if col in read:
                expected = "text (a string)"
            elif kind == "null":
                continue  # a null fits a column of any type
            else:
                expected = kinds.setdefault(col, kind)
            if kind != expected:
                shown = "null" if value is None else repr(value)
                raise ValueError(f"{source}: row {i + 1} (counting from 1), column {col!r}: expected {expected}"
                                 f"{'' if col in read else ' (as in the rows before)'}, got {shown}")


def first_row(ds, what):
    try:
        return next(iter(ds))
    except StopIteration:
        raise ValueError(f"the {what} data is empty") from None


def tokenize_and_pack(raw, tokenizer, data_args, block_size, training_args):
    """Text data: texts + eos, concatenated and cut into block_size blocks (remainder dropped).
    (prompt, answer) data: prompt + answer + eos, padded with eos to block_size (LLaDA's SFT
    format), with prompt_mask = 1 on prompt positions."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no eos token, needed to separate packed texts")
    out = {}
    for split, ds in raw.items():
        columns = list(first_row(ds, split).keys())
        read = columns_read(columns, data_args, split)
        if data_args.prompt_column:
            # Streamed batches are tokenized lazily in the dataloader workers: each batch logs its own drops.
            fn = lambda batch: pair_blocks(batch, tokenizer, data_args, block_size, eos, log_drops=data_args.streaming)  # noqa: E731
        else:
            fn = lambda batch, col=read[0]: pack_texts(batch, tokenizer, col, block_size, eos)  # noqa: E731
        kwargs = dict(batched=True, remove_columns=columns)
        if not data_args.streaming:
            kwargs.update(num_proc=data_args.preprocessing_num_workers,
                          load_from_cache_file=not data_args.overwrite_cache,
                          desc=f"Tokenizing and packing {split} into blocks of {block_size}")
        with training_args.main_process_first(desc="tokenizing"):
            out[split] = ds.map(fn, **kwargs)
        if data_args.prompt_column and not data_args.streaming:
            dropped = len(ds) - len(out[split])  # pair_blocks keeps one row per pair it does not drop
            log = logger.warning if dropped else logger.info
            log(f"{split}: dropped {dropped} of {len(ds)} (prompt, answer) pairs "
                f"whose prompt fills --block_size {block_size}")
    return out


def texts_of(batch, col):
    """The column's texts; streamed data was not checked before (check_text_columns), so a value
    that is not a string is named here."""
    bad = [v for v in batch[col] if not isinstance(v, str)]
    if bad:
        raise ValueError(f"a streamed row's column {col!r}: expected text (a string), got {bad[0]!r}")
    return batch[col]


def pack_texts(batch, tokenizer, col, block_size, eos):
    ids = [t + [eos] for t in tokenizer(texts_of(batch, col), add_special_tokens=False)["input_ids"]]
    flat = list(chain.from_iterable(ids))
    n = len(flat) // block_size * block_size
    return {"input_ids": [flat[i:i + block_size] for i in range(0, n, block_size)]}


def pair_blocks(batch, tokenizer, data_args, block_size, eos, log_drops=False):
    prompts = tokenizer(texts_of(batch, data_args.prompt_column), add_special_tokens=False)["input_ids"]
    answers = tokenizer(texts_of(batch, data_args.answer_column), add_special_tokens=False)["input_ids"]
    input_ids, prompt_mask = [], []
    for p, a in zip(prompts, answers):
        if len(p) >= block_size:  # no answer token fits, nothing to learn from: dropped (and counted)
            continue
        seq = (p + a + [eos])[:block_size]
        input_ids.append(seq + [eos] * (block_size - len(seq)))
        prompt_mask.append([1] * len(p) + [0] * (block_size - len(p)))
    dropped = len(prompts) - len(input_ids)
    if log_drops and dropped:
        logger.warning(f"dropped {dropped} of {len(prompts)} (prompt, answer) pairs of a batch "
                       f"whose prompt fills --block_size {block_size}")
    return {"input_ids": input_ids, "prompt_mask": prompt_mask}



def training_and_validation_blocks(data_args, model_args, tokenizer, block_size, training_args):
    """(training blocks or None, validation blocks or None), as --do_train and --do_eval ask."""
    raw = load_raw_datasets(data_args, model_args, training_args.seed, training_args.do_eval)
    for split, needed in (("train", training_args.do_train), ("validation", training_args.do_eval)):
        if not needed:
            raw.pop(split, None)  # never tokenized (the validation split is already cut from train)
    blocks = tokenize_and_pack(raw, tokenizer, data_args, block_size, training_args)
    train_dataset = eval_dataset = None
    if training_args.do_train:
        train_dataset = blocks["train"]
        if data_args.max_train_samples is not None and not data_args.streaming:
            train_dataset = train_dataset.select(range(min(len(train_dataset), data_args.max_train_samples)))
        if data_args.streaming:  # the same seed gives a resumed run the same order of blocks
            train_dataset = train_dataset.shuffle(seed=training_args.seed, buffer_size=data_args.shuffle_buffer_size)
        held_out = (f"; or --max_eval_samples (default {STREAMED_VALIDATION_TEXTS}) reaches past the stream's "
                    "texts, which a stream without a validation split holds out from its start (none with "
                    "--validation_split_percentage 0)") if data_args.streaming else ""
        first_row(train_dataset, f"training (no block of {block_size} tokens; texts too short for --block_size?"
                                 f"{held_out})")
        if not data_args.streaming:
            logger.info(f"{len(train_dataset)} training blocks of {block_size} tokens (from {len(raw['train'])} rows)")
    if training_args.do_eval:
        if "validation" not in blocks:
            raise ValueError("--do_eval needs a validation split, --validation_file "
                             "or --validation_split_percentage > 0")
        eval_dataset = blocks["validation"]
        if data_args.max_eval_samples is not None and not data_args.streaming:
            # A random sample, the same for every run (seed 0, not --seed): the first blocks
            # all come from the first validation texts.
            n = min(len(eval_dataset), data_args.max_eval_samples)
            eval_dataset = eval_dataset.shuffle(seed=0).select(range(n))
        first_row(eval_dataset, f"validation (no block of {block_size} tokens)")
    return train_dataset, eval_dataset
