import doctest
import gzip
import warnings
from collections import Counter

import numpy as np
import pytest

from deepzen.data import text_datasets
from deepzen.data.paths import DatasetCorruptedError, DatasetNotFoundError
from deepzen.data.text_datasets import (conll_entities, entity_f1, iob1_to_iob2, load_conll, load_conll_file,
                                        load_labeled_text, load_mr, load_multi30k, load_sst2, load_tinyshakespeare,
                                        to_bio, to_bioes)

seqeval_metrics = pytest.importorskip("seqeval.metrics")
from seqeval.metrics.sequence_labeling import get_entities  # noqa: E402


def test_doctests():
    assert doctest.testmod(text_datasets).failed == 0


# -- classification sets ------------------------------------------------------------------------------

def test_mr_has_5331_positive_and_5331_negative_snippets(real_dataset):
    folder = real_dataset("mr")
    texts, labels = load_mr()
    assert len(texts) == 10662 and labels.dtype == np.int64
    assert labels[:5331].tolist() == [1] * 5331 and labels[5331:].tolist() == [0] * 5331
    raw_first = (folder / "rt-polarity.neg").read_bytes().split(b"\n")[0].decode("latin-1").strip()
    assert texts[5331] == raw_first
    assert any("é" in t for t in texts)  # latin-1 decoded, not mangled
    assert all(t == t.strip() and t for t in texts)


def test_sst2_split_sizes_and_label_counts(real_dataset):
    folder = real_dataset("sst2")
    splits = load_sst2()
    counts = {name: (len(texts), np.bincount(labels).tolist()) for name, (texts, labels) in splits.items()}
    assert counts == {"train": (6920, [3310, 3610]), "dev": (872, [428, 444]), "test": (1821, [912, 909])}
    first_line = (folder / "stsa.binary.dev").read_text(encoding="utf-8").split("\n")[0]
    assert (splits["dev"][1][0], splits["dev"][0][0]) == (int(first_line[0]), first_line[2:].strip())


def test_sst2_bad_label_is_reported(tmp_path):
    for name in ("train", "dev", "test"):
        (tmp_path / f"stsa.binary.{name}").write_text("1 fine .\n0 bad .\n")
    (tmp_path / "stsa.binary.dev").write_text("1 fine .\n2 what .\n")
    with pytest.raises(DatasetCorruptedError, match="labels 0 or 1"):
        load_sst2(tmp_path)


def test_missing_mr_names_both_files(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="rt-polarity.pos, rt-polarity.neg"):
        load_mr(tmp_path)


def test_labeled_text_maps_labels_to_sorted_classes(tmp_path):
    (tmp_path / "a.tsv").write_text("pos\tgreat film\n\nneg\tdull\tvery dull\npos\tfun\n")
    texts, labels, classes = load_labeled_text(tmp_path / "a.tsv")
    assert texts == ["great film", "dull\tvery dull", "fun"]
    assert classes == ["neg", "pos"] and labels.tolist() == [1, 0, 1]
    (tmp_path / "n.tsv").write_text("10\ta\n2\tb\n1\tc\n")
    _, labels, classes = load_labeled_text(tmp_path / "n.tsv")
    assert classes == ["1", "2", "10"] and labels.tolist() == [2, 1, 0]
    (tmp_path / "bad.tsv").write_text("pos\tok\nno tab here\n")
    with pytest.raises(DatasetCorruptedError, match="line 2"):
        load_labeled_text(tmp_path / "bad.tsv")


# -- CoNLL --------------------------------------------------------------------------------------------

CONLL_TABLE = {  # README / Tjong Kim Sang & De Meulder (2003): sentences, tokens, PER, LOC, ORG, MISC
    "train": (14041, 203621, 6600, 7140, 6321, 3438),
    "valid": (3250, 51362, 1842, 1837, 1341, 922),
    "test": (3453, 46435, 1617, 1668, 1661, 702),
}


@pytest.fixture(scope="module")
def conll(real_dataset):
    real_dataset("conll2003")
    return {split: load_conll(split=split) for split in CONLL_TABLE}


@pytest.mark.parametrize("split", list(CONLL_TABLE))
def test_conll_counts_match_the_published_statistics(conll, split):
    sentences, tags = conll[split]
    entities = Counter(kind for seq in tags for kind, _, _ in conll_entities(seq))
    counts = (len(sentences), sum(map(len, sentences)), entities["PER"], entities["LOC"], entities["ORG"],
              entities["MISC"])
    assert counts == CONLL_TABLE[split]
    assert all(len(s) == len(t) for s, t in zip(sentences, tags))
    assert not any(s[0] == "-DOCSTART-" for s in sentences)


