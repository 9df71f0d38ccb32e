"""Text dataset readers (MR, SST-2, CoNLL-2003, Tiny Shakespeare, Multi30k) and entity-level F1.

Readers return plain Python lists and NumPy arrays; turn them into tensors with
:mod:`deepzen.data.text`. Any text file reads with :func:`deepzen.data.paths.read_text`.

Tagging schemes: CoNLL-2003 uses IOB1 (``I-X`` everywhere, ``B-X`` only between two adjacent
entities of one type); IOB2 (``BIO``) starts every entity with ``B-X``; IOBES also marks ends
(``E-X``) and single tokens (``S-X``). :func:`entity_f1` reads all three the way ``conlleval``
does, so scores are comparable with the published ones whatever scheme a model emits.

Example:
    >>> conll_entities(["I-PER", "I-PER", "B-PER", "O", "I-LOC"])
    [('PER', 0, 2), ('PER', 2, 3), ('LOC', 4, 5)]
    >>> to_bio(["I-PER", "I-PER", "B-PER", "O", "I-LOC"])
    ['B-PER', 'I-PER', 'B-PER', 'O', 'B-LOC']
    >>> scores = entity_f1([["B-PER", "I-PER", "O", "B-LOC"]], [["B-PER", "I-PER", "O", "B-ORG"]])
    >>> scores["precision"], scores["recall"], scores["f1"]
    (0.5, 0.5, 0.5)
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from deepzen.data.paths import DatasetCorruptedError, PathLike, dataset_files, read_text

CONLL_SPLITS = {"train": "eng.train", "valid": "eng.testa", "dev": "eng.testa", "testa": "eng.testa",
                "test": "eng.testb", "testb": "eng.testb"}
SST2_SPLITS = ("train", "dev", "test")
MULTI30K_SPLITS = {"train": "train", "val": "val", "valid": "val", "test": "test_2016_flickr",
                   "test_2016_flickr": "test_2016_flickr"}


def _lines(text: str) -> list[str]:
    # Not str.splitlines(): it also splits at U+0085 and U+2028, which occur inside MR's latin-1 lines.
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.rstrip("\r") for line in lines]


def _split_name(split: str, splits: Sequence[str], dataset: str) -> str:
    if split not in splits:
        raise ValueError(f"Unknown {dataset} split {split!r}. Expected one of: {', '.join(splits)}")
    return split


def _label_first_lines(path: Path, sep: str, encoding: str) -> tuple[list[str], list[str]]:
    """``label<sep>text`` lines -> (texts, labels as strings); blank lines are skipped."""
    texts, labels = [], []
    for number, line in enumerate(_lines(read_text(path, encoding)), start=1):
        if not line.strip():
            continue
        label, found, text = line.partition(sep)
        if not found:
            raise DatasetCorruptedError(f"{path}, line {number}: expected 'label{sep!r}text'. Received: {line[:80]!r}")
        texts.append(text.strip())
        labels.append(label.strip())
    return texts, labels


def load_labeled_text(path: PathLike, *, sep: str = "\t", encoding: str = "utf-8"):
    """Reads your own classification data: one ``label<TAB>text`` example per line.

    Args:
        path: the text file.
        sep: what separates the label from the text (the first occurrence counts).
        encoding: the file's text encoding.

    Returns:
        ``(texts, labels, classes)``: list of str, int64 array ``(N,)`` indexing ``classes``, and the
        sorted distinct labels (numerically sorted when all are integers, so "0", "1" map to 0, 1).
    """
    texts, raw = _label_first_lines(Path(path), sep, encoding)
    distinct = set(raw)
    numeric = all(label.lstrip("-").isdigit() for label in distinct)
    classes = sorted(distinct, key=int if numeric else str)
    position = {label: i for i, label in enumerate(classes)}
    return texts, np.array([position[label] for label in raw], dtype=np.int64), classes


def load_mr(data: PathLike | None = None, *, verify: bool = False):
    """MR movie-review polarity (Pang & Lee 2005): 5331 positive + 5331 negative snippets.

    There is no official split (papers report 10-fold cross-validation).

    Returns:
        ``(texts, labels)``: list of str (positives first), int64 array, 1 = positive, 0 = negative.
    """
    files = dataset_files("mr", ["rt-polarity.pos", "rt-polarity.neg"], data=data, verify=verify)
    texts, labels = [], []
    for name, label in (("rt-polarity.pos", 1), ("rt-polarity.neg", 0)):
        lines = [line.strip() for line in _lines(read_text(files[name], "latin-1")) if line.strip()]
        texts += lines
        labels += [label] * len(lines)
    return texts, np.array(labels, dtype=np.int64)


def load_sst2(data: PathLike | None = None, *, verify: bool = False):
    """SST-2 sentences with Kim (2014)'s split: 6920 train / 872 dev / 1821 test.

    Returns:
        ``{"train": (texts, labels), "dev": ..., "test": ...}``, labels int64, 1 = positive.
    """
    names = [f"stsa.binary.{split}" for split in SST2_SPLITS]
    files = dataset_files("sst2", names, data=data, verify=verify)
    splits = {}
    for split, name in zip(SST2_SPLITS, names):
        texts, labels = _label_first_lines(files[name], " ", "utf-8")
        wrong = next((label for label in labels if label not in ("0", "1")), None)
        if wrong is not None:
            raise DatasetCorruptedError(f"{files[name]}: expected labels 0 or 1. Received: {wrong!r}")
        splits[split] = (texts, np.array(labels, dtype=np.int64))
    return splits


def load_conll_file(path: PathLike, *, encoding: str = "utf-8"):
    """Reads a CoNLL-format file: one token per line, columns separated by whitespace.

    The token is the FIRST column and the tag the LAST (two-column files work too); blank lines
    end sentences; ``-DOCSTART-`` lines are skipped. Tags are returned as written (IOB1, IOB2 or
    IOBES; convert with :func:`to_bio` / :func:`to_bioes`).

    Returns:
        ``(sentences, tags)``: lists of token lists and of tag lists.
    """
    sentences, tag_seqs, tokens, tags = [], [], [], []
    for number, line in enumerate(_lines(read_text(path, encoding)), start=1):
        columns = line.split()
        if not columns or columns[0] == "-DOCSTART-":
            if tokens:
                sentences.append(tokens)
                tag_seqs.append(tags)
                tokens, tags = [], []
            continue
        if len(columns) < 2:
            raise DatasetCorruptedError(f"{path}, line {number}: expected 'token ... tag' (2 or more columns). "
                                        f"Received: {line[:80]!r}")
        tokens.append(columns[0])
        tags.append(columns[-1])
    if tokens:
        sentences.append(tokens)
        tag_seqs.append(tags)
    return sentences, tag_seqs


def load_conll(data: PathLike | None = None, split: str | None = None, *, verify: bool = False):
    """CoNLL-2003 English NER (IOB1 tags): 14041 / 3250 / 3453 sentences.

    Args:
        data: the dataset folder (default ``$DEEPZEN_DATA/conll2003``), or one CoNLL file to read
            (then leave ``split`` unset).
        split: ``"train"``, ``"valid"`` (= ``"dev"``, ``eng.testa``) or ``"test"`` (``eng.testb``);
            default ``"train"``.
        verify: check the published sha256 sum.

    Returns:
        ``(sentences, tags)`` as :func:`load_conll_file`.
    """
    if data is not None and Path(data).is_file():
        if split is not None:
            raise ValueError(f"data={str(data)!r} is a file, so split= has nothing to select. "
                             f"Received: split={split!r}")
        return load_conll_file(data)
    name = CONLL_SPLITS[_split_name(split or "train", list(CONLL_SPLITS), "CoNLL-2003")]
    return load_conll_file(dataset_files("conll2003", [name], data=data, verify=verify)[name])


def load_tinyshakespeare(data: PathLike | None = None, *, verify: bool = False) -> str:
    """Tiny Shakespeare (1,115,394 characters) as one string; split it yourself (90/10 is usual)."""
    return read_text(dataset_files("tinyshakespeare", ["input.txt"], data=data, verify=verify)["input.txt"])


def load_multi30k(data: PathLike | None = None, split: str = "train", *, verify: bool = False):
    """Multi30k Task 1 English-German pairs: 29000 train / 1014 val / 1000 test (2016 Flickr).

    Args:
        data: folder with ``{train,val,test_2016_flickr}.{en,de}.gz`` (or uncompressed).
        split: ``"train"``, ``"val"`` (= ``"valid"``) or ``"test"`` (= ``"test_2016_flickr"``).

    Returns:
        ``(en, de)``: two lists of raw sentences; ``en[i]`` translates to ``de[i]``.
    """
    stem = MULTI30K_SPLITS[_split_name(split, list(MULTI30K_SPLITS), "Multi30k")]
    specs = [(f"{stem}.{lang}.gz", f"{stem}.{lang}") for lang in ("en", "de")]
    en_path, de_path = dataset_files("multi30k", specs, data=data, verify=verify).values()
    en, de = _lines(read_text(en_path)), _lines(read_text(de_path))
    if len(en) != len(de):
        raise DatasetCorruptedError(f"{en_path.name} has {len(en)} lines but {de_path.name} has {len(de)}; "
                                    "expected one translation per line.")
    return en, de


# -- tagging schemes and entity-level scores (conlleval's definitions) ---------------------------------

def _parts(tag: str) -> tuple[str, str]:
    """``"B-PER"`` -> ``("B", "PER")``; ``"O"`` -> ``("O", "")``."""
    prefix, _, kind = tag.partition("-")
    return prefix, kind


def _chunk_ends(prev_prefix: str, prefix: str, prev_kind: str, kind: str) -> bool:
    return (prev_prefix in ("E", "S")
            or (prev_prefix in ("B", "I") and prefix in ("B", "S", "O"))
            or (prev_prefix != "O" and prev_kind != kind))


def _chunk_starts(prev_prefix: str, prefix: str, prev_kind: str, kind: str) -> bool:
    return (prefix in ("B", "S")
            or (prev_prefix in ("E", "S", "O") and prefix in ("E", "I"))
            or (prefix != "O" and prev_kind != kind))


def conll_entities(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """The entities of one tag sequence as ``(type, start, end)`` (end exclusive), as conlleval reads them.

    Works for IOB1, IOB2 and IOBES; an ``I-X`` after ``O`` or after another type starts an entity.
    """
    entities, start, prev_prefix, prev_kind = [], 0, "O", ""
    for i, tag in enumerate([*tags, "O"]):
        prefix, kind = _parts(tag)
        if _chunk_ends(prev_prefix, prefix, prev_kind, kind):
            entities.append((prev_kind, start, i))
        if _chunk_starts(prev_prefix, prefix, prev_kind, kind):
            start = i
        prev_prefix, prev_kind = prefix, kind
    return entities


def _retag(tags: Sequence[str], *, bioes: bool) -> list[str]:
    out = ["O"] * len(tags)
    for kind, start, end in conll_entities(tags):
        suffix = f"-{kind}" if kind else ""
        out[start:end] = ["B" + suffix] + ["I" + suffix] * (end - start - 1)
        if bioes:
            out[end - 1] = ("S" if end - start == 1 else "E") + suffix
    return out


def to_bio(tags: Sequence[str]) -> list[str]:
    """IOB1, IOB2 or IOBES -> IOB2 (BIO): every entity :func:`conll_entities` finds starts with ``B-X``.

    Example:
        >>> to_bio(["S-LOC", "B-PER", "E-PER", "I-PER"])
        ['B-LOC', 'B-PER', 'I-PER', 'B-PER']
    """
    return _retag(tags, bioes=False)


def iob1_to_iob2(tags: Sequence[str]) -> list[str]:
    """IOB1 -> IOB2: an ``I-X`` that begins an entity (after ``O`` or another type) becomes ``B-X``.

    The same conversion as :func:`to_bio`, named for CoNLL-2003's scheme.
    """
    return to_bio(tags)


def to_bioes(tags: Sequence[str]) -> list[str]:
    """IOB1, IOB2 or IOBES -> IOBES: single-token entities ``S-X``, multi-token ones ``B-X I-X ... E-X``."""
    return _retag(tags, bioes=True)


def _scores(n_correct: int, n_true: int, n_pred: int) -> dict[str, float]:
    precision = n_correct / n_pred if n_pred else 0.0
    recall = n_correct / n_true if n_true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "support": n_true}


def entity_f1(true_tag_seqs: Sequence[Sequence[str]], pred_tag_seqs: Sequence[Sequence[str]]) -> dict:
    """Entity-level precision, recall and F1 (micro-averaged over types), as conlleval computes them.

    An entity is correct when its type, first and last token all match. Sentences are scored one
    by one; tags may be IOB1, IOB2 or IOBES.

    Args:
        true_tag_seqs: the gold tags, one sequence per sentence.
        pred_tag_seqs: the predicted tags, same lengths.

    Returns:
        ``{"precision", "recall", "f1", "support": number of gold entities,
        "per_type": {type: {"precision", "recall", "f1", "support"}}}``.
    """
    if len(true_tag_seqs) != len(pred_tag_seqs):
        raise ValueError(f"Expected as many predicted as true sentences. Received: {len(pred_tag_seqs)} "
                         f"predicted, {len(true_tag_seqs)} true")
    true_entities, pred_entities = set(), set()
    for sentence, (true_tags, pred_tags) in enumerate(zip(true_tag_seqs, pred_tag_seqs)):
        if len(true_tags) != len(pred_tags):
            raise ValueError(f"Sentence {sentence}: expected {len(true_tags)} predicted tags, "
                             f"received {len(pred_tags)}")
        true_entities.update((sentence, *entity) for entity in conll_entities(true_tags))
        pred_entities.update((sentence, *entity) for entity in conll_entities(pred_tags))
    correct = true_entities & pred_entities
    result = _scores(len(correct), len(true_entities), len(pred_entities))
    def count(entities: set, kind: str) -> int:
        return sum(entity[1] == kind for entity in entities)

    kinds = sorted({entity[1] for entity in true_entities | pred_entities})
    result["per_type"] = {kind: _scores(count(correct, kind), count(true_entities, kind), count(pred_entities, kind))
                          for kind in kinds}
    return result
