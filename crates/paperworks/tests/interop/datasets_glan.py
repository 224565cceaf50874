"""GLAN's glan.jsonl and glan.parquet through HF `datasets`: prints `<format> <rows> <seed>...`
with every question and answer seed as read, for the test to compare with the file's own."""
import sys

from datasets import load_dataset

jsonl, parquet = sys.argv[1:3]
for fmt, path in (("json", jsonl), ("parquet", parquet)):
    ds = load_dataset(fmt, data_files=path, split="train")
    assert "messages" in ds.column_names, ds.column_names
    seeds = []
    for row in ds:
        for k in ("question_seed", "answer_seed"):
            v = row[k]
            # an int as read; a float here means the reader changed the value's type
            seeds.append("none" if v is None else (str(v) if isinstance(v, int) else f"float:{v!r}"))
    print(fmt, ds.num_rows, *seeds)