def test_conll_dev_aliases_and_file_argument(conll, real_dataset):
    assert load_conll(split="dev") == conll["valid"]
    assert load_conll(real_dataset("conll2003") / "eng.testb") == conll["test"]
    with pytest.raises(ValueError, match="split="):
        load_conll(real_dataset("conll2003") / "eng.testb", split="test")
    with pytest.raises(ValueError, match="Expected one of"):
        load_conll(split="validation")


def test_conll_file_reader_handles_two_columns_docstart_and_blank_runs(tmp_path):
    (tmp_path / "x.conll").write_text("-DOCSTART- O\n\nJohn B-PER\nlives O\n\n\n\nin O\n"
                                      "-DOCSTART- O\nParis\tI-LOC\r\n")
    sentences, tags = load_conll_file(tmp_path / "x.conll")
    assert sentences == [["John", "lives"], ["in"], ["Paris"]]
    assert tags == [["B-PER", "O"], ["O"], ["I-LOC"]]
    (tmp_path / "bad.conll").write_text("John B-PER\nlonely\n")
    with pytest.raises(DatasetCorruptedError, match="line 2"):
        load_conll_file(tmp_path / "bad.conll")


def test_conll_truncated_copy_keeps_whole_lines_only(conll, real_dataset, tmp_path):
    content = (real_dataset("conll2003") / "eng.testa").read_bytes()
    (tmp_path / "eng.testa").write_bytes(content[: content.index(b"\n", len(content) // 2)])
    sentences, _ = load_conll(tmp_path, split="valid")
    assert 0 < len(sentences) < len(conll["valid"][0])
    assert sentences[:-1] == conll["valid"][0][: len(sentences) - 1]


# -- tagging schemes and entity F1 vs seqeval ----------------------------------------------------------

@pytest.mark.parametrize("tags, entities", [
    (["I-PER", "I-PER", "B-PER", "O"], [("PER", 0, 2), ("PER", 2, 3)]),           # IOB1: B only between same type
    (["I-PER", "I-LOC", "I-LOC"], [("PER", 0, 1), ("LOC", 1, 3)]),                 # type change starts an entity
    (["O", "I-ORG", "O", "B-ORG", "I-ORG"], [("ORG", 1, 2), ("ORG", 3, 5)]),
    (["B-PER", "E-PER", "S-PER", "B-LOC", "I-LOC", "E-LOC"], [("PER", 0, 2), ("PER", 2, 3), ("LOC", 3, 6)]),
    (["B-PER", "E-PER", "I-PER"], [("PER", 0, 2), ("PER", 2, 3)]),                 # I after E starts anew
    (["E-MISC", "O"], [("MISC", 0, 1)]),
])
def test_conll_entities_edge_cases(tags, entities):
    assert conll_entities(tags) == entities
    assert [(k, s, e + 1) for k, s, e in get_entities(tags)] == entities


def random_tag_sequences(rng, n, prefixes="BIESO", kinds=("PER", "LOC", "ORG")):
    tags = [f"{p}-{k}" for p in prefixes if p != "O" for k in kinds] + ["O"] * 4
    return [[tags[i] for i in rng.integers(0, len(tags), rng.integers(1, 12))] for _ in range(n)]


def test_conll_entities_match_seqeval_on_random_sequences():
    rng = np.random.default_rng(0)
    for tags in random_tag_sequences(rng, 2000):
        expected = [(kind, start, end + 1) for kind, start, end in get_entities(tags)]
        assert sorted(conll_entities(tags)) == sorted(expected), tags


def seqeval_scores(true, pred):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = seqeval_metrics.classification_report(true, pred, output_dict=True, zero_division=0)
        return (seqeval_metrics.precision_score(true, pred, zero_division=0),
                seqeval_metrics.recall_score(true, pred, zero_division=0),
                seqeval_metrics.f1_score(true, pred, zero_division=0), report)


def assert_matches_seqeval(true, pred):
    ours = entity_f1(true, pred)
    precision, recall, f1, report = seqeval_scores(true, pred)
    assert ours["precision"] == pytest.approx(precision, abs=1e-12)
    assert ours["recall"] == pytest.approx(recall, abs=1e-12)
    assert ours["f1"] == pytest.approx(f1, abs=1e-12)
    assert set(ours["per_type"]) == set(report) - {"micro avg", "macro avg", "weighted avg"}
    for kind, scores in ours["per_type"].items():
        for key, seqeval_key in (("precision", "precision"), ("recall", "recall"), ("f1", "f1-score"),
                                 ("support", "support")):
            assert scores[key] == pytest.approx(report[kind][seqeval_key], abs=1e-12), (kind, key)


def test_entity_f1_matches_seqeval_on_conll_with_iob1_errors(conll):
    rng = np.random.default_rng(1)
    true = conll["test"][1]
    replacements = ["O", "I-PER", "B-PER", "I-LOC", "B-LOC", "I-ORG", "I-MISC", "B-MISC"]
    pred = [[replacements[rng.integers(len(replacements))] if rng.random() < 0.08 else t for t in seq]
            for seq in true]
    assert_matches_seqeval(true, pred)
    assert entity_f1(true, true)["f1"] == 1.0
    converted = [to_bio(seq) for seq in pred]
    assert_matches_seqeval([to_bio(seq) for seq in true], converted)
    assert entity_f1([to_bio(seq) for seq in true], converted) == entity_f1(true, pred)


def test_entity_f1_matches_seqeval_on_random_mixed_schemes():
    rng = np.random.default_rng(2)
    true = random_tag_sequences(rng, 300)
    pred = [[t if rng.random() < 0.7 else other for t, other in zip(seq, random_tag_sequences(rng, 1)[0] * 12)]
            for seq in true]
    assert_matches_seqeval(true, pred)


def test_entity_f1_corner_cases_and_errors():
    nothing = entity_f1([["O", "O"]], [["O", "O"]])
    assert (nothing["precision"], nothing["recall"], nothing["f1"], nothing["per_type"]) == (0.0, 0.0, 0.0, {})
    with pytest.raises(ValueError, match="Sentence 0"):
        entity_f1([["O", "B-PER"]], [["O"]])
    with pytest.raises(ValueError, match="as many predicted"):
        entity_f1([["O"]], [])


def test_scheme_conversions_keep_the_entities(conll):
    for tags in conll["train"][1][:3000]:
        bio, bioes = to_bio(tags), to_bioes(tags)
        assert conll_entities(bio) == conll_entities(tags) == conll_entities(bioes)
        assert iob1_to_iob2(tags) == bio
        assert to_bio(bioes) == bio and to_bioes(bio) == bioes
        # Valid IOB2: no entity begins with I-; valid IOBES: singles are S-, ends are E-.
        assert all(bio[start].startswith("B-") for _, start, _ in conll_entities(bio))
        assert all(bioes[end - 1][0] == ("S" if end - start == 1 else "E") for _, start, end in conll_entities(bioes))


def test_seqeval_strict_iob2_reads_converted_tags_like_conlleval(conll):
    from seqeval.scheme import IOB2

    true = [to_bio(seq) for seq in conll["valid"][1]]
    report = seqeval_metrics.classification_report(true, true, mode="strict", scheme=IOB2, output_dict=True)
    entities = Counter(kind for seq in conll["valid"][1] for kind, _, _ in conll_entities(seq))
    assert {kind: report[kind]["support"] for kind in entities} == dict(entities)


# -- language modelling and translation ----------------------------------------------------------------

def test_tinyshakespeare(real_dataset):
    real_dataset("tinyshakespeare")
    corpus = load_tinyshakespeare()
    assert len(corpus) == 1115394 and corpus.startswith("First Citizen:")
    assert len(set(corpus)) == 65


@pytest.mark.parametrize("split, size", [("train", 29000), ("val", 1014), ("valid", 1014), ("test", 1000)])
def test_multi30k_split_sizes(real_dataset, split, size):
    folder = real_dataset("multi30k")
    en, de = load_multi30k(split=split)
    assert len(en) == len(de) == size
    stem = {"train": "train", "val": "val", "valid": "val", "test": "test_2016_flickr"}[split]
    with gzip.open(folder / f"{stem}.de.gz", "rt", encoding="utf-8") as f:
        assert de == f.read().splitlines()


def test_multi30k_uncompressed_copies_and_mismatched_lengths(tmp_path):
    (tmp_path / "val.en").write_text("A dog .\nTwo cats .\n", encoding="utf-8")
    (tmp_path / "val.de.gz").write_bytes(gzip.compress("Ein Hund .\nZwei Katzen .\n".encode()))
    assert load_multi30k(tmp_path, "val") == (["A dog .", "Two cats ."], ["Ein Hund .", "Zwei Katzen ."])
    (tmp_path / "val.de.gz").write_bytes(gzip.compress("Ein Hund .\n".encode()))
    with pytest.raises(DatasetCorruptedError, match="2 lines but .* 1"):
        load_multi30k(tmp_path, "val")
    with pytest.raises(ValueError, match="Unknown Multi30k split"):
        load_multi30k(tmp_path, "test2017")
