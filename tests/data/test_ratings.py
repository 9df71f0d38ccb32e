import doctest

import numpy as np
import pytest

from deepzen.data import ratings as ratings_module
from deepzen.data.paths import DatasetCorruptedError, DatasetNotFoundError
from deepzen.data.ratings import Ratings, holdout_split, leave_one_out, load_movielens_100k, load_ratings_table


def test_doctests():
    assert doctest.testmod(ratings_module).failed == 0


@pytest.fixture(scope="module")
def ml100k(real_dataset):
    folder = real_dataset("ml-100k")
    everything, test, titles = load_movielens_100k(fold=None)
    assert test is None
    return folder, everything, titles


def rows(table: Ratings) -> list[tuple]:
    return sorted(zip(table.user.tolist(), table.item.tolist(), table.rating.tolist(), table.timestamp.tolist()))


def test_ml100k_counts(ml100k):
    _, everything, titles = ml100k
    assert len(everything) == 100000
    assert len(np.unique(everything.user)) == 943 and everything.user.min() == 1 and everything.user.max() == 943
    assert len(np.unique(everything.item)) == 1682 and everything.item.max() == 1682
    assert np.bincount(everything.rating.astype(int))[1:].tolist() == [6110, 11370, 27145, 34174, 21201]
    assert everything.rating.dtype == np.float32 and everything.timestamp.dtype == np.int64
    assert len(titles) == 1682 and titles[1] == "Toy Story (1995)"
    assert any(not title.isascii() for title in titles.values())  # latin-1 titles decoded


@pytest.mark.parametrize("fold, n_train", [("u1", 80000), ("u3", 80000), ("ua", 90570), ("ub", 90570)])
def test_ml100k_folds_partition_the_ratings(ml100k, fold, n_train):
    _, everything, _ = ml100k
    train, test, _ = load_movielens_100k(fold=fold)
    assert (len(train), len(test)) == (n_train, 100000 - n_train)
    assert sorted(rows(train) + rows(test)) == rows(everything)
    if fold in ("ua", "ub"):
        assert np.bincount(test.user)[1:].tolist() == [10] * 943


def test_ml100k_errors(ml100k, tmp_path):
    folder, _, _ = ml100k
    with pytest.raises(ValueError, match="u1, u2"):
        load_movielens_100k(fold="u6")
    (tmp_path / "u.item").symlink_to(folder / "u.item")
    with pytest.raises(DatasetNotFoundError, match="u2.base, u2.test"):
        load_movielens_100k(tmp_path, fold="u2")
    (tmp_path / "u2.base").write_text("1\t2\t3\t4\n5\t6\t7\n")
    (tmp_path / "u2.test").write_text("1\t2\t3\t4\n")
    with pytest.raises(DatasetCorruptedError, match="u2.base"):
        load_movielens_100k(tmp_path, fold="u2")
    (tmp_path / "u2.base").write_text("1\t2\t3\n")
    with pytest.raises(DatasetCorruptedError, match="expected 4 columns"):
        load_movielens_100k(tmp_path, fold="u2")


def test_ratings_table_on_u_data_maps_ids_back_to_the_originals(ml100k):
    folder, everything, _ = ml100k
    table, user_ids, item_ids = load_ratings_table(folder / "u.data")
    assert len(table) == 100000 and len(user_ids) == 943 and len(item_ids) == 1682
    assert user_ids.dtype == np.int64 and user_ids.tolist() == list(range(1, 944))
    np.testing.assert_array_equal(user_ids[table.user], everything.user)
    np.testing.assert_array_equal(item_ids[table.item], everything.item)
    np.testing.assert_array_equal(table.rating, everything.rating)
    np.testing.assert_array_equal(table.timestamp, everything.timestamp)


def test_ratings_table_sniffs_csv_header_and_column_names(ml100k, tmp_path):
    _, everything, _ = ml100k
    head = everything.take(np.arange(50))
    lines = ["userId,movieId,rating,timestamp"] + [f"{u},{i},{r:.1f},{t}" for u, i, r, t in
                                                     zip(head.user, head.item, head.rating, head.timestamp)]
    (tmp_path / "ratings.csv").write_text("\n".join(lines) + "\n")
    table, user_ids, item_ids = load_ratings_table(tmp_path / "ratings.csv")
    np.testing.assert_array_equal(user_ids[table.user], head.user)
    np.testing.assert_array_equal(item_ids[table.item], head.item)
    np.testing.assert_array_equal(table.timestamp, head.timestamp)
    # The same data without a header, columns named by the caller (and one ignored).
    (tmp_path / "plain.csv").write_text("\n".join(lines[1:]))
    table, _, _ = load_ratings_table(tmp_path / "plain.csv", columns=["user", "item", "rating", "when"])
    assert table.timestamp is None and table.rating.tolist() == head.rating.tolist()


