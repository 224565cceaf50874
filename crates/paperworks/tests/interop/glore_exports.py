"""GLoRe's PRM exports through the libraries that train on them.

argv: prm_trl.jsonl math_shepherd.jsonl. Loads both with HF `datasets`, trains a small
byte-level BPE tokenizer on their text (offline), then
- OpenRLHF's ProcessRewardDataset (0.8.x; removed in 0.9) on math_shepherd.jsonl with its own
  example's settings (input / value, placeholder "ки", reward tokens + and -): every step's
  label must land on its placeholder;
- TRL's PRMTrainer.tokenize_row (1.13, trl.experimental.prm; removed later) on prm_trl.jsonl:
  one label per step.
Prints one line per library, "skipped <lib>: <why>" when it is not importable."""
import importlib.metadata
import os
import sys
import types

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
from datasets import load_dataset
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

trl_path, ms_path = sys.argv[1:3]
trl_rows = load_dataset("json", data_files=trl_path, split="train")
ms_rows = load_dataset("json", data_files=ms_path, split="train")

texts = [r["prompt"] + "\n" + "\n".join(r["completions"]) for r in trl_rows] + list(ms_rows["input"])
tok = Tokenizer(models.BPE())
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tok.decoder = decoders.ByteLevel()
tok.train_from_iterator(
    texts,
    trainers.BpeTrainer(
        vocab_size=800,
        special_tokens=["<s>", "</s>", "<pad>", "ки"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    ),
)
hf = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")

try:
    from openrlhf.datasets.process_reward_dataset import ProcessRewardDataset
except ImportError as e:
    print(f"skipped openrlhf: {e}")
else:
    args = types.SimpleNamespace(input_key="input", label_key="value", placeholder_token="ки", reward_tokens=["+", "-"])
    ds = ProcessRewardDataset(ms_rows, hf, 4096, types.SimpleNamespace(args=args))
    plus, minus = hf.convert_tokens_to_ids("+"), hf.convert_tokens_to_ids("-")
    steps = 0
    items = []
    for i in range(len(ds)):
        ids, mask, labels = ds[i]
        got = labels[labels != -100].tolist()
        want = [plus if v == "+" else minus for v in ms_rows[i]["value"]]
        assert got == want, (i, got, want)
        steps += len(got)
        items.append((ids, mask, labels))
    batch = ds.collate_fn(items[:4])
    print(f"openrlhf {importlib.metadata.version('openrlhf')} ProcessRewardDataset: "
          f"{len(ds)} rows, {steps} step labels on their placeholders, batch {tuple(batch[0].shape)}")

try:
    import trl
    from trl.experimental.prm import PRMTrainer
except ImportError as e:
    print(f"skipped trl PRMTrainer: {e}")
else:
    steps = 0
    for r in trl_rows:
        out = PRMTrainer.tokenize_row(r, hf, "\n", None, None, False, False)
        got = [x for x in out["labels"] if x != -100]
        assert got == [int(b) for b in r["labels"]], (got, r["labels"])
        steps += len(got)
    print(f"trl {trl.__version__} PRMTrainer.tokenize_row: {len(trl_rows)} rows, {steps} step labels")
