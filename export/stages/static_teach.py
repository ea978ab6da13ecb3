"""Teaching a fitted static table what descriptions mean, from a bundle that has a description model.

A table fitted to interactions knows titles, genres and what people watch
together, but not that a heist is a crime film or that the mafia means The
Godfather: MovieLens has no plot text. A bundle's description model
(edgerec.descriptions) was distilled from all-mpnet-base-v2's reading of
~110,000 phrases built from frequent English words. Here it reads the same
kind of phrases; each phrase's goal is its top items in the teacher bundle's
index, mixed in the new table's target space by softmax of the standardised
cosine times log(2 + training ratings) (descriptions.reference_vectors). The
table then learns those goals beside a replay of the texts it was fitted on,
so that titles and interactions are kept. One model answers titles and
descriptions; the teacher's layers do not ship.

5% of the phrases are held out: the top-10 overlap of the table's reading with
its goal on them is measured before and after.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .descriptions import DescriptionConfig, held_out_split, reference_vectors, topic_phrases, training_phrases
from .static_embed import MAX_TOKENS, StaticEncoder
from .static_fit import StaticFitConfig, fit_static, token_ids


@dataclass(frozen=True)
class TeachConfig:
    epochs: int = 2
    batch_size: int = 512
    learning_rate: float = 1e-3
    kernel_items: int = 30       # the teacher's top items that make a phrase's goal
    seed: int = 0
    # The phrases read; empty: the description stage's (~110,000 from wordfreq's frequent English words).
    phrases: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        body = asdict(self)
        body["phrases"] = len(self.phrases) or "description phrases (wordfreq)"
        return body

    def phrase_list(self) -> list[str]:
        if self.phrases:
            return list(self.phrases)
        config = DescriptionConfig(seed=self.seed)
        return training_phrases(config) + topic_phrases(config)


def teacher_goals(teacher: Path, phrases: Sequence[str], item_ids: Sequence[str], targets: np.ndarray,
                  popularity: np.ndarray, kernel_items: int) -> np.ndarray:
    """Each phrase read by ``teacher``'s description model, carried into the space of ``targets`` (rows in the
    order of ``item_ids``, which must be the teacher's catalogue)."""
    from edgerec import Recommender

    bundle = Recommender.load(teacher, threads=None)
    if bundle.descriptions is None:
        raise ValueError(f"{teacher}: has no description model to teach descriptions with")
    if [str(r[bundle.items.id_field]) for r in bundle.items.records] != list(item_ids):
        raise ValueError(f"{teacher}: its items are not this catalogue's, in this order")
    readings = bundle.descriptions.model.encode(list(phrases), batch_size=64)
    return reference_vectors(readings, bundle.index.vectors(range(len(bundle))), targets, popularity, kernel_items)


def teach_descriptions(rows: np.ndarray, tokenizer: Path, replay: Sequence[str], replay_goals: np.ndarray,
                       teacher: Path, item_ids: Sequence[str], targets: np.ndarray, popularity: np.ndarray,
                       config: TeachConfig, progress: Any = None) -> tuple[np.ndarray, dict[str, Any]]:
    """(the taught rows, a report). ``replay``: the texts the table was fitted on, with their goals."""
    phrases = config.phrase_list()
    print(f"[static] teaching descriptions: {teacher}'s description model reads {len(phrases):,} phrases")
    goals = teacher_goals(teacher, phrases, item_ids, targets, popularity, config.kernel_items)
    held, trained = held_out_split(len(phrases), config.seed)
    texts = list(replay) + [phrases[i] for i in trained]
    fit = StaticFitConfig(epochs=config.epochs, batch_size=config.batch_size, learning_rate=config.learning_rate,
                          seed=config.seed)
    print(f"[static] teaching on {len(trained):,} phrases and a replay of {len(replay):,} texts: {config.as_dict()}")
    taught, losses = fit_static(rows, token_ids(tokenizer, texts, MAX_TOKENS),
                                np.concatenate([replay_goals, goals[trained]]), fit, name="teach", progress=progress)
    held_texts = [phrases[i] for i in held]
    before = held_overlap(StaticEncoder(rows, tokenizer), held_texts, goals[held], targets)
    after = held_overlap(StaticEncoder(taught, tokenizer), held_texts, goals[held], targets)
    report = {"teacher": str(teacher), "config": config.as_dict(), "phrases": len(phrases), "held_out": len(held),
              "loss_per_epoch": [round(x, 5) for x in losses],
              "held_out_overlap_at_10": {"before": round(before, 4), "after": round(after, 4)}}
    print(f"[static] held-out phrases, top-10 overlap with the teacher's goal: {before:.4f} -> {after:.4f}")
    return taught, report


def held_overlap(encoder: StaticEncoder, texts: Sequence[str], goals: np.ndarray, targets: np.ndarray) -> float:
    """Mean share of the goal's top 10 items (among ``targets``) that the encoder's reading also ranks top 10."""
    def top10(vectors: np.ndarray) -> np.ndarray:
        return np.argsort(-(vectors @ targets.T), axis=1)[:, :10]
    mine, theirs = top10(encoder.encode(list(texts))), top10(goals)
    return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(mine.tolist(), theirs.tolist())]))
