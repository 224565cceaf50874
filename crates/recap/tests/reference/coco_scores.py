"""Scores caption pairs with PyPI pycocoevalcap 1.2 (the reference of Video ReCap's
evaluation): per-item CIDEr-D and ROUGE-L, corpus BLEU-1..4. Reads {"preds": [...],
"refs": [...]} on stdin, writes JSON on stdout."""
import json
import sys

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge

data = json.load(sys.stdin)
gts = {i: [r] for i, r in enumerate(data["refs"])}
res = {i: [p] for i, p in enumerate(data["preds"])}
cider, cider_items = Cider().compute_score(gts, res)
rouge, rouge_items = Rouge().compute_score(gts, res)
bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
json.dump(
    {
        "cider": float(cider),
        "cider_items": [float(x) for x in cider_items],
        "rouge": float(rouge),
        "rouge_items": [float(x) for x in rouge_items],
        "bleu": [float(x) for x in bleu],
    },
    sys.stdout,
)
