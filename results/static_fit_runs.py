"""One static fit to MovieLens-1M as in results/students.md: valid HR@10, title@1, then a bundle.

    python results/static_fit_runs.py BATCH LR EPOCHS GENERAL_TEXTS WORK
    # e.g. 64 3e-3 40 0 W; then python -m export encoders --validation --bundle W-bundle --only edgerec-default

GENERAL_TEXTS corpus texts the general student trained on (seed 0, never its validation texts) are held
at its vectors. The rows of students.md without titles as pairs were made before commit c7c2d10, which
added them.
"""

import random
import sys
from pathlib import Path

from export.stages.interactions import load_split
from export.stages.pipeline import ExportConfig, stage_bundle, stage_static
from export.stages.sources import minilm_teacher, movielens_1m_items
from export.stages.static_fit import StaticFitConfig
from export.stages.student import VALID_TEXTS
from export.stages.teacher import load_shards, read_corpus

batch, lr, epochs, count, work = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), Path(sys.argv[5])
records = movielens_1m_items()
split = load_split([r["id"] for r in records])
held: tuple[str, ...] = ()
if count:
    corpus = read_corpus(Path("export/work/corpus/train.txt.gz"))
    lines, _ = load_shards(Path("export/work/teacher-minilm"))
    held = tuple(corpus[i] for i in random.Random(0).sample(list(lines[VALID_TEXTS:]), count))
config = ExportConfig(work=work, out=Path(f"{work}-bundle"), static_base=Path("export/work/students/minilm-L0/model"),
                      timing_rounds=20, static_fit=StaticFitConfig(epochs=epochs, batch_size=batch, learning_rate=lr),
                      static_general_texts=held)
report = stage_static(records, split, config)
print(batch, lr, epochs, count, report["valid"]["fitted"], report["title_at_1"], flush=True)
stage_bundle(minilm_teacher(), records, config)