def test_ratings_table_string_ids_quotes_double_colons_and_dates(tmp_path):
    (tmp_path / "a.csv").write_text('user,item,score,date\n"bob","x, the movie",4,2020-01-02 03:04:05\n'
                                    'alice,y,5,2020-01-02T03:04:06\n')
    table, user_ids, item_ids = load_ratings_table(tmp_path / "a.csv")
    assert user_ids.tolist() == ["alice", "bob"] and item_ids.tolist() == ["x, the movie", "y"]
    assert table.user.tolist() == [1, 0] and table.item.tolist() == [0, 1]
    assert table.timestamp.tolist() == [1577934245, 1577934246]
    (tmp_path / "b.dat").write_text("1::10::5::978300760\n2::10::3::978302109\n1::11::4::978301968\n")
    table, user_ids, item_ids = load_ratings_table(tmp_path / "b.dat")
    assert table.user.tolist() == [0, 1, 0] and item_ids.tolist() == [10, 11] and table.rating.tolist() == [5, 3, 4]


def test_ratings_table_errors(tmp_path):
    (tmp_path / "no_rating.csv").write_text("user,item,clicks\nu,i,1\n")
    with pytest.raises(ValueError, match=r"could not find \['rating'\]"):
        load_ratings_table(tmp_path / "no_rating.csv")
    (tmp_path / "bad.tsv").write_text("u1\ti1\t5\nu2\ti2\tfive\n")
    with pytest.raises(DatasetCorruptedError, match="line 2: expected a number for rating"):
        load_ratings_table(tmp_path / "bad.tsv", header=False)
    (tmp_path / "two.txt").write_text("a b\nc d\n")
    with pytest.raises(DatasetCorruptedError, match="separator"):
        load_ratings_table(tmp_path / "two.txt")
    (tmp_path / "short.csv").write_text("1,2,3\n4,5\n")
    with pytest.raises(DatasetCorruptedError, match="line 2: expected 3 or more columns"):
        load_ratings_table(tmp_path / "short.csv", sep=",")
    (tmp_path / "empty.csv").write_text("\n\n")
    with pytest.raises(DatasetCorruptedError, match="no ratings"):
        load_ratings_table(tmp_path / "empty.csv")


def test_ratings_checks_lengths():
    with pytest.raises(ValueError, match="one length"):
        Ratings(user=[1, 2], item=[1], rating=[1.0, 2.0])


def index_rows(table: Ratings) -> list[tuple]:
    # ml-100k has no duplicate (user, item) pair, so a pair identifies a row.
    return sorted(zip(table.user.tolist(), table.item.tolist()))


def test_holdout_split_global(ml100k):
    _, everything, _ = ml100k
    train, test = holdout_split(everything, 0.1, seed=5)
    assert (len(train), len(test)) == (90000, 10000)
    assert sorted(index_rows(train) + index_rows(test)) == index_rows(everything)
    again_train, _ = holdout_split(everything, 0.1, seed=5)
    np.testing.assert_array_equal(again_train.item, train.item)
    assert not np.array_equal(holdout_split(everything, 0.1, seed=6)[0].item, train.item)


def test_holdout_split_per_user_takes_the_share_of_each_user(ml100k):
    _, everything, _ = ml100k
    small = everything.take(np.isin(everything.user, [1, 2, 3]))
    lonely = Ratings([99], [1], [3.0], [0])  # a user with one rating keeps it in train
    table = Ratings(*(np.concatenate([a, b]) for a, b in zip(
        (small.user, small.item, small.rating, small.timestamp), (lonely.user, lonely.item, lonely.rating,
                                                                 lonely.timestamp))))
    train, test = holdout_split(table, 0.25, per_user=True, seed=0)
    assert sorted(index_rows(train) + index_rows(test)) == index_rows(table)
    for user in (1, 2, 3, 99):
        total = int((table.user == user).sum())
        assert int((test.user == user).sum()) == min(int(0.25 * total + 0.5), total - 1)
    with pytest.raises(ValueError, match="test_fraction"):
        holdout_split(table, 0.0)


def test_leave_one_out_takes_each_users_latest_rating(ml100k):
    _, everything, _ = ml100k
    train, test = leave_one_out(everything)
    assert len(test) == 943 and len(train) == 99057
    latest = {}
    for row, (user, stamp) in enumerate(zip(everything.user.tolist(), everything.timestamp.tolist())):
        if user not in latest or stamp >= latest[user][0]:
            latest[user] = (stamp, row)
    expected = sorted(row for _, row in latest.values())
    np.testing.assert_array_equal(test.item, everything.item[expected])
    np.testing.assert_array_equal(test.user, everything.user[expected])
    assert sorted(index_rows(train) + index_rows(test)) == index_rows(everything)


def test_leave_one_out_ties_and_single_ratings():
    table = Ratings(user=[7, 7, 8, 7], item=[1, 2, 3, 4], rating=[1, 2, 3, 4], timestamp=[5, 9, 1, 9])
    train, test = leave_one_out(table)
    assert test.item.tolist() == [4] and train.item.tolist() == [1, 2, 3]
    with pytest.raises(ValueError, match="timestamps"):
        leave_one_out(Ratings([1], [1], [1.0]))
