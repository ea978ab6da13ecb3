"""`python -m export descriptions`: teach a bundle to read descriptive queries.

The shipped encoder is a bag of word pieces (no transformer layers): "a heist
movie with a clever twist" finds A Simple Twist of Fate (the title shares
"twist") and Heinlein's Puppet Masters ("heist" is `he ##ist`).
all-mpnet-base-v2 reads the sentence (to it a heist is a robbery) and knows
which films are crime thrillers, but costs 20-30 ms a query. This stage
distils that reading into a small contextual model the runtime can afford
(edgerec.descriptions):

1. Targets. mpnet reads ~117k texts: phrases built from wordfreq's frequent
   English words (each word alone, and again as the topic of a longer phrase),
   the catalogue's item texts and query-like texts. For each,
   its top catalogue items (standardised cosine between mpnet vectors) are
   mixed in the bundle index's own space (softmax(z) x log(2 + ratings)):
   searching the index with that vector finds what mpnet finds, among films
   people know.
2. The model. A few layers of all-MiniLM-L6-v2 learn those vectors
   (export/stages/fit.py) on all texts but a held-out 5%. Its tokenizer is the
   bundle's plus a whole token for each phrase word that WordPiece cuts into
   pieces (export/stages/whole_words.py), so "heist" is one token, not `he ##ist`.
   A rare word seen in one or two phrases is learnt alone but not inside
   a sentence, so each further round (two by default) probes every word in a
   new phrase and gives the words read furthest from their targets many more
   phrases, trained beside a replay of what earlier rounds learnt (without
   it, a round forgets the words the one before taught). Each round is saved
   and reused while its inputs stay the same. Then ONNX (checked
   against torch) and INT8 (checked against fp32).
3. The rule: when the model takes part (the encoder's top-10 margin) and the
   weight of its vector added to the encoder's, the pair whose lists agree
   best with the references on the held-out texts, among those that keep
   title@1 at the encoder's own.

The 40 QUERY_TEXTS are never trained on: the stage measures on them, against
the same kind of mpnet reference, what each reading and the shipped rule give.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .fit import FitConfig, encode, fit, save
from .query_texts import query_like_texts
from .sources import QUERY_TEXTS, TeacherFacts, english_words, mpnet_reader
from .whole_words import grow_embeddings, split_words, with_whole_words

# Phrase shapes: one word, and two or three words in a sentence a user might type.
_ONE = ("a {a} movie", "{a}", "movies about {a}", "a film with {a}", "something {a}", "{a} film")
_MANY = ("a {a} movie with a {b} {c}", "{a} {b}", "a {a} film about {b}", "{a} and {b}", "{a} {b} set in {c}",
         "a {a} {b} movie", "movie about a {a} {b}", "{a} {b} with {c}")

# Words that say nothing about which item is meant: a query's share of the top title's words ignores them.
STOPWORDS = ("a", "an", "the", "of", "and", "in", "on", "with", "for", "to", "about", "movie", "movies", "film",
             "films", "like", "something", "set", "that", "you", "from", "by", "lots", "story")

MODEL_DIR = "descriptions-model"


@dataclass(frozen=True)
class DescriptionConfig:
    single_words: int = 45000    # "a {word} movie" and kin, one per word: rare words too ("heist" is 17,378th)
    composed: int = 20000        # two- and three-word phrases
    composed_vocabulary: int = 6000  # the most frequent words the composed phrases draw from
    # Every word once more as the topic of a composed phrase: a rare word ("heist") learnt from its
    # one-word phrase alone does not hold its meaning inside a sentence.
    topic_phrases: bool = True
    query_texts: int = 3000      # query-like texts made from the catalogue (titles, genres)
    layers: tuple[int, ...] = (1, 3, 5)  # of all-MiniLM-L6-v2's six: query time is roughly linear in them
    # A token of its own for each of the single words the tokenizer cuts into pieces (export/stages/whole_words.py).
    whole_words: bool = True
    fit: FitConfig = field(default_factory=lambda: FitConfig(epochs=3, learning_rate=1e-4,
                                                             embedding_learning_rate=1e-3, max_length=48))
    # Rounds for the words the model reads worst inside a sentence: every word is probed in one new
    # phrase; the worst get many more, trained beside a replay of the texts earlier rounds learnt.
    hard_word_rounds: int = 2
    hard_words: int = 2000
    contexts_per_hard_word: int = 12
    replay: int = 30000          # earlier rounds' texts trained again, per earlier round
    hard_word_fit: FitConfig = field(default_factory=lambda: FitConfig(epochs=2, learning_rate=1e-4,
                                                                    embedding_learning_rate=1e-3, max_length=48))
    kernel_items: int = 30       # mpnet's top items that make a target vector
    # The model takes part when the encoder's best cosine leads its 10th by less than a margin and
    # the top title holds less than min_title_cover of the query's words. Its vector, times a weight,
    # is added to the encoder's. The margin and weight kept are the pair whose lists agree best with
    # the targets on the held-out texts, among those that keep title@1 at the encoder's own or above
    # (2.0: any margin, the title rule alone decides).
    margins: tuple[float, ...] = (0.1, 0.2, 0.3, 0.5, 2.0)
    min_title_cover: float = 2 / 3
    weights: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0)
    fp32_min_cosine: float = 0.9999
    int8_min_mean_cosine: float = 0.98
    int8_min_cosine: float = 0.90
    seed: int = 0


def training_phrases(config: DescriptionConfig) -> list[str]:
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


def topic_phrases(config: DescriptionConfig) -> list[str]:
    """One composed phrase per word, the word as its topic and frequent words around it; distinct
    from ``training_phrases`` and QUERY_TEXTS."""
    if not config.topic_phrases:
        return []
    rng = random.Random(config.seed + 1)
    words = english_words(config.single_words)
    common = words[: config.composed_vocabulary]
    phrases = {rng.choice(_MANY).format(a=w, b=rng.choice(common), c=rng.choice(common)) for w in words}
    return sorted(phrases - set(training_phrases(config)) - set(QUERY_TEXTS))


def word_phrases(words: Sequence[str], per_word: int, common: Sequence[str], seed: int,
                 taken: set[str]) -> list[tuple[str, str]]:
    """(word, phrase) pairs: each word in up to ``per_word`` new composed phrases, in a random slot among
    frequent words; no phrase is in ``taken`` or repeated."""
    rng = random.Random(seed)
    seen = set(taken)
    pairs = []
    for word in words:
        made = 0
        for _ in range(4 * per_word):  # a bound: a tiny vocabulary may not give per_word new phrases
            if made == per_word:
                break
            slots = {"a": rng.choice(common), "b": rng.choice(common), "c": rng.choice(common)}
            shape = rng.choice(_MANY)
            slots[rng.choice([s for s in "abc" if "{" + s + "}" in shape])] = word
            phrase = shape.format(**slots)
            if phrase not in seen:
                seen.add(phrase)
                pairs.append((word, phrase))
                made += 1
    return pairs


def hard_words(probes: Sequence[tuple[str, str]], readings: np.ndarray, targets: np.ndarray,
               count: int) -> list[str]:
    """The ``count`` words whose probe phrases are read furthest from their targets, worst first."""
    cosines = (readings * targets).sum(axis=1)
    return [probes[i][0] for i in np.argsort(cosines, kind="stable")[:count]]


def read_with_mpnet(texts: Sequence[str], model_dir: Path, cache: Path, progress: Any = None) -> np.ndarray:
    """mpnet's unit vectors for ``texts``, cached in ``cache`` under a hash of the texts."""
    key = hashlib.sha256("\n".join(texts).encode("utf-8")).hexdigest()[:16]
    path = cache / f"mpnet-{key}.npy"
    if path.is_file():
        return np.load(path)
    from transformers import AutoModel, AutoTokenizer

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
    """(held-out rows, training rows): 5% held out, the same rows for every run of one seed."""
    order = np.random.default_rng(seed).permutation(count)
    return np.sort(order[: count // 20]), np.sort(order[count // 20 :])


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


def write_with_descriptions(source: Any, out: Path, model: Path, spec: Any, provenance: dict[str, Any],
                            notice: Path | None = None, tokenizer: Path | None = None) -> Any:
    """A copy of bundle ``source`` (its files unchanged, but the NOTICE when ``notice`` is given) with
    the description model ``model``, its own ``tokenizer`` if it has one, and its section; replaces
    ``out``."""
    from edgerec.bundle.writer import BundleWriter

    manifest = source.manifest
    replaced = {"descriptions", "descriptions_tokenizer"} | ({"notice"} if notice is not None else set())
    with BundleWriter(out, overwrite=True) as writer:
        for role, entry in manifest.files.items():
            if role not in replaced:
                writer.copy_in(role, source.path(role), sha256=entry.sha256)
        if notice is not None:
            writer.copy_in("notice", notice)
        writer.copy_in("descriptions", model)
        if tokenizer is not None:
            writer.copy_in("descriptions_tokenizer", tokenizer)
        return writer.finish(name=manifest.name, encoder=manifest.encoder, index=manifest.index,
                             items=manifest.items, user=manifest.user, provenance=provenance, descriptions=spec,
                             lexical=manifest.lexical, prior=manifest.prior)


def blend_overlaps(rec: Any, model: Any, texts: Sequence[str], references: np.ndarray, weights: Sequence[float],
                   margins: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """For each text: the top-10 overlap with its reference of the encoder alone, of the blend at each
    of ``weights``, and of the model alone (in that column order); and whether the model takes part
    with each of ``margins`` as its max_margin (texts x margins)."""
    overlaps = np.zeros((len(texts), len(weights) + 2), dtype=np.float32)
    take_part = np.zeros((len(texts), len(margins)), dtype=bool)
    blends, rules = _trials(model, weights, margins)
    for row, (text, reference) in enumerate(zip(texts, references)):
        encoded = rec.encoder.encode_one(text)
        labels, scores = rec.index.search(encoded, 10)
        title = str(rec.items.records[int(labels[0])].get(model.spec.title_field, ""))
        take_part[row] = [rule.take_part(text, scores, title) for rule in rules]
        wanted = set(rec.index.search(reference, 10)[0].tolist())
        reading = model.read(text)
        answers = [labels] + [rec.index.search(v, 10)[0] for v in [*(b.blend(encoded, reading) for b in blends), reading]]
        overlaps[row] = [len(wanted & set(a.tolist())) / 10 for a in answers]
    return overlaps, take_part


def title_hits(rec: Any, model: Any, records: Sequence[dict], weights: Sequence[float],
               margins: Sequence[float]) -> tuple[float, np.ndarray]:
    """title@1 over ``records`` (each record's title as the query) of the encoder alone, and of the
    rule with each of ``margins`` and ``weights`` (margins x weights)."""
    blends, rules = _trials(model, weights, margins)
    alone, hits = 0, np.zeros((len(margins), len(weights)))
    for record in records:
        title = record[model.spec.title_field]
        encoded = rec.encoder.encode_one(title)
        labels, scores = rec.index.search(encoded, 10)
        wanted = rec.items.labels[record[rec.items.id_field]]
        first = labels[0] == wanted
        alone += first
        take = np.array([rule.take_part(title, scores, str(rec.items.records[int(labels[0])].get(
            model.spec.title_field, ""))) for rule in rules])
        if take.any():
            reading = model.read(title)
            blended = np.array([rec.index.search(b.blend(encoded, reading), 1)[0][0] == wanted for b in blends])
            hits += np.where(take[:, None], blended[None, :], first)
        else:
            hits += first
    return alone / len(records), hits / len(records)


def _trials(model: Any, weights: Sequence[float], margins: Sequence[float]) -> tuple[list[Any], list[Any]]:
    """The runtime's own blend at each weight and take-part rule at each margin, so that what is
    measured is what queries get."""
    def like(**changes: float) -> Any:
        return type(model)(replace(model.spec, **changes), model.model)

    return [like(weight=w) for w in weights], [like(max_margin=m) for m in margins]


def choose_rule(overlaps: np.ndarray, take_part: np.ndarray, title_alone: float,
                titles: np.ndarray) -> tuple[int, int]:
    """(margin index, weight index): the pair whose lists agree best with the references over all the
    texts (the encoder's list where the model does not take part), among the pairs whose title@1
    (``titles``, margins x weights) is at least the encoder's alone; (-1, -1) when none is."""
    rule = np.where(take_part[:, :, None], overlaps[:, None, 1:-1], overlaps[:, None, :1]).mean(axis=0)
    rule[titles < title_alone] = -np.inf
    if not np.isfinite(rule).any():
        return -1, -1
    margin, weight = np.unravel_index(int(np.argmax(rule)), rule.shape)
    return int(margin), int(weight)


def measure(rec: Any, references: np.ndarray, records: Sequence[dict]) -> dict[str, Any]:
    """On the held-out QUERY_TEXTS: top-10 overlap with mpnet's reading (``references``) of the shipped
    rule and of the encoder alone, and, where the model takes part, of the model alone; title@1 over
    all titles, with and without the model."""
    model = rec.descriptions
    rows = []
    for text, reference in zip(QUERY_TEXTS, references):
        wanted = set(rec.index.search(reference, 10)[0].tolist())
        shipped = rec.query(text, 10)
        answers = {"shipped": [rec.items.labels[r.item_id] for r in shipped],
                   "encoder": [rec.items.labels[r.item_id] for r in rec.query(text, 10, descriptions=False)],
                   "model_alone": rec.index.search(model.read(text), 10)[0].tolist()}
        rows.append({"query": text, "reading": rec.query_reading(text),
                     **{k: len(wanted & set(v)) / 10 for k, v in answers.items()},
                     "top": [r.title for r in shipped]})

    def mean(key: str, subset: list[dict]) -> float:
        return round(float(np.mean([row[key] for row in subset])), 3) if subset else 0.0

    part = [row for row in rows if row["reading"] == "blend"]
    hits = {"encoder_only": 0, "shipped": 0}
    blended = 0
    for record in records:
        hits["encoder_only"] += rec.query(record["title"], 1, descriptions=False)[0].item_id == record["id"]
        hits["shipped"] += rec.query(record["title"], 1)[0].item_id == record["id"]
        blended += rec.query_reading(record["title"]) == "blend"
    return {
        "held_out_queries": len(rows),
        "model_takes_part": len(part),
        "overlap_at_10_with_mpnet": {
            "all": {"encoder_only": mean("encoder", rows), "shipped": mean("shipped", rows)},
            "where_the_model_takes_part": {"encoder_only": mean("encoder", part), "shipped": mean("shipped", part),
                                           "model_alone": mean("model_alone", part)},
        },
        "title_at_1": {**{k: round(v / len(records), 4) for k, v in hits.items()}, "titles": len(records),
                       "model_takes_part": blended},
        "queries": rows,
    }


def _export_checked(model_dir: Path, spec_of: Any, tokenizer: Path, texts: Sequence[str], reference: np.ndarray,
                    out: Path, config: DescriptionConfig) -> tuple[Path, Any, dict[str, Any]]:
    """The trained model to fp32 ONNX (checked against torch) and INT8 (checked against fp32)."""
    from edgerec.encoder import TextEncoder

    from .onnx_export import export_onnx
    from .quantize import Int8Config, quantize_int8
    from .validate import ValidationFailed, agreement, check

    fp32_path = export_onnx(model_dir, out / "fp32.onnx")
    spec = spec_of(fp32_path)
    fp32 = TextEncoder(fp32_path, tokenizer, spec, threads=1)
    fp32_vectors = fp32.encode(texts)
    versus_torch = agreement(fp32_vectors, reference)
    failures = check("descriptions fp32 vs torch", versus_torch, min_mean_cosine=config.fp32_min_cosine,
                     min_cosine=config.fp32_min_cosine)
    recipe = Int8Config(fuse=True, per_channel=True)
    int8_path = quantize_int8(fp32_path, out / "int8.onnx", recipe)
    int8 = TextEncoder(int8_path, tokenizer, spec_of(int8_path), threads=1)
    # One text at a time, as queries are read.
    versus_fp32 = agreement(np.concatenate([int8.encode([t]) for t in texts]), fp32_vectors)
    failures += check("descriptions int8 vs fp32", versus_fp32, min_mean_cosine=config.int8_min_mean_cosine,
                      min_cosine=config.int8_min_cosine)
    if failures:
        raise ValidationFailed("; ".join(failures))
    report = {"fp32_vs_torch": versus_torch.as_dict(), "int8_vs_fp32": versus_fp32.as_dict(),
              "recipe": recipe.describe(),
              "size_bytes": {"fp32": fp32_path.stat().st_size, "int8": int8_path.stat().st_size}}
    return int8_path, spec_of(int8_path), report


def _digest(texts: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(texts).encode("utf-8")).hexdigest()


def _trained_round(out: Path, starts_from: str, texts: list[str], targets: np.ndarray, config: FitConfig,
                   start: Any, base: TeacherFacts, tokenizer: Any, name: str,
                   progress: Any) -> tuple[Any, list[float], str]:
    """One training round: the model, its loss per epoch and a digest of the round that later rounds
    start from. A round saved in ``out`` from the same starting point, texts and settings is reloaded
    (each takes 20-40 minutes); otherwise the model ``start()`` gives is trained and saved there."""
    from transformers import AutoModel

    record = {"starts_from": starts_from, "fit": asdict(config), "texts_sha256": _digest(texts)}
    digest = _digest([json.dumps(record, sort_keys=True)])
    saved = out / "edgerec_training.json"
    if saved.is_file():
        previous = json.loads(saved.read_text())
        if {k: previous.get(k) for k in record} == record:
            print(f"[descriptions] {name}: reusing {out}")
            return AutoModel.from_pretrained(out), previous["loss_per_epoch"], digest
    model = start()
    print(f"[descriptions] {name}: training on {len(texts)} texts: {asdict(config)}")
    losses = fit(model, tokenizer, texts, targets, config, name=f"descriptions, {name}", progress=progress)
    save(model, tokenizer, out, base.path, {**record, "loss_per_epoch": losses})
    return model, losses, digest


def stage_descriptions(records: Sequence[dict], popularity: np.ndarray, bundle_dir: Path, work: Path,
                       base: TeacherFacts, config: DescriptionConfig = DescriptionConfig(),
                       notice: Path | None = None, progress: Any = None) -> dict[str, Any]:
    """Add a description model to the bundle at ``bundle_dir`` (its other files stay as they are;
    ``notice``, if given, replaces its NOTICE), with figures measured on the rewritten bundle in its
    provenance. ``base``: the sentence encoder whose layers the model starts from (all-MiniLM-L6-v2);
    ``popularity``: training ratings per record."""
    import torch

    from edgerec import Recommender
    from edgerec.bundle.reader import open_bundle
    from edgerec.descriptions import DescriptionModel
    from edgerec.items import item_text
    from edgerec.bundle.manifest import DescriptionSpec

    from .distil import shallow_copy
    from .onnx_export import encoder_spec

    source = open_bundle(bundle_dir)
    rec = Recommender.load(bundle_dir)
    ids = [record["id"] for record in records]
    if [r[rec.items.id_field] for r in rec.items.records] != ids:
        raise ValueError(f"{bundle_dir}: its items are not the catalogue's, in order; run the bundle stage first")
    reader = mpnet_reader(work)
    cache = work / "mpnet-cache"
    items = [item_text(r, source.manifest.items.text_fields) for r in records]
    queries = [t for t in query_like_texts(records, config.query_texts, seed=config.seed + 1)
               if t not in set(QUERY_TEXTS)]
    parts = [items, training_phrases(config), topic_phrases(config), queries]
    texts = [text for part in parts for text in part]
    print(f"[descriptions] all-mpnet-base-v2 reads {len(items)} item texts, {len(parts[1]) + len(parts[2])} "
          f"phrases and {len(queries)} query-like texts (cached in {cache})")
    # Read part by part, so that each part's cache outlives changes to the others.
    mpnet = np.concatenate([read_with_mpnet(part, reader.path, cache, progress=progress) for part in parts if part])
    item_mpnet = mpnet[: len(items)]
    item_vectors = rec.index.vectors(range(len(rec)))
    goal = reference_vectors(mpnet, item_mpnet, item_vectors, popularity, config.kernel_items)
    held, train = held_out_split(len(texts), config.seed)

    torch.manual_seed(config.seed)
    from transformers import AutoTokenizer

    pieces = AutoTokenizer.from_pretrained(base.path)
    out = work / "descriptions"
    words = english_words(config.single_words)
    whole = split_words(pieces, words) if config.whole_words else []
    tokenizer = with_whole_words(pieces, whole, out / "tokenizer") if whole else pieces
    if whole:
        print(f"[descriptions] {len(whole)} of the {len(words)} words get a token of their own")
    train_texts = [texts[i] for i in train]
    digest = _digest([base.name, *map(str, config.layers), *whole])  # what the first round starts from
    model, losses, digest = _trained_round(
        out / "round-1", digest, train_texts, goal[train], config.fit,
        lambda: grow_embeddings(shallow_copy(str(base.path), config.layers), pieces, whole),
        base, tokenizer, "first round", progress)

    def goals(phrases: list[str]) -> np.ndarray:
        return reference_vectors(read_with_mpnet(phrases, reader.path, cache, progress=progress), item_mpnet,
                                 item_vectors, popularity, config.kernel_items)

    common = words[: config.composed_vocabulary]
    seen = set(texts) | set(QUERY_TEXTS)
    hard_rounds = []
    learnt, learnt_goal = train_texts, goal[train]  # every text trained on so far, and its target
    for round_number in range(2, 2 + config.hard_word_rounds):
        seed = config.seed + 2 * (round_number - 1)
        probes = word_phrases(words, 1, common, seed, seen)
        seen |= {p for _, p in probes}
        print(f"[descriptions] round {round_number}: probing each of {len(probes)} words in a new phrase")
        probe_goal = goals([p for _, p in probes])
        readings = encode(model, tokenizer, [p for _, p in probes], max_length=config.fit.max_length)
        hard = hard_words(probes, readings, probe_goal, config.hard_words)
        contexts = [p for _, p in word_phrases(hard, config.contexts_per_hard_word, common, seed + 1, seen)]
        seen |= set(contexts)
        # Earlier rounds' texts come back too, or a round forgets the words the one before taught.
        replay = np.sort(np.random.default_rng(config.seed + round_number - 2).choice(
            len(learnt), min(config.replay * (round_number - 1), len(learnt)), replace=False))
        print(f"[descriptions] round {round_number}: the {len(hard)} words read worst in {len(contexts)} new "
              f"phrases, beside the probes and {len(replay)} texts of earlier rounds")
        new_texts, new_goal = [p for _, p in probes] + contexts, np.concatenate([probe_goal, goals(contexts)])
        model, round_losses, digest = _trained_round(
            out / f"round-{round_number}", digest, new_texts + [learnt[i] for i in replay],
            np.concatenate([new_goal, learnt_goal[replay]]), config.hard_word_fit,
            lambda: model, base, tokenizer, f"round {round_number}", progress)
        learnt, learnt_goal = learnt + new_texts, np.concatenate([learnt_goal, new_goal])
        hard_rounds.append({"probe_phrases": len(probes),
                            "probe_mean_cosine": round(float((readings * probe_goal).sum(axis=1).mean()), 4),
                            "hard_words": len(hard), "worst_words": hard[:20], "contexts": len(contexts),
                            "replay": len(replay), "loss_per_epoch": [round(x, 5) for x in round_losses]})
    model_dir = save(model, tokenizer, out / MODEL_DIR, base.path,
                     {"layers": list(config.layers), "fit": asdict(config.fit), "loss_per_epoch": losses,
                      "hard_word_fit": asdict(config.hard_word_fit), "hard_word_rounds": hard_rounds})
    held_texts = [texts[i] for i in held]
    facts = replace(base, path=model_dir)
    # With whole words the model reads with its own tokenizer; otherwise it shares the bundle's.
    own_tokenizer = model_dir / "tokenizer.json" if whole else None
    model_tokenizer = own_tokenizer or source.path("tokenizer")
    print("[descriptions] ONNX and INT8, each checked against the step before")
    int8_path, model_spec, export_report = _export_checked(
        model_dir, lambda path: encoder_spec(facts, path), model_tokenizer, held_texts[:500],
        encode(model, tokenizer, held_texts[:500]), out, config)

    def spec_with(margin: float, weight: float) -> DescriptionSpec:
        return DescriptionSpec(model=model_spec, max_margin=margin,
                               min_title_cover=round(config.min_title_cover, 4), weight=weight,
                               title_field="title", stopwords=STOPWORDS)

    print(f"[descriptions] choosing when the model takes part and its weight on {len(held)} held-out texts "
          "against mpnet's reading, and on every title")
    trial = DescriptionModel.load(int8_path, model_tokenizer, spec_with(config.margins[0], 1.0), threads=1)
    overlaps, take_part = blend_overlaps(rec, trial, held_texts, goal[held], config.weights, config.margins)
    title_alone, titles = title_hits(rec, trial, records, config.weights, config.margins)
    m, w = choose_rule(overlaps, take_part, title_alone, titles)
    if m < 0:
        from .validate import ValidationFailed

        raise ValidationFailed(f"every margin and weight tried lowers title@1 below the encoder's {title_alone:.4f}")
    margin, weight = config.margins[m], config.weights[w]
    rule_scores = {f"{mm}/{ww}": round(float(np.where(take_part[:, i], overlaps[:, 1 + j], overlaps[:, 0]).mean()), 4)
                   for i, mm in enumerate(config.margins) for j, ww in enumerate(config.weights)}
    spec = spec_with(margin, weight)
    write_with_descriptions(source, out / "bundle", int8_path, spec, dict(source.manifest.provenance),
                            tokenizer=own_tokenizer)
    print("[descriptions] measuring the rewritten bundle on the held-out query texts")
    shipped = Recommender.load(out / "bundle")
    query_references = reference_vectors(read_with_mpnet(list(QUERY_TEXTS), reader.path, cache), item_mpnet,
                                         item_vectors, popularity, config.kernel_items)
    figures = measure(shipped, query_references, records)
    report = {
        "reader": reader.name,
        "base": base.name,
        "layers": list(config.layers),
        "texts": {"item_texts": len(items), "phrases": len(parts[1]), "topic_phrases": len(parts[2]),
                  "query_like": len(queries),
                  "held_out": len(held), "phrase_source": "wordfreq English top words"},
        "fit": asdict(config.fit),
        "fit_loss_per_epoch": [round(x, 5) for x in losses],
        "hard_word_fit": asdict(config.hard_word_fit),
        "hard_word_rounds": hard_rounds,
        **export_report,
        "target": f"mpnet's top {config.kernel_items} catalogue items for the text, carried into the index's "
                  "space (softmax(z) x log(2 + ratings))",
        "rule_chosen_on_held_out_texts": {
            "max_margin": margin, "weight": weight, "texts": len(held),
            "model_takes_part": int(take_part[:, m].sum()),
            "overlap_by_margin_and_weight": rule_scores,
            "title_at_1_by_margin_and_weight": {f"{mm}/{ww}": round(float(titles[i, j]), 4)
                                                for i, mm in enumerate(config.margins)
                                                for j, ww in enumerate(config.weights)},
            "encoder_only": round(float(overlaps[:, 0].mean()), 4),
            "model_alone": round(float(overlaps[:, -1].mean()), 4), "title_at_1_encoder_only": round(title_alone, 4)},
        **{k: v for k, v in figures.items() if k != "queries"},
    }
    provenance = {**source.manifest.provenance, "descriptions": report}
    write_with_descriptions(source, bundle_dir, int8_path, spec, provenance, notice=notice, tokenizer=own_tokenizer)
    (work / "descriptions.json").write_text(json.dumps({**report, "queries": figures["queries"]}, indent=2) + "\n")
    everywhere = figures["overlap_at_10_with_mpnet"]["all"]
    part = figures["overlap_at_10_with_mpnet"]["where_the_model_takes_part"]
    print(f"[descriptions] on {len(held)} held-out texts the model takes part with a margin below {margin}, at "
          f"weight {weight}: overlap {rule_scores[f'{margin}/{weight}']} (encoder only {overlaps[:, 0].mean():.4f}, "
          f"model alone {overlaps[:, -1].mean():.4f}); title@1 {titles[m, w]:.4f} (encoder only {title_alone:.4f})")
    print(f"[descriptions] held-out query texts: the model takes part in {figures['model_takes_part']} of "
          f"{figures['held_out_queries']}; top-10 overlap with mpnet's reading: shipped {everywhere['shipped']}, "
          f"encoder only {everywhere['encoder_only']}; where it takes part: shipped {part['shipped']}, "
          f"encoder only {part['encoder_only']}, model alone {part['model_alone']}")
    print(f"[descriptions] title@1: encoder only {figures['title_at_1']['encoder_only']}, shipped "
          f"{figures['title_at_1']['shipped']} (the model takes part in {figures['title_at_1']['model_takes_part']})")
    return report
