"""`python -m export facets`: teach a bundle to read descriptive queries.

The shipped student is a bag of word pieces: "a heist movie with a clever
twist" finds A Simple Twist of Fate (the title shares "twist") and Heinlein's
Puppet Masters ("heist" is `he ##ist`). all-mpnet-base-v2 reads the whole
sentence well but costs 20-30 ms a query. This stage carries what mpnet
knows about genres into a tiny head the runtime can afford:

1. mpnet reads ~35k movie-ish phrases built from frequent English words and
   scores each against one text per genre ("a crime movie"); per genre the
   cosines are standardised over all phrases (z-scores), so a genre text that
   is close to everything does not win everywhere.
2. A linear head learns those z-scores from the bundle tokenizer's token ids
   (mean of one row per token: 30k x 18 floats).
3. Each genre gets a centroid of the bundle's own item vectors, weighted by
   log popularity in the training interactions.

At run time (edgerec.facets) a query the student answers badly (flat scores,
top title unrelated to the query's words) is sent to the head instead: its
z-scores become genre weights (softmax), the weights mix the centroids, and
the mixture is searched in the same index. The 40 QUERY_TEXTS are never
trained on: they measure how close the runtime's lists come to lists made
from mpnet's own reading.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .query_texts import GENRE_WORDS
from .sources import QUERY_TEXTS, english_words, mpnet_reader

# Phrase shapes: one word, and two or three words in a sentence a user might type.
_ONE = ("a {a} movie", "{a}", "movies about {a}", "a film with {a}", "something {a}", "{a} film")
_MANY = ("a {a} movie with a {b} {c}", "{a} {b}", "a {a} film about {b}", "{a} and {b}", "{a} {b} set in {c}",
         "a {a} {b} movie", "movie about a {a} {b}", "{a} {b} with {c}")


@dataclass(frozen=True)
class FacetConfig:
    single_words: int = 15000    # "a {word} movie" and kin, one per word
    composed: int = 20000        # two- and three-word phrases
    composed_vocabulary: int = 6000  # the most frequent words the composed phrases draw from
    temperature: float = 0.3     # of the softmax that turns z-scores into genre weights
    max_margin: float = 0.2      # route when best - 10th best cosine is below this ...
    min_title_cover: float = 2 / 3  # ... and the top title holds less than this share of the query's words
    epochs: int = 30
    seed: int = 0


def genre_text(genre: str) -> str:
    word = GENRE_WORDS.get(genre, genre.lower())
    return f"{'an' if word[0] in 'aeiou' else 'a'} {word} movie"


def training_phrases(config: FacetConfig) -> list[str]:
    """Distinct phrases, reproducible by seed; the evaluation's QUERY_TEXTS are left out."""
    rng = random.Random(config.seed)
    words = english_words(config.single_words)
    phrases = {rng.choice(_ONE).format(a=w) for w in words}
    common = words[: config.composed_vocabulary]
    target = len(phrases) + config.composed
    while len(phrases) < target:
        a, b, c = rng.sample(common, 3)
        phrases.add(rng.choice(_MANY).format(a=a, b=b, c=c))
    phrases -= set(QUERY_TEXTS)
    return sorted(phrases)


def read_with_mpnet(texts: Sequence[str], model_dir: Path, cache: Path, progress: Any = None) -> np.ndarray:
    """mpnet's unit vectors for ``texts``, cached in ``cache`` under a hash of the texts."""
    key = hashlib.sha256("\n".join(texts).encode("utf-8")).hexdigest()[:16]
    path = cache / f"mpnet-{key}.npy"
    if path.is_file():
        return np.load(path)
    from transformers import AutoModel, AutoTokenizer

    from .fit import encode

    model, tokenizer = AutoModel.from_pretrained(model_dir), AutoTokenizer.from_pretrained(model_dir)
    rows = []
    step = 512
    for start in range(0, len(texts), step):
        rows.append(encode(model, tokenizer, texts[start : start + step], batch_size=128))
        if progress is not None:
            progress("mpnet", min(start + step, len(texts)), len(texts))
    vectors = np.concatenate(rows)
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


STOPWORDS = ("a", "an", "the", "of", "and", "in", "on", "with", "for", "to", "about", "movie", "movies", "film",
             "films", "like", "something", "set", "that", "you", "from", "by", "lots", "story")


