"""`python -m export evaluate --catalog F --interactions F --bundle B`: how well a bundle recommends on your data.

Two splits of the same events, full ranking over the catalogue with each user's history excluded:

- leave-last-out by time: every training user's last event is the target (the users the bundle was
  fitted to);
- by users: whole users held out (``--holdout-users``, a seeded share; `export all` with the same option
  leaves them out of training), as an app's new users are. Their history is every event but the last.
  Popularity is counted twice: on the training users, and on the held-out users' own histories (what
  `edgerec prior` counts for an app).

Rows: popularity, item-to-item co-occurrence (counted on the training users), the base model on item text
alone, the bundle's item vectors, and the bundle with its item prior (training counts, and the held-out
users' own counts). Beside them: the bundle's recommend p50 through the runtime, its size and the peak
memory of loading it. Written to results/<catalogue>-evaluation.{md,json,svg}.
"""

from __future__ import annotations

import json
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from edgerec import Recommender
from edgerec.items import item_text

from ..stages.interactions import Split
from ..stages.ranking import cooccurrence_scorer, evaluate, prior_scorer, vector_scorer
from .plots import Axis, Guide, Point, Series, svg_chart

Scorer = Callable[[Sequence[np.ndarray]], np.ndarray]


@dataclass(frozen=True)
class Holdout:
    """Which users are held out: a seeded share of them (0: none)."""

    share: float = 0.0
    seed: int = 0


def split_by_users(split: Split, holdout: Holdout) -> tuple[Split, Split | None]:
    """(training users, held-out users): the held-out ones a seeded random share of the split's users."""
    if holdout.share <= 0:
        return split, None
    if not 0 < holdout.share < 1:
        raise ValueError(f"--holdout-users must be a share between 0 and 1, got {holdout.share}")
    order = np.random.default_rng(holdout.seed).permutation(split.users)
    held = np.zeros(split.users, dtype=bool)
    held[order[: max(1, round(holdout.share * split.users))]] = True
    if held.all():
        raise ValueError("--holdout-users leaves no user to train on")

    def part(mask: np.ndarray) -> Split:
        rows = np.flatnonzero(mask)
        return Split(tuple(split.train[i] for i in rows), split.valid[rows], split.test[rows], split.item_count)

    return part(~held), part(held)


def own_counts(split: Split) -> np.ndarray:
    """Counts of every event before the test targets: the histories a bundle's prior would count."""
    return np.bincount(np.concatenate([*split.train, split.valid]), minlength=split.item_count)


def _fixed(counts: np.ndarray) -> Scorer:
    scores = counts.astype(np.float64)
    return lambda histories: np.tile(scores, (len(histories), 1))


