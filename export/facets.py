"""`python -m export facets`: teach a bundle to read descriptive queries.

The shipped student is a bag of word pieces: "a heist movie with a clever
twist" finds A Simple Twist of Fate (the title shares "twist") and Heinlein's
Puppet Masters ("heist" is `he ##ist`). all-mpnet-base-v2 reads the whole
sentence well but costs 20-30 ms a query. This stage carries what mpnet
knows into a head the runtime can afford (edgerec.facets):

1. Genres. mpnet reads ~35k movie-ish phrases built from frequent English
   words and scores each against one text per genre ("a crime movie"); per
   genre the cosines are standardised over all phrases (z-scores), so a genre
   text close to everything does not win everywhere. A linear head learns
   those z-scores from the token ids (the mean of one row per token), and
   each genre gets a centroid of the bundle's own item vectors.
2. The blend weight. mpnet also reads the catalogue's item texts: for each
   phrase, its top items carried into the index's space (a kernel over them)
   give a reference top 10. The weight of the genre mixture added to the
   encoder's vector is the one whose lists agree best with those references
   on held-out phrases (phrases the head was not fit to).

The 40 QUERY_TEXTS are never trained on: the stage measures on them, against
the same kind of mpnet reference, what each reading and the shipped rule give.
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
    max_margin: float = 0.2      # the facets take part when best - 10th best cosine is below this ...
    min_title_cover: float = 2 / 3  # ... and the top title holds less than this share of the query's words
    weights: tuple[float, ...] = (0.25, 0.5, 1.0, 1.5, 2.0, 3.0)  # of the genre mixture added to the encoder's
                                                                  # vector: the best on held-out phrases is kept
    kernel_items: int = 30       # mpnet's top items that make a reference vector
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


def held_out_split(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(held-out rows, training rows): 5% held out, the same rows for every fit of one seed."""
    order = np.random.default_rng(seed).permutation(count)
    return order[: count // 20], order[count // 20 :]


STOPWORDS = ("a", "an", "the", "of", "and", "in", "on", "with", "for", "to", "about", "movie", "movies", "film",
             "films", "like", "something", "set", "that", "you", "from", "by", "lots", "story")


def fit_head(token_ids: Sequence[np.ndarray], goal: np.ndarray, vocab_size: int, config: FacetConfig,
             progress: Any = None) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """Weights (vocab_size x facets) and biases such that the mean of a text's token rows plus the
    biases is close to its ``goal`` row (mean squared error). 5% of the texts are held out to report."""
    import torch

    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    held, train = held_out_split(len(token_ids), config.seed)
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
    """Per genre, the unit mean of its items' vectors, each weighted by log(2 + times rated in
    training) / its number of genres: well-known films pull the centroid, so a mixture lands among
    films people know, and a film of five genres does not pull all five alike."""
    genre_counts = np.array([max(len(r.get("genres", ())), 1) for r in records], dtype=np.float64)
    # log(2 + n), never 0: a genre whose films nobody rated still gets a centroid.
    weight = np.log(2.0 + popularity.astype(np.float64)) / genre_counts
    from edgerec.pooling import l2_normalize

    member = np.array([[name in r.get("genres", ()) for name in names] for r in records], dtype=np.float64)
    return l2_normalize((member * weight[:, None]).T @ vectors).astype(np.float32)


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


def reference_vectors(queries: np.ndarray, items: np.ndarray, item_vectors: np.ndarray, popularity: np.ndarray,
                      top: int) -> np.ndarray:
    """mpnet's reading of each query carried into the index's space: its ``top`` items by standardised
    cosine (``queries`` and ``items`` are mpnet vectors), weighted by softmax(z) x log(2 + ratings),
    mixing those items' ``item_vectors``. Searching it gives a reference top 10 for the query."""
    prior = np.log(2.0 + popularity.astype(np.float64))
    top = min(top, len(items) - 1)  # argpartition needs a kth inside the row
    out = np.empty((len(queries), item_vectors.shape[1]), dtype=np.float32)
    for start in range(0, len(queries), 2048):
        cosines = queries[start : start + 2048] @ items.T
        z = (cosines - cosines.mean(axis=1, keepdims=True)) / cosines.std(axis=1, keepdims=True)
        best = np.argpartition(-z, top, axis=1)[:, :top]
        zb = np.take_along_axis(z, best, axis=1)
        weights = np.exp(zb - zb.max(axis=1, keepdims=True)) * prior[best]
        mixed = np.einsum("qn,qnd->qd", weights, item_vectors[best])
        out[start : start + 2048] = mixed / np.linalg.norm(mixed, axis=1, keepdims=True)
    return out


def blend_overlaps(rec: Any, facets: Any, texts: Sequence[str], references: np.ndarray,
                   weights: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """For each text: the top-10 overlap with its reference of the encoder alone, of the blend at each
    of ``weights``, and of the genre mixture alone (in that column order); and whether the facets take
    part in it at all."""
    from dataclasses import replace

    from edgerec.facets import QueryFacets

    # One runtime head per weight, so the blend measured is the one queries get.
    blends = [QueryFacets(replace(facets.spec, weight=w), facets.weights, facets.bias, facets.centroids)
              for w in weights]
    overlaps = np.zeros((len(texts), len(weights) + 2), dtype=np.float32)
    take_part = np.zeros(len(texts), dtype=bool)
    for row, (text, reference) in enumerate(zip(texts, references)):
        encoded, token_ids = rec.encoder.encode_one_with_ids(text)
        labels, scores = rec.index.search(encoded, 10)
        title = str(rec.items.records[int(labels[0])].get(facets.spec.title_field, ""))
        take_part[row] = facets.take_part(text, scores, title)
        wanted = set(rec.index.search(reference, 10)[0].tolist())
        vectors = [b.blend(encoded, token_ids) for b in blends] + [facets.mix(facets.scores(token_ids))]
        answers = [labels] + [rec.index.search(v, 10)[0] for v in vectors]
        overlaps[row] = [len(wanted & set(a.tolist())) / 10 for a in answers]
    return overlaps, take_part


def measure(rec: Any, references: np.ndarray, records: Sequence[dict]) -> dict[str, Any]:
    """On the held-out QUERY_TEXTS: top-10 overlap with mpnet's reading (``references``) of the shipped
    rule and of the encoder alone, and, where the facets take part, of the genre mixture alone;
    title@1 over all titles, with and without the facets."""
    facets = rec.facets
    rows = []
    for text, reference in zip(QUERY_TEXTS, references):
        wanted = set(rec.index.search(reference, 10)[0].tolist())
        shipped = rec.query(text, 10)
        _, token_ids = rec.encoder.encode_one_with_ids(text)
        answers = {"shipped": [rec.items.labels[r.item_id] for r in shipped],
                   "encoder": [rec.items.labels[r.item_id] for r in rec.query(text, 10, facets=False)],
                   "facets_alone": rec.index.search(facets.mix(facets.scores(token_ids)), 10)[0].tolist()}
        rows.append({"query": text, "reading": rec.query_reading(text),
                     **{k: len(wanted & set(v)) / 10 for k, v in answers.items()},
                     "top": [r.title for r in shipped]})

    def mean(key: str, subset: list[dict]) -> float:
        return round(float(np.mean([row[key] for row in subset])), 3) if subset else 0.0

    part = [row for row in rows if row["reading"] == "blend"]
    hits = {"encoder_only": 0, "shipped": 0}
    blended = 0
    for record in records:
        hits["encoder_only"] += rec.query(record["title"], 1, facets=False)[0].item_id == record["id"]
        hits["shipped"] += rec.query(record["title"], 1)[0].item_id == record["id"]
        blended += rec.query_reading(record["title"]) == "blend"
    return {
        "held_out_queries": len(rows),
        "facets_take_part": len(part),
        "overlap_at_10_with_mpnet": {
            "all": {"encoder_only": mean("encoder", rows), "shipped": mean("shipped", rows)},
            "where_facets_take_part": {"encoder_only": mean("encoder", part), "shipped": mean("shipped", part),
                                       "facets_alone": mean("facets_alone", part)},
        },
        "title_at_1": {**{k: round(v / len(records), 4) for k, v in hits.items()}, "titles": len(records),
                       "facets_take_part": blended},
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
    from edgerec.items import item_text
    from edgerec.manifest import FacetSpec

    source = open_bundle(bundle_dir)
    rec = Recommender.load(bundle_dir)
    ids = [record["id"] for record in records]
    if [r[rec.items.id_field] for r in rec.items.records] != ids:
        raise ValueError(f"{bundle_dir}: its items are not the catalogue's, in order; run the bundle stage first")
    names = [g for g in GENRE_WORDS if any(g in r["genres"] for r in records)]
    reader = mpnet_reader(work)
    cache = work / "facets"
    phrases = training_phrases(config)
    print(f"[facets] all-mpnet-base-v2 reads {len(phrases)} phrases, {len(names)} genre texts and "
          f"{len(records)} item texts (cached in {cache})")
    anchors = read_with_mpnet([genre_text(g) for g in names], reader.path, cache)
    phrase_vectors = read_with_mpnet(phrases, reader.path, cache, progress=progress)
    item_mpnet = read_with_mpnet([item_text(r, source.manifest.items.text_fields) for r in records],
                                 reader.path, cache)
    cosines = phrase_vectors @ anchors.T
    mean, std = cosines.mean(axis=0), cosines.std(axis=0)
    token_ids = [rec.encoder.token_ids(p) for p in phrases]
    vocab = rec.encoder.spec.vocab_size
    print(f"[facets] fitting the genre head: {len(phrases)} texts, {config.epochs} epochs")
    genre_weights, genre_bias, genre_fit = fit_head(token_ids, (cosines - mean) / std, vocab, config,
                                                    progress=progress)
    item_vectors = rec.index.vectors(range(len(rec)))
    centroids = genre_centroids(item_vectors, records, popularity, names)

    def spec_with(weight: float) -> FacetSpec:
        return FacetSpec(names=tuple(names), vocab_size=vocab, dim=rec.encoder.spec.dim,
                         temperature=config.temperature, max_margin=config.max_margin,
                         min_title_cover=round(config.min_title_cover, 4), weight=weight, title_field="title",
                         stopwords=STOPWORDS)

    held, _ = held_out_split(len(phrases), config.seed)  # phrases the genre head was not fit to
    held_phrases = [phrases[i] for i in held]
    print(f"[facets] choosing the blend weight on {len(held)} held-out phrases against mpnet's reading")
    references = reference_vectors(phrase_vectors[held], item_mpnet, item_vectors, popularity, config.kernel_items)
    trial = QueryFacets(spec_with(1.0), genre_weights, genre_bias, centroids)
    overlaps, take_part = blend_overlaps(rec, trial, held_phrases, references, config.weights)
    scored = (overlaps[take_part] if take_part.any() else overlaps).mean(axis=0)
    weight_scores = {str(w): round(float(v), 4) for w, v in zip(config.weights, scored[1:-1])}
    weight = config.weights[int(np.argmax(scored[1:-1]))]
    spec = spec_with(weight)
    data = facets_file(genre_weights, genre_bias, centroids)
    write_with_facets(source, work / "facets-bundle", data, spec, dict(source.manifest.provenance))
    print("[facets] measuring the rewritten bundle on the held-out query texts")
    shipped = Recommender.load(work / "facets-bundle")
    query_references = reference_vectors(read_with_mpnet(list(QUERY_TEXTS), reader.path, cache), item_mpnet,
                                         item_vectors, popularity, config.kernel_items)
    figures = measure(shipped, query_references, records)
    report = {
        "reader": reader.name,
        "genre_texts": [genre_text(g) for g in names],
        "phrases": {"single_words": config.single_words, "composed": config.composed,
                    "composed_vocabulary": config.composed_vocabulary, "source": "wordfreq English top words"},
        "genre_head_fit": genre_fit,
        "centroids": "mean of each genre's item vectors, weighted by log(2 + training ratings) / genres per item",
        "reference": f"mpnet's top {config.kernel_items} catalogue items for the text, carried into the index's "
                     "space (softmax(z) x log(2 + ratings)), then its top 10",
        "blend_weight_chosen_on_held_out_phrases": {
            "weight": weight, "phrases": int(take_part.sum()), "overlap_by_weight": weight_scores,
            "encoder_only": round(float(scored[0]), 4), "facets_alone": round(float(scored[-1]), 4)},
        **{k: v for k, v in figures.items() if k != "queries"},
    }
    provenance = {**source.manifest.provenance, "facets": report}
    write_with_facets(source, bundle_dir, data, spec, provenance, notice=notice)
    (work / "facets.json").write_text(json.dumps({**report, "queries": figures["queries"]}, indent=2) + "\n")
    everywhere = figures["overlap_at_10_with_mpnet"]["all"]
    part = figures["overlap_at_10_with_mpnet"]["where_facets_take_part"]
    print(f"[facets] blend weight {weight} (held-out phrases: {weight_scores}, encoder only {scored[0]:.4f})")
    print(f"[facets] held-out query texts: the facets take part in {figures['facets_take_part']} of "
          f"{figures['held_out_queries']}; top-10 overlap with mpnet's reading: shipped {everywhere['shipped']}, "
          f"encoder only {everywhere['encoder_only']}; where they take part: shipped {part['shipped']}, "
          f"encoder only {part['encoder_only']}, facets alone {part['facets_alone']}")
    print(f"[facets] title@1: encoder only {figures['title_at_1']['encoder_only']}, shipped "
          f"{figures['title_at_1']['shipped']} (the facets take part in {figures['title_at_1']['facets_take_part']})")
    return report
