"""Test-split HR/NDCG of a `python -m export static` work folder's fitted table and the item vectors its bundle
indexes, beside popularity, the general student and the collaborative targets (full ranking over all items,
history excluded).

    python results/static_movielens_eval.py WORK [BASE]   # BASE: the general student's model folder
"""

import sys
from pathlib import Path

import numpy as np

from edgerec.items import item_text
from export.stages.interactions import load_split
from export.stages.ranking import evaluate, popularity_scorer, vector_scorer
from export.stages.sources import movielens_1m_items
from export.stages.static_embed import StaticEncoder

work = Path(sys.argv[1])
base = Path(sys.argv[2] if len(sys.argv) > 2 else "export/work/students/minilm-L0/model")
records = movielens_1m_items()
split = load_split([r["id"] for r in records])
items = [item_text(r, ("title", "year", "genres")) for r in records]
tokenizer = base / "tokenizer.json"
rows = {"popularity": None,
        "general student": StaticEncoder(np.load(base / "rows.f16.npy"), tokenizer).encode(items),
        "targets": np.load(work / "targets.npy"),
        "fitted": StaticEncoder(np.load(work / "static-rows.npy"), tokenizer).encode(items),
        "index (item-vectors.npy)": np.load(work / "item-vectors.npy")}
out = {name: evaluate(popularity_scorer(split) if vectors is None else vector_scorer(vectors, 10), split, "test")
       for name, vectors in rows.items()}
for name, metrics in out.items():
    print(name, {m: round(x, 4) for m, x in metrics.items()})
for name in ("fitted", "index (item-vectors.npy)"):
    print(f"{name} / popularity HR@10:", round(out[name]["hr@10"] / out["popularity"]["hr@10"], 2))