def run_recommendation_evaluation(records: Sequence[dict], text_fields: Sequence[str], split: Split,
                                  holdout: Holdout, bundle: Path, base: Path, results: Path, name: str,
                                  window: int | None = None) -> dict[str, Any]:
    """Every row on both splits; writes ``results/<name>-evaluation.{md,json,svg}`` and returns the figures."""
    started = time.time()
    training, held = split_by_users(split, holdout)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rec = Recommender.load(bundle)
    load_peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ids = [str(r[rec.items.id_field]) for r in rec.items.records]
    catalogue_ids = [str(r[rec.items.id_field]) for r in records]
    if ids != catalogue_ids:
        raise ValueError(f"{bundle}: its items are not the catalogue's, in the catalogue's order; evaluate the "
                         "bundle `export all` wrote from this catalogue")
    window = window or rec.bundle.manifest.user.window
    vectors = rec.index.vectors(range(len(ids)))
    texts = [item_text(r, text_fields) for r in records]
    base_vectors = _encode_with(base, texts)
    prior = rec.bundle.manifest.prior
    weight = prior.weight if prior is not None else 0.0
    training_counts = own_counts(training)

    def rows(target: Split, counts_own: np.ndarray | None) -> dict[str, dict[str, float]]:
        out = {"popularity (training users)": evaluate(_fixed(training_counts), target, "test")}
        if counts_own is not None:
            out["popularity (their own histories)"] = evaluate(_fixed(counts_own), target, "test")
        out["co-occurrence (training users)"] = evaluate(cooccurrence_scorer(training, window), target, "test")
        out["base model, item text alone"] = evaluate(vector_scorer(base_vectors, window), target, "test")
        out["bundle, no prior"] = evaluate(vector_scorer(vectors, window), target, "test")
        if weight > 0:
            out[f"bundle + prior {weight:g} (training counts)"] = evaluate(
                prior_scorer(vectors, window, training_counts, weight), target, "test")
            if counts_own is not None:
                out[f"bundle + prior {weight:g} (their own counts)"] = evaluate(
                    prior_scorer(vectors, window, counts_own, weight), target, "test")
        return out

    figures: dict[str, Any] = {
        "bundle": str(bundle), "name": rec.bundle.manifest.name, "items": len(ids), "base": str(base),
        "holdout": {"share": holdout.share, "seed": holdout.seed},
        "leave_last_out": {"users": training.users, "rows": rows(training, None)},
    }
    if held is not None:
        figures["by_users"] = {"users": held.users, "rows": rows(held, own_counts(held))}
    figures["runtime"] = {"recommend_p50_ms": _recommend_p50(rec, ids, training),
                          "bundle_mb": round(sum(e.size for e in rec.bundle.manifest.files.values()) / 1e6, 2),
                          "peak_rss_after_load_mb": round(max(load_peak_mb, before / 1024), 1)}
    figures["seconds"] = round(time.time() - started, 1)
    results.mkdir(parents=True, exist_ok=True)
    stem = results / f"{name}-evaluation"
    stem.with_suffix(".json").write_text(json.dumps(figures, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown(figures))
    stem.with_suffix(".svg").write_text(svg(figures))
    print(markdown(figures))
    return figures


def _encode_with(model: Path, texts: Sequence[str]) -> np.ndarray:
    """Item vectors from a model or bundle folder's encoder (the runtime's TextEncoder)."""
    from edgerec.bundle.reader import open_bundle
    from edgerec.encoder import TextEncoder

    opened = open_bundle(model, model_ok=True)
    encoder = TextEncoder(opened.path("encoder"), opened.path("tokenizer"), opened.manifest.encoder, threads=None)
    return encoder.encode(list(texts))


def _recommend_p50(rec: Recommender, ids: Sequence[str], split: Split, users: int = 300) -> float:
    """Median ms of the runtime's recommend over the first ``users`` histories (10 most recent items)."""
    seconds = []
    for history in split.history("test")[:users]:
        names = [ids[row] for row in history[-10:]]
        started = time.perf_counter()
        rec.recommend(names, k=10)
        seconds.append(time.perf_counter() - started)
    return round(float(np.median(seconds)) * 1e3, 3) if seconds else float("nan")


def markdown(figures: dict[str, Any]) -> str:
    head = ["| ranking | HR@10 | NDCG@10 | HR@20 | NDCG@20 | HR@10 / popularity |", "|---|---|---|---|---|---|"]

    def table(section: dict[str, Any], against: str) -> list[str]:
        pop = section["rows"][against]["hr@10"]
        return [*head, *(f"| {n} | {m['hr@10']:.4f} | {m['ndcg@10']:.4f} | {m['hr@20']:.4f} | {m['ndcg@20']:.4f} | "
                         f"{m['hr@10'] / pop:.2f}x |" if pop else f"| {n} | {m['hr@10']:.4f} | - | - | - | - |"
                         for n, m in section["rows"].items())]

    runtime = figures["runtime"]
    lines = [f"# Recommendations on `{figures['name']}` (`python -m export evaluate`)", "",
             f"Bundle `{figures['bundle']}` ({figures['items']:,} items), base model `{figures['base']}`. Full "
             f"ranking, history excluded. recommend p50 {runtime['recommend_p50_ms']} ms (1 thread, runtime), "
             f"bundle {runtime['bundle_mb']} MB, peak RSS after loading {runtime['peak_rss_after_load_mb']} MB. "
             f"Wall time {figures['seconds']} s.", "",
             f"## Leave-last-out ({figures['leave_last_out']['users']:,} training users' last events)", "",
             *table(figures["leave_last_out"], "popularity (training users)"), ""]
    if "by_users" in figures:
        lines += [f"## By users ({figures['by_users']['users']:,} users held out of training, seed "
                  f"{figures['holdout']['seed']})", "", "Ratios to popularity counted on their own histories.", "",
                  *table(figures["by_users"], "popularity (their own histories)"), ""]
    return "\n".join(lines)


def svg(figures: dict[str, Any]) -> str:
    """HR@10 leave-last-out (x) against HR@10 of the held-out users (y), a point per ranking."""
    first = figures["leave_last_out"]["rows"]
    second = figures.get("by_users", {}).get("rows", {})
    points = [Point(m["hr@10"], second[n]["hr@10"], n) for n, m in first.items() if n in second]
    if not points:
        points = [Point(m["hr@10"], m["hr@10"], n) for n, m in first.items()]
    guides = [Guide(second["popularity (their own histories)"]["hr@10"], "own popularity")] if second else []
    return svg_chart([Series("rankings", points)], x=Axis("HR@10, leave-last-out", from_zero=True),
                     y=Axis("HR@10, users held out of training", from_zero=True), guides=guides)
