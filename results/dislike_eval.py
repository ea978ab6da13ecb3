"""Disliked items in recommend (edgerec.user: "average" and "best_score"), on MovieLens-1M validation and test:
each user's films rated 1 or 2 before the target are the dislikes. Full ranking, history and dislikes
excluded in every row, so the rows differ only in how the dislikes move the answer.

    python results/dislike_eval.py [BUNDLE]    # default artifacts/default -> results/dislikes.{md,json}
"""

import json
import sys
import time
from pathlib import Path

import numpy as np

from edgerec import Recommender
from edgerec.user import away_from, best_scores, user_vector
from export.stages.interactions import POSITIVE_RATING, load_split, ratings_path
from export.stages.ranking import metrics

bundle = Path(sys.argv[1] if len(sys.argv) > 1 else "artifacts/default")
started = time.time()
rec = Recommender.load(bundle)
ids = [r[rec.items.id_field] for r in rec.items.records]
row_of = {item_id: row for row, item_id in enumerate(ids)}
vectors = rec.index.vectors(range(len(ids)))
window = rec.bundle.manifest.user.window
split = load_split(ids)

# Each user's positives in time order (as load_split reads them) and low-rated films with their times.
positives, lows = {}, {}
with open(ratings_path(), encoding="utf-8") as handle:
    next(handle)
    for line in handle:
        user, item, rating, timestamp = line.rstrip("\r\n").split("\t")
        if item not in row_of:
            continue
        if float(rating) >= POSITIVE_RATING:
            positives.setdefault(user, []).append((float(timestamp), row_of[item]))
        elif float(rating) <= 2:
            lows.setdefault(user, []).append((float(timestamp), row_of[item]))
users = [u for u in sorted(positives) if len(positives[u]) >= 3]  # the split's users, in its order
assert len(users) == split.users


def rank_all(which: str) -> dict:
    histories, targets = split.history(which), split.targets(which)
    position = -2 if which == "valid" else -1  # the target's place in the user's time-ordered positives
    out = {name: [] for name in ("no dislikes", "exclude (the default)", "average", "best_score")}
    with_dislikes = 0
    for user, history, target in zip(users, histories, targets):
        cutoff = sorted(positives[user])[position][0]
        disliked = [row for t, row in lows.get(user, []) if t < cutoff and row not in set(history.tolist())]
        base = user_vector(vectors[history], window)
        plain = vectors @ base
        scores = {"no dislikes": plain.copy(), "exclude (the default)": plain.copy()}
        if disliked:
            with_dislikes += 1
            scores["average"] = vectors @ away_from(base, vectors[disliked])
            scores["best_score"] = best_scores(vectors, vectors[history[-window:]], vectors[disliked])
        else:
            scores["average"] = plain.copy()
            scores["best_score"] = (vectors @ vectors[history[-window:]].T).max(axis=1)  # no dislike to weigh
        for name, s in scores.items():
            s = s.astype(np.float64)
            s[history] = -np.inf
            if name != "no dislikes":
                s[disliked] = -np.inf
            out[name].append(int((s >= s[target]).sum() - 1))
    return {"users_with_dislikes": with_dislikes, **{n: metrics(np.asarray(r)) for n, r in out.items()}}


results = {"bundle": str(bundle), "valid": rank_all("valid"), "test": rank_all("test")}
results["seconds"] = round(time.time() - started, 1)
Path("results/dislikes.json").write_text(json.dumps(results, indent=2) + "\n")
lines = ["# Disliked items (`python results/dislike_eval.py`)", "",
         f"Bundle `{bundle}`, MovieLens-1M, {split.users:,} users; dislikes: films a user rated 1 or 2 before "
         "the target. Full ranking over every film, history and dislikes excluded in every row but the first. "
         f"Wall time {results['seconds']} s.", ""]
for which in ("valid", "test"):
    part = results[which]
    lines += [f"## {which} ({part['users_with_dislikes']:,} users have dislikes)", "",
              "| recommend | HR@10 | NDCG@10 | HR@20 |", "|---|---|---|---|",
              *[f"| {n} | {m['hr@10']:.4f} | {m['ndcg@10']:.4f} | {m['hr@20']:.4f} |"
                for n, m in part.items() if n != "users_with_dislikes"], ""]
Path("results/dislikes.md").write_text("\n".join(lines))
print("\n".join(lines))
