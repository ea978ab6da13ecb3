"""How the BM25 share is damped, chosen on the validation sets only: the general model's cosine fused
with BM25 as `cosine + w x damping x BM25 / best`, for damping rules over a grid fixed in advance.

    python results/fusion_damping.py      # writes results/fusion-damping.md (about a minute)

Rules: none (plain); the margin (best - second) / best, alone or for queries of up to 10 words fading
to none at 30 (what edgerec did before); the coverage (the share of the query's idf that its best BM25
document holds) to a power, fading the same way (edgerec.lexical.damping, the chosen rule); the two
multiplied; and the chosen rule at other weights. Ratios are to stock all-MiniLM-L6-v2 fused + dynamic
INT8 on the same sets (results/encoders-validation.md). The test sets (results/encoders.md) are not read.
"""

import time
from pathlib import Path

import numpy as np

from edgerec.bundle.reader import open_bundle
from edgerec.encoder import TextEncoder, clean_text
from edgerec.lexical import COVERAGE_POWER, LONG_QUERY, SHORT_QUERY, LexicalIndex, WordSplitter
from export.measure.fusion import bm25_matrix, query_damping, score_fusion
from export.stages.general_model import FUSION_WEIGHT
from export.measure.text_tasks import score_matrix, text_tasks

MODEL = Path("artifacts/general")
# stock all-MiniLM-L6-v2 fused + dynamic INT8 on the validation sets (results/encoders-validation.md)
ANCHOR = {"bbc-headline-val": 0.788, "bbc-paragraph-val": 0.719, "wordnet-val": 0.158}


def fade(words):
    """0 up to 10 words, 1 from 30 on, linear between (the runtime's SHORT_QUERY and LONG_QUERY)."""
    return np.clip((words[:, None] - SHORT_QUERY) / (LONG_QUERY - SHORT_QUERY), 0.0, 1.0)


def faded(trust, words):
    """A short query's damping ``trust`` (one per query), fading to none for long ones."""
    t = fade(words)
    return trust[:, None] * (1 - t) + t


POWERS, WEIGHTS = (1, 2, 3, 4, 6), (0.2, 0.3, 0.4, 0.5)
# Each rule: (dense, BM25 / best, words, margin, coverage) -> fused scores
RULES = {
    "cosine alone": lambda d, s, n, m, c: d,
    "plain, w 0.3": lambda d, s, n, m, c: d + 0.3 * s,
    "margin, w 0.3": lambda d, s, n, m, c: d + 0.3 * m[:, None] * s,
    "margin fading from 10 to 30 words, w 0.3 (before)": lambda d, s, n, m, c: d + 0.3 * faded(m, n) * s,
    **{f"margin^0.5 x coverage^{p} fading, w 0.3": (lambda d, s, n, m, c, p=p: d + 0.3 * faded(np.sqrt(m) * c ** p, n) * s)
       for p in (1, 2, 3)},
    # the coverage rule: power and weight chosen together over this grid
    **{f"coverage^{p} fading, w {w}": (lambda d, s, n, m, c, p=p, w=w: d + w * faded(c ** p, n) * s)
       for p in POWERS for w in WEIGHTS},
}
CHOSEN = f"coverage^{COVERAGE_POWER} fading, w {FUSION_WEIGHT}"


def main() -> None:
    started = time.time()
    model = open_bundle(MODEL, model_ok=True)
    encoder = TextEncoder(model.path("encoder"), model.path("tokenizer"), model.manifest.encoder, threads=2)
    split = WordSplitter.from_file(model.path("tokenizer"))
    tasks = [t for t in text_tasks(validation=True).tasks if t.name in ANCHOR]
    scores: dict[str, dict[str, float]] = {name: {} for name in RULES}
    sizes = []
    for task in tasks:
        queries, docs = list(task.data.queries), list(task.data.docs)
        encode = lambda texts: encoder.encode([clean_text(t) for t in texts], batch_size=32)  # noqa: E731
        dense = encode(queries) @ encode(docs).T
        index = LexicalIndex.build(docs, split)
        lexical = bm25_matrix(index, queries).astype(np.float64)
        words, coverage = query_damping(index, queries)
        best = lexical.max(axis=1, keepdims=True)
        scaled = np.divide(lexical, best, out=np.zeros_like(lexical), where=best > 0)
        margin = 1.0 - np.sort(scaled, axis=1)[:, -2]
        sizes.append(f"{task.name}: {len(queries):,} queries, words p10/p50/p90 "
                     f"{'/'.join(str(int(x)) for x in np.percentile(words, [10, 50, 90]))}")
        shipped = score_fusion(dense, lexical, FUSION_WEIGHT, (words, coverage))  # the runtime's own rule
        if not np.allclose(shipped, RULES[CHOSEN](dense, scaled, words, margin, coverage)):
            raise SystemExit(f"{CHOSEN} is not what edgerec.lexical.damping does")
        for name, rule in RULES.items():
            matrix = rule(dense, scaled, words, margin, coverage)
            scores[name][task.name] = score_matrix(task, lambda q, d, m=matrix: m) / ANCHOR[task.name]
    names = [t.name for t in tasks]
    lines = ["# Damping the BM25 share, chosen on the validation sets (`python results/fusion_damping.py`)", "",
             f"Measured {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC. The shipped general model "
             f"(`{MODEL}`) fused with BM25 over each set's documents; ratios to stock all-MiniLM-L6-v2 fused + "
             "dynamic INT8 on the same sets. Validation sets only (the training side of the corpus): "
             + "; ".join(sizes) + ".", "",
             "| rule | " + " | ".join(names) + " | mean | lowest |", "|---|" + "---|" * (len(names) + 2)]
    for name, row in scores.items():
        values = [row[n] for n in names]
        mark = "**" if name == CHOSEN else ""
        lines.append(f"| {mark}{name}{mark} | " + " | ".join(f"{v:.3f}" for v in values)
                     + f" | {np.mean(values):.3f} | {min(values):.3f} |")
    grid = {(p, w): scores[f"coverage^{p} fading, w {w}"] for p in POWERS for w in WEIGHTS}
    lowest = {key: min(row.values()) for key, row in grid.items()}
    near = [key for key in grid if lowest[key] >= max(lowest.values()) - 0.01]
    power, weight = max(near, key=lambda key: float(np.mean(list(grid[key].values()))))
    shipped = (power, weight) == (COVERAGE_POWER, FUSION_WEIGHT)
    lines += ["", f"Chosen: **{CHOSEN}** (edgerec.lexical.damping, COVERAGE_POWER; the general model's weight, "
              "export/stages/general_model.py FUSION_WEIGHT). The criterion, used since the first choice, over the "
              "coverage grid (powers " + ", ".join(map(str, POWERS)) + " x weights " + ", ".join(map(str, WEIGHTS))
              + "): the highest lowest ratio, lowest ratios within 0.01 of the best counting as equal, then the "
              "higher mean. Within 0.01: " + ", ".join(f"coverage^{p} at {w:g}" for p, w in sorted(near))
              + f"; the highest mean of them: coverage^{power} at {weight:g}"
              + (" (what ships)." if shipped else " (not what ships: choose again)."),
              "", f"Wall time {time.time() - started:.0f} s.", ""]
    Path("results/fusion-damping.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
