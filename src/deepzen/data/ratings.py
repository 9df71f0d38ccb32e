"""Rating tables for recommenders: MovieLens 100K, your own CSV/TSV files, and train/test splits.

A :class:`Ratings` holds parallel NumPy arrays, one entry per (user, item, rating[, timestamp]).

Example:
    >>> table = Ratings(user=np.array([1, 1, 2]), item=np.array([10, 11, 10]),
    ...                 rating=np.array([5.0, 3.0, 4.0]), timestamp=np.array([100, 200, 150]))
    >>> train, test = leave_one_out(table)
    >>> test.user.tolist(), test.item.tolist()
    ([1], [11])
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from deepzen.data.paths import DatasetCorruptedError, PathLike, dataset_files, read_text

ML100K_FOLDS = ("u1", "u2", "u3", "u4", "u5", "ua", "ub")
ROLE_ALIASES = {
    "user": ("user", "userid", "user_id", "uid"),
    "item": ("item", "itemid", "item_id", "iid", "movie", "movieid", "movie_id", "product", "productid"),
    "rating": ("rating", "ratings", "score", "stars"),
    "timestamp": ("timestamp", "time", "ts", "date", "datetime"),
}
_SEPARATORS = ("\t", ",", ";", "|", "::", None)  # tried in this order; None = any whitespace


@dataclass
class Ratings:
    """Parallel arrays of N ratings.

    Attributes:
        user: int64 ``(N,)`` user ids.
        item: int64 ``(N,)`` item ids.
        rating: float32 ``(N,)``.
        timestamp: int64 ``(N,)`` unix seconds, or ``None`` when the data has none.
    """

    user: np.ndarray
    item: np.ndarray
    rating: np.ndarray
    timestamp: np.ndarray | None = None

    def __post_init__(self):
        self.user = np.asarray(self.user, dtype=np.int64)
        self.item = np.asarray(self.item, dtype=np.int64)
        self.rating = np.asarray(self.rating, dtype=np.float32)
        if self.timestamp is not None:
            self.timestamp = np.asarray(self.timestamp, dtype=np.int64)
        sizes = {name: len(array) for name, array in vars(self).items() if array is not None}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"Expected arrays of one length. Received lengths: {sizes}")

    def __len__(self) -> int:
        return len(self.user)

    def take(self, index: np.ndarray) -> "Ratings":
        """The ratings at ``index`` (an int array or a boolean mask)."""
        return Ratings(self.user[index], self.item[index], self.rating[index],
                       None if self.timestamp is None else self.timestamp[index])


DUPLICATES = ("refuse", "average", "keep")


def _rows_text(rows: np.ndarray, limit: int = 5) -> str:
    shown = ", ".join(str(row) for row in rows[:limit].tolist())
    return f"{len(rows)} row{'s' if len(rows) != 1 else ''} ({shown}{', ...' if len(rows) > limit else ''})"


def check_ratings(ratings: Ratings, *, rating_scale: tuple[float, float] | None = None,
                  duplicates: str = "refuse") -> Ratings:
    """Refuses tables a recommender cannot learn from, and resolves repeated (user, item) pairs.

    Args:
        ratings: the table.
        rating_scale: ``(low, high)``: ratings outside it are refused; ``None`` checks only for NaN.
        duplicates: what to do with several rows of one (user, item) pair: ``"refuse"`` (raise,
            naming the rows), ``"average"`` (one row per pair, at the pair's first position, with the
            mean rating and the latest timestamp) or ``"keep"`` (every row counts as a rating, as in
            scikit-surprise's trainset).

    Returns:
        ``ratings`` itself, or the averaged table.

    Raises:
        ValueError: an empty table, NaN or infinite ratings, ratings outside ``rating_scale``,
            or duplicates with ``duplicates="refuse"``; the message names the rows (0-based).

    Example:
        >>> table = Ratings(user=[1, 1, 2], item=[7, 7, 7], rating=[4.0, 2.0, 5.0])
        >>> check_ratings(table, duplicates="average").rating.tolist()
        [3.0, 5.0]
    """
    if duplicates not in DUPLICATES:
        raise ValueError(f"Expected duplicates in {DUPLICATES}. Received: duplicates={duplicates!r}")
    if len(ratings) == 0:
        raise ValueError("Expected at least one rating. Received: an empty table")
    bad = np.flatnonzero(~np.isfinite(ratings.rating))
    if len(bad):
        raise ValueError(f"Expected finite ratings. Received NaN or infinity in {_rows_text(bad)}")
    if rating_scale is not None:
        low, high = rating_scale
        bad = np.flatnonzero((ratings.rating < low) | (ratings.rating > high))
        if len(bad):
            raise ValueError(f"Expected ratings in the scale [{low}, {high}]. Received "
                             f"{ratings.rating[bad[0]]:g} and others outside it in {_rows_text(bad)}")
    if duplicates == "keep":
        return ratings
    # One int64 key per (user, item) pair, from the rows of each in sorted order (np.unique(axis=0) is 10x slower).
    item_rows = np.unique(ratings.item, return_inverse=True)[1].reshape(-1)
    keys = np.unique(ratings.user, return_inverse=True)[1].reshape(-1) * (int(item_rows.max()) + 1) + item_rows
    sorted_keys = np.sort(keys)
    if not np.any(sorted_keys[1:] == sorted_keys[:-1]):
        return ratings
    pairs = np.stack([ratings.user, ratings.item], axis=1)
    _, first, inverse, counts = np.unique(keys, return_index=True, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    if duplicates == "refuse":
        repeated = np.flatnonzero(counts[inverse] > 1)
        user, item = pairs[repeated[0]].tolist()
        raise ValueError(f"Expected one rating per (user, item) pair. Received several for (user {user}, item "
                         f"{item}) and others, in {_rows_text(repeated)}; pass duplicates='average' or "
                         f"duplicates='keep'")
    mean = np.bincount(inverse, weights=ratings.rating.astype(np.float64)) / counts
    order = np.argsort(first, kind="stable")  # pairs in the order of their first row
    timestamp = None
    if ratings.timestamp is not None:
        timestamp = np.full(len(counts), np.iinfo(np.int64).min)
        np.maximum.at(timestamp, inverse, ratings.timestamp)
        timestamp = timestamp[order]
    return Ratings(ratings.user[first[order]], ratings.item[first[order]], mean[order], timestamp)


def _read_int_table(path: Path, columns: int) -> np.ndarray:
    try:
        table = np.loadtxt(path, dtype=np.int64, delimiter="\t", ndmin=2)
    except ValueError as error:
        raise DatasetCorruptedError(f"{path} is corrupted: expected tab-separated integers ({error}).") from error
    if table.shape[1] != columns:
        raise DatasetCorruptedError(f"{path} is corrupted: expected {columns} columns, received {table.shape[1]}.")
    return table


def _read_ml100k_titles(path: Path) -> dict[int, str]:
    titles = {}
    for number, line in enumerate(read_text(path, "latin-1").split("\n"), start=1):
        if not line:
            continue
        fields = line.split("|")
        if len(fields) != 24 or not fields[0].isdigit():
            raise DatasetCorruptedError(f"{path}, line {number}: expected 24 '|'-separated fields starting with "
                                        f"the movie id. Received: {line[:80]!r}")
        titles[int(fields[0])] = fields[1]
    return titles


def load_movielens_100k(data: PathLike | None = None, fold: str | None = "u1", *, verify: bool = False):
    """MovieLens 100K: 100,000 ratings (1-5) of 1682 movies by 943 users, ids 1-based as published.

    Args:
        data: the folder with GroupLens' ``ml-100k`` files (default ``$DEEPZEN_DATA/ml-100k``).
        fold: ``"u1"`` ... ``"u5"`` (80/20 splits whose tests partition the data, for 5-fold CV),
            ``"ua"`` / ``"ub"`` (exactly 10 test ratings per user), or ``None`` for all of ``u.data``.
        verify: check the published sha256 sums.

    Returns:
        ``(train, test, titles)``: two :class:`Ratings` (``test`` is ``None`` when ``fold=None``)
        and ``{movie id: title}`` from ``u.item``.
    """
    if fold is not None and fold not in ML100K_FOLDS:
        raise ValueError(f"Unknown ml-100k fold {fold!r}. Expected one of: {', '.join(ML100K_FOLDS)} or None")
    names = ["u.data"] if fold is None else [f"{fold}.base", f"{fold}.test"]
    files = dataset_files("ml-100k", [*names, "u.item"], data=data, verify=verify)
    tables = [Ratings(*_read_int_table(files[name], 4).T) for name in names]
    return tables[0], (tables[1] if fold is not None else None), _read_ml100k_titles(files["u.item"])


# -- your own rating files ------------------------------------------------------------------------

def _split_rows(lines: Sequence[str], sep: str | None) -> list[list[str]]:
    if sep is not None and len(sep) == 1:
        return [[field.strip() for field in row] for row in csv.reader(lines, delimiter=sep)]
    return [[field.strip() for field in line.split(sep)] for line in lines]


def _sniff_separator(lines: Sequence[str], path: Path) -> str | None:
    sample = lines[:20]
    for sep in _SEPARATORS:
        widths = {len(row) for row in _split_rows(sample, sep)}
        if len(widths) == 1 and widths.pop() >= 3:
            return sep
    raise DatasetCorruptedError(f"{path}: could not tell the column separator (tried tab, ',', ';', '|', '::', "
                                "spaces; expected >= 3 columns user, item, rating). Pass sep=.")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _sniff_header(rows: Sequence[Sequence[str]]) -> bool:
    # A header has a name where the data below it has numbers (ratings at least are numeric).
    if len(rows) < 2:
        return not any(_is_number(field) for field in rows[0])
    return any(not _is_number(a) and _is_number(b) for a, b in zip(rows[0], rows[1]))


def _roles(names: Sequence[str], path: Path) -> dict[str, int]:
    positions = {}
    for position, name in enumerate(names):
        key = name.strip().lower().replace(" ", "_")
        role = next((role for role, aliases in ROLE_ALIASES.items() if key in aliases), None)
        if role is not None and role not in positions:
            positions[role] = position
    missing = [role for role in ("user", "item", "rating") if role not in positions]
    if missing:
        raise ValueError(f"{path}: expected columns for user, item and rating; could not find {missing} among "
                         f"{list(names)}. Pass columns=[...] naming the file's columns (e.g. 'user', 'item', "
                         f"'rating', 'timestamp'; any other name is ignored).")
    return positions


def _contiguous(values: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Ids -> (index 0..K-1 per row, original id per index); integer ids sort numerically."""
    array = np.array(values)
    if all(value.lstrip("-").isdigit() for value in set(values)):
        array = array.astype(np.int64)
    ids, index = np.unique(array, return_inverse=True)
    return index.astype(np.int64), ids


def _numbers(values: list[str], dtype, what: str, path: Path, first_line: int) -> np.ndarray:
    try:
        return np.array(values, dtype=np.float64).astype(dtype)
    except ValueError:
        row = next(i for i, value in enumerate(values) if not _is_number(value))
        raise DatasetCorruptedError(f"{path}, line {first_line + row}: expected a number for {what}. "
                                    f"Received: {values[row]!r}") from None


def _timestamps(values: list[str], path: Path, first_line: int) -> np.ndarray:
    if all(_is_number(value) for value in values):
        return _numbers(values, np.int64, "timestamp", path, first_line)
    try:  # ISO dates such as "2005-04-02 23:53:47"
        return np.array([value.replace(" ", "T", 1) for value in values], dtype="datetime64[s]").astype(np.int64)
    except ValueError as error:
        raise DatasetCorruptedError(f"{path}: expected timestamps as unix seconds or ISO dates ({error}).") from None


def load_ratings_table(path: PathLike, *, sep: str | None = None, header: bool | None = None,
                       columns: Sequence[str] | None = None, encoding: str = "utf-8"):
    """Reads your own ratings file (CSV, TSV, ...), mapping user and item ids to 0..K-1.

    Args:
        path: the file, one rating per line.
        sep: column separator; ``None`` sniffs tab, ``,``, ``;``, ``|``, ``::`` or whitespace.
        header: whether the first line names the columns; ``None`` sniffs it.
        columns: names of the file's columns in order (overrides the header), e.g.
            ``["user", "item", "rating", "timestamp"]``; names are matched to roles through
            :data:`ROLE_ALIASES` (``userId``, ``movieId``, ... work) and others are ignored.
            Default: the header's names, or user, item, rating, timestamp by position.
        encoding: the file's text encoding.

    Returns:
        ``(ratings, user_ids, item_ids)``: a :class:`Ratings` with contiguous ids, and arrays giving
        the original id of each index (int64 when all ids are integers, else str).
    """
    path = Path(path)
    lines = [line for line in read_text(path, encoding).split("\n") if line.strip()]
    if not lines:
        raise DatasetCorruptedError(f"{path} holds no ratings.")
    sep = _sniff_separator(lines, path) if sep is None else sep
    rows = _split_rows(lines, sep)
    header = _sniff_header(rows) if header is None else header
    names = columns or (rows[0] if header else ("user", "item", "rating", "timestamp")[:len(rows[0])])
    roles = _roles(names, path)
    body, first_line = rows[int(header):], 1 + int(header)
    short = next((i for i, row in enumerate(body) if len(row) <= max(roles.values())), None)
    if short is not None:
        raise DatasetCorruptedError(f"{path}, line {first_line + short}: expected {max(roles.values()) + 1} or more "
                                    f"columns. Received: {body[short]}")
    column = {role: [row[position] for row in body] for role, position in roles.items()}
    user, user_ids = _contiguous(column["user"])
    item, item_ids = _contiguous(column["item"])
    rating = _numbers(column["rating"], np.float32, "rating", path, first_line)
    timestamp = _timestamps(column["timestamp"], path, first_line) if "timestamp" in column else None
    return Ratings(user, item, rating, timestamp), user_ids, item_ids


# -- splits -------------------------------------------------------------------------------------

def holdout_split(ratings: Ratings, test_fraction: float = 0.2, *, per_user: bool = False, seed: int = 0):
    """A random train/test split, keeping the rows' order within each part.

    Args:
        ratings: the table to split.
        test_fraction: share of ratings in the test part (rounded half up).
        per_user: take that share from each user's ratings; each user keeps at least one
            rating in train.
        seed: seed of the random choice.

    Returns:
        ``(train, test)`` :class:`Ratings`.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"Expected 0 < test_fraction < 1. Received: test_fraction={test_fraction}")
    rng = np.random.default_rng(seed)
    n = len(ratings)
    test = np.zeros(n, dtype=bool)
    if not per_user:
        test[rng.permutation(n)[:int(test_fraction * n + 0.5)]] = True
    else:
        shuffled = rng.permutation(n)
        order = shuffled[np.argsort(ratings.user[shuffled], kind="stable")]  # grouped by user, random within
        _, first, counts = np.unique(ratings.user[order], return_index=True, return_counts=True)
        group = np.repeat(np.arange(len(counts)), counts)
        rank = np.arange(n) - first[group]  # position of each row within its user's group
        n_test = np.minimum((test_fraction * counts + 0.5).astype(np.int64), counts - 1)
        test[order[rank < n_test[group]]] = True
    return ratings.take(~test), ratings.take(test)


def leave_one_out(ratings: Ratings):
    """Each user's latest rating is the test set (ties: the later row), as in NCF (He et al., 2017).

    Users with a single rating keep it in train.

    Returns:
        ``(train, test)`` :class:`Ratings`, rows in their original order.
    """
    if ratings.timestamp is None:
        raise ValueError("leave_one_out needs timestamps; these ratings have none (timestamp=None).")
    order = np.lexsort((np.arange(len(ratings)), ratings.timestamp, ratings.user))  # by user, time, row
    user = ratings.user[order]
    first = np.r_[True, user[1:] != user[:-1]]
    last = np.r_[user[1:] != user[:-1], True]
    test = np.zeros(len(ratings), dtype=bool)
    test[order[last & ~first]] = True
    return ratings.take(~test), ratings.take(test)
