"""How much of the one-layer student survives structured pruning, before any recovery: the validation
cosine to the teacher (the student's own validation texts, never trained on) over a grid of kept shares,
with the importance ranking of export/stages/prune.py and, as a control, a seeded random ranking.

    PYTHONPATH=. nice -n 10 python results/prune_grid.py [WORK]     # WORK: export/work (students/minilm-L1, shards, corpus)

Prints a markdown table (results/pruning.md quotes it).
"""

from __future__ import annotations

import copy
import sys
import time
from pathlib import Path

import numpy as np

SHARES = (1.0, 0.75, 0.5, 0.25)
RANDOM_CONTROLS = ((0.5, 1.0), (1.0, 0.5), (0.5, 0.5))


def main(work: Path) -> None:
    from export.stages.prune import importance, parameter_count, prune_body, prune_texts
    from export.stages.sources import read_teacher
    from export.stages.student import make_student, mean_cosine, padded

    source = work / "students" / "minilm-L1" / "model"
    facts = read_teacher(source, "minilm-L1")
    began = time.perf_counter()
    data = prune_texts(work / "corpus" / "train.txt.gz", work / "teacher-minilm", source / "tokenizer.json",
                       facts.max_length)
    full = make_student(source, 1).eval()
    batches = [padded(data.ids, data.calibration[s : s + 64]) for s in range(0, len(data.calibration), 64)]
    heads, neurons = importance(full.body, batches)
    rng = np.random.default_rng(0)
    random_heads, random_neurons = rng.random(heads.shape), rng.random(neurons.shape)

    def row(h: float, f: float, ranking: str) -> str:
        model = copy.deepcopy(full)
        scores = (heads, neurons) if ranking == "importance" else (random_heads, random_neurons)
        prune_body(model.body, *scores, h, f)
        layer_parameters = parameter_count(model.body.encoder)
        cosine = mean_cosine(model, data.ids, data.targets, data.valid, 1)
        return f"| {h:.0%} | {f:.0%} | {ranking} | {layer_parameters:,} | {cosine:.4f} |"

    print(f"{len(data.valid):,} validation texts, {len(data.calibration):,} calibration texts "
          f"(loaded in {time.perf_counter() - began:.0f} s)\n")
    print("| heads kept | FFN neurons kept | ranking | layer parameters | validation cosine to the teacher |")
    print("|---|---|---|---|---|")
    for h in SHARES:
        for f in SHARES:
            print(row(h, f, "importance"), flush=True)
    for h, f in RANDOM_CONTROLS:
        print(row(h, f, "random"), flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("export/work"))