def fit_head(token_ids: Sequence[np.ndarray], goal: np.ndarray, vocab_size: int, config: FacetConfig,
             progress: Any = None) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """Weights (vocab_size x facets) and biases such that the mean of a text's token rows plus the
    biases is close to its ``goal`` row (mean squared error). 5% of the texts are held out to report."""
    import torch

    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    order = rng.permutation(len(token_ids))
    held = order[: len(order) // 20]
    train = order[len(order) // 20 :]
    count = goal.shape[1]
    head = torch.nn.EmbeddingBag(vocab_size, count, mode="mean")
    torch.nn.init.zeros_(head.weight)  # a token never seen in training stays neutral
    bias = torch.nn.Parameter(torch.tensor(goal.mean(axis=0), dtype=torch.float32))
    optimizer = torch.optim.Adam([head.weight, bias], lr=0.02)
    target = torch.tensor(goal, dtype=torch.float32)

    def predict(rows: np.ndarray) -> Any:
        flat = torch.tensor(np.concatenate([token_ids[i] for i in rows]), dtype=torch.long)
        offsets = torch.tensor(np.cumsum([0] + [len(token_ids[i]) for i in rows[:-1]]), dtype=torch.long)
        return head(flat, offsets) + bias

    batch, steps, done = 256, -(-len(train) // 256) * config.epochs, 0
    for _ in range(config.epochs):
        shuffled = rng.permutation(train)
        for start in range(0, len(shuffled), batch):
            rows = shuffled[start : start + batch]
            loss = torch.nn.functional.mse_loss(predict(rows), target[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            done += 1
            if progress is not None:
                progress("facet head", done, steps)
    with torch.no_grad():
        report = {"train_mse": round(float(torch.nn.functional.mse_loss(predict(train), target[train])), 4),
                  "held_out_mse": round(float(torch.nn.functional.mse_loss(predict(held), target[held])), 4),
                  "goal_variance": round(float(target.var()), 4), "texts": len(token_ids)}
    return head.weight.detach().numpy().copy(), bias.detach().numpy().copy(), report


def genre_centroids(vectors: np.ndarray, records: Sequence[dict], popularity: np.ndarray,
                    names: Sequence[str]) -> np.ndarray:
    """Per genre, the unit mean of its items' vectors, each weighted by log(1 + times rated in
    training) / its number of genres: well-known films pull the centroid, so a mixture lands among
    films people know, and a film of five genres does not pull all five alike."""
    genre_counts = np.array([max(len(r.get("genres", ())), 1) for r in records], dtype=np.float64)
    weight = np.log1p(popularity.astype(np.float64)) / genre_counts
    rows = []
    for name in names:
        member = np.array([name in r.get("genres", ()) for r in records], dtype=np.float64)
        mixed = (member * weight) @ vectors
        rows.append(mixed / max(float(np.linalg.norm(mixed)), 1e-12))
    return np.asarray(rows, dtype=np.float32)


def facets_file(weights: np.ndarray, bias: np.ndarray, centroids: np.ndarray) -> bytes:
    """The facets file's bytes, in the layout edgerec.manifest.FacetSpec describes."""
    return b"".join(np.ascontiguousarray(a, dtype="<f4").tobytes() for a in (weights, bias, centroids))


def write_with_facets(source: Any, out: Path, data: bytes, spec: Any, provenance: dict[str, Any],
                      notice: Path | None = None) -> Any:
    """A copy of bundle ``source`` (its files unchanged, but the NOTICE when ``notice`` is given) with the
    facets file and section; replaces ``out``."""
    from edgerec.bundle import BundleWriter

    manifest = source.manifest
    with BundleWriter(out, overwrite=True) as writer:
        for role, entry in manifest.files.items():
            if role not in ("facets", "notice") or (role == "notice" and notice is None):
                writer.copy_in(role, source.path(role), sha256=entry.sha256)
        if notice is not None:
            writer.copy_in("notice", notice)
        writer.write("facets", [data])
        return writer.finish(name=manifest.name, encoder=manifest.encoder, index=manifest.index,
                             items=manifest.items, user=manifest.user, provenance=provenance, facets=spec)


def _overlap(a: Sequence[Any], b: Sequence[Any]) -> float:
    return len({r.item_id for r in a} & {r.item_id for r in b}) / max(len(b), 1)


def measure(rec: Any, mpnet_scores: np.ndarray, records: Sequence[dict]) -> dict[str, Any]:
    """How the routed runtime compares, on the held-out QUERY_TEXTS, with lists made from mpnet's own
    reading (``mpnet_scores``: its standardised genre scores per query), and what routing costs titles."""
    facets = rec.facets
    rows = []
    for text, scores in zip(QUERY_TEXTS, mpnet_scores):
        reference = rec._results(*rec.index.search(facets.mix(scores), 10))
        head = rec._results(*rec.index.search(facets.vector(rec.encoder.token_ids(text)), 10))
        routed, encoder = rec.query(text, 10), rec.query(text, 10, route=False)
        rows.append({"query": text, "route": rec.query_route(text), "routed": _overlap(routed, reference),
                     "encoder": _overlap(encoder, reference), "head": _overlap(head, reference),
                     "top": [r.title for r in routed]})
    titles = {"encoder": 0, "routed": 0, "sent_to_head": 0}
    for record in records:
        titles["encoder"] += rec.query(record["title"], 1, route=False)[0].item_id == record["id"]
        titles["routed"] += rec.query(record["title"], 1)[0].item_id == record["id"]
        titles["sent_to_head"] += rec.query_route(record["title"]) == "facets"
    mean = lambda key: round(float(np.mean([row[key] for row in rows])), 3)  # noqa: E731
    return {
        "held_out_queries": len(rows),
        "sent_to_head": sum(row["route"] == "facets" for row in rows),
        "overlap_at_10_with_mpnet_reading": {"routed": mean("routed"), "encoder_only": mean("encoder"),
                                             "head_only": mean("head")},
        "title_at_1": {k: round(v / len(records), 4) if k != "sent_to_head" else v for k, v in titles.items()},
        "titles": len(records),
        "queries": rows,
    }


def stage_facets(records: Sequence[dict], popularity: np.ndarray, bundle_dir: Path, work: Path,
                 config: FacetConfig = FacetConfig(), notice: Path | None = None,
                 progress: Any = None) -> dict[str, Any]:
    """Add facets to the bundle at ``bundle_dir`` (its other files stay as they are; ``notice``, if
    given, replaces its NOTICE), with figures measured on the rewritten bundle in its provenance.
    ``popularity``: training ratings per record."""
    from edgerec import Recommender
    from edgerec.bundle import open_bundle
    from edgerec.facets import QueryFacets
    from edgerec.manifest import FacetSpec

    rec = Recommender.load(bundle_dir)
    ids = [record["id"] for record in records]
    if [r[rec.items.id_field] for r in rec.items.records] != ids:
        raise ValueError(f"{bundle_dir}: its items are not the catalogue's, in order; run the bundle stage first")
    names = [g for g in GENRE_WORDS if any(g in r["genres"] for r in records)]
    reader = mpnet_reader(work)
    cache = work / "facets"
    phrases = training_phrases(config)
    print(f"[facets] all-mpnet-base-v2 reads {len(phrases)} phrases and {len(names)} genre texts "
          f"(cached in {cache})")
    anchors = read_with_mpnet([genre_text(g) for g in names], reader.path, cache)
    cosines = read_with_mpnet(phrases, reader.path, cache, progress=progress) @ anchors.T
    mean, std = cosines.mean(axis=0), cosines.std(axis=0)
    goal = (cosines - mean) / std
    print(f"[facets] fitting the head: {len(phrases)} texts, {config.epochs} epochs")
    token_ids = [rec.encoder.token_ids(p) for p in phrases]
    weights, bias, fit_report = fit_head(token_ids, goal, rec.encoder.spec.vocab_size, config, progress=progress)
    centroids = genre_centroids(rec.index.vectors(range(len(rec))), records, popularity, names)
    spec = FacetSpec(names=tuple(names), vocab_size=rec.encoder.spec.vocab_size, dim=rec.encoder.spec.dim,
                     temperature=config.temperature, max_margin=config.max_margin,
                     min_title_cover=round(config.min_title_cover, 4), title_field="title", stopwords=STOPWORDS)
    data = facets_file(weights, bias, centroids)
    source = open_bundle(bundle_dir)
    trial = write_with_facets(source, work / "facets-bundle", data, spec, dict(source.manifest.provenance))
    del trial
    print("[facets] measuring the routed bundle against mpnet's reading of the held-out queries")
    routed = Recommender.load(work / "facets-bundle")
    assert isinstance(routed.facets, QueryFacets)
    query_scores = (read_with_mpnet(list(QUERY_TEXTS), reader.path, cache) @ anchors.T - mean) / std
    figures = measure(routed, query_scores, records)
    report = {
        "reader": reader.name,
        "genre_texts": [genre_text(g) for g in names],
        "phrases": {"single_words": config.single_words, "composed": config.composed,
                    "composed_vocabulary": config.composed_vocabulary, "source": "wordfreq English top words"},
        "head_fit": fit_report,
        "centroids": "mean of each genre's item vectors, weighted by log(1 + training ratings) / genres per item",
        **{k: v for k, v in figures.items() if k != "queries"},
    }
    provenance = {**source.manifest.provenance, "facets": report}
    write_with_facets(source, bundle_dir, data, spec, provenance, notice=notice)
    (work / "facets.json").write_text(json.dumps({**report, "queries": figures["queries"]}, indent=2) + "\n")
    overlap = figures["overlap_at_10_with_mpnet_reading"]
    print(f"[facets] held-out queries sent to the head: {figures['sent_to_head']}/{figures['held_out_queries']}; "
          f"top-10 overlap with mpnet's reading: routed {overlap['routed']}, encoder only {overlap['encoder_only']}, "
          f"head only {overlap['head_only']}")
    print(f"[facets] title@1: encoder {figures['title_at_1']['encoder']}, routed {figures['title_at_1']['routed']} "
          f"({figures['title_at_1']['sent_to_head']} of {figures['titles']} titles sent to the head)")
    return report
