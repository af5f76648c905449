import numpy as np
import pytest

from unlearn_fl.data import DataError, DataSpec, client_data, federation, forget_mask, load_csv, server_test


def test_partitions_are_disjoint_and_cover_the_pool():
    spec = DataSpec(num_clients=4, seed=3)
    fed = federation(spec)
    parts = [fed.test_idx, *fed.client_train_idx, *fed.client_holdout_idx]
    allidx = np.concatenate(parts)
    assert len(allidx) == len(np.unique(allidx)) == len(fed.table.y)


def test_dirichlet_skews_labels():
    iid = DataSpec(num_clients=5, partition="iid")
    skew = DataSpec(num_clients=5, partition="dirichlet", alpha=0.1)
    def max_share(spec):
        y = client_data(spec, 0).train.y
        return np.bincount(y).max() / len(y)
    assert max_share(skew) > max_share(iid) + 0.2


def test_same_seed_same_shards_and_scaling_from_test_only():
    a, b = client_data(DataSpec(seed=1), 2), client_data(DataSpec(seed=1), 2)
    assert np.array_equal(a.train.X, b.train.X)
    t = server_test(DataSpec(seed=1)).X
    assert np.allclose(t.mean(0)[t.std(0) > 0], 0, atol=1e-5)


def test_forget_mask_fraction_and_determinism():
    m1 = forget_mask(200, 0.25, "wr-x")
    assert m1.sum() == 50 and np.array_equal(m1, forget_mask(200, 0.25, "wr-x"))
    assert not np.array_equal(m1, forget_mask(200, 0.25, "wr-y"))
    assert forget_mask(10, 1.0, "r").all()
    with pytest.raises(DataError, match="outside \\(0, 1\\]"):
        forget_mask(10, 1.5, "r")


def test_csv_one_hot_and_labels(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("a,color,label\n1.0,red,yes\n2.0,blue,no\n3.5,red,yes\n")
    t = load_csv(p, "label")
    assert t.feature_names == ("a", "color=blue", "color=red")
    assert t.X.tolist() == [[1.0, 0.0, 1.0], [2.0, 1.0, 0.0], [3.5, 0.0, 1.0]]
    assert t.class_names == ("no", "yes") and t.y.tolist() == [1, 0, 1]


@pytest.mark.parametrize(
    "text,target,match",
    [
        ("a,b\n1,2\n", "label", "target column 'label' is not in"),
        ("a,label\n" + "1,0\n" * 9 + "oops,1\n", "label", "column 'a' is numeric but has non-numeric values such as 'oops'"),
        ("a,label\n1,\n2,1\n", "label", "empty values"),
        ("a,label\n1,0\n2,0\n", "label", "single class"),
    ],
)
def test_csv_errors_name_the_problem(tmp_path, text, target, match):
    p = tmp_path / "bad.csv"
    p.write_text(text)
    with pytest.raises(DataError, match=match):
        load_csv(p, target)


def test_missing_csv_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_csv(tmp_path / "nope.csv", "y")


def test_every_data_spec_field_travels_in_a_flower_config_record():
    """Each DataSpec field, default or not, must fit a ConfigRecord and come back equal (the feature exchange sends it)."""
    from flwr.app import ConfigRecord

    from unlearn_fl.engine.protocol import decode_spec, encode_spec

    for spec in (DataSpec(), DataSpec(canaries=0.25, canary_clients=(0, 2), canary_kind="mislabel", partition="dirichlet",
                                      alpha=0.3, num_clients=4, target=None, seed=7)):
        record = ConfigRecord(encode_spec(spec))
        assert decode_spec(dict(record)) == spec
