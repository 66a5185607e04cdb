"""Small local stand-ins for the hub datasets users train on."""
import json
import os

import pyarrow as pa
import pyarrow.parquet as pq


def write_fineweb_like(root, texts, n_files=2):
    """A folder laid out like HuggingFaceFW/fineweb-edu: parquet shards under sample/10BT/ with
    fineweb's columns, and a README whose YAML declares the config 'sample-10BT'."""
    os.makedirs(os.path.join(root, "sample", "10BT"), exist_ok=True)
    for i in range(n_files):
        part = texts[i::n_files]
        table = pa.table({"text": part, "id": [f"<urn:{i}:{j}>" for j in range(len(part))],
                          "url": ["https://example.org"] * len(part), "score": [3.0] * len(part),
                          "token_count": [len(t) // 4 for t in part]})
        pq.write_table(table, os.path.join(root, "sample", "10BT", f"{i:03d}_00000.parquet"))
    with open(os.path.join(root, "README.md"), "w") as f:
        f.write("---\nconfigs:\n- config_name: sample-10BT\n  data_files:\n  - split: train\n"
                "    path: sample/10BT/*\n---\n# fineweb-edu (local sample)\n")
    return root


def write_jsonl(path, rows):
    with open(path, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    return path
