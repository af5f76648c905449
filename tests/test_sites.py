"""Site data files with stable record ids, and the site-local erasure store (real files, no mocks)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from unlearn_fl.sites import (
    ErasureStore,
    SiteData,
    SiteError,
    load_site,
    read_id_file,
    records_digest,
    resolve_records,
)


def write_csv(path, rows, header="record_id,age,income,label"):
    path.write_text(header + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    return path


def table_rows(n, seed=0, start=0):
    rng = np.random.default_rng(seed)
    return [(f"p{start + i}", int(rng.integers(20, 90)), round(float(rng.normal(50, 10)), 3), int(rng.integers(0, 3)))
            for i in range(n)]


def single_line_error(fn, *args, match: str, **kw) -> str:
    with pytest.raises(SiteError) as e:
        fn(*args, **kw)
    msg = str(e.value)
    assert "\n" not in msg and "\r" not in msg, msg
    assert match.lower() in msg.lower(), msg
    return msg


def all_rows(site: SiteData):
    ids = np.concatenate([site.train_ids, site.holdout_ids])
    X = np.concatenate([site.train.X, site.holdout.X])
    y = np.concatenate([site.train.y, site.holdout.y])
    return {str(i): (x, int(t)) for i, x, t in zip(ids, X, y)}


# ---------------------------------------------------------------- formats


def test_csv_loads_ids_labels_and_features(tmp_path):
    rows = table_rows(300)
    site = load_site(write_csv(tmp_path / "site.csv", rows), holdout_fraction=0.25)
    assert isinstance(site, SiteData)
    assert len(site.train) + len(site.holdout) == 300 and len(site.holdout) > 0
    assert site.input_shape == (2,) and site.feature_names == ("age", "income")
    assert site.train.X.dtype == np.float32 and site.train.y.dtype == np.int64
    assert site.n_classes == 3
    assert site.train_ids.shape == (len(site.train),) and site.holdout_ids.shape == (len(site.holdout),)
    assert not set(site.train_ids) & set(site.holdout_ids)
    by_id = all_rows(site)
    for rid, age, income, label in rows:
        x, t = by_id[rid]
        np.testing.assert_allclose(x, [age, income], rtol=1e-6)
        assert t == label


def test_csv_without_id_column_uses_row_numbers_and_text_labels_use_classes(tmp_path):
    p = tmp_path / "s.csv"
    p.write_text("a,b,outcome\n1,2,yes\n3,4,no\n5,6,yes\n7,8,maybe\n")
    site = load_site(p, target="outcome", classes="no, yes,maybe", holdout_fraction=0.0)
    assert list(site.train_ids) == ["0", "1", "2", "3"]
    assert site.train.y.tolist() == [1, 0, 1, 2]
    assert site.n_classes == 3 and len(site.holdout) == 0
    np.testing.assert_array_equal(site.train.X, np.array([[1, 2], [3, 4], [5, 6], [7, 8]], np.float32))


def test_declared_classes_fix_n_classes_even_if_a_class_is_absent(tmp_path):
    p = tmp_path / "s.csv"
    p.write_text("a,label\n1,0\n2,1\n3,0\n")
    assert load_site(p, holdout_fraction=0.0).n_classes == 2
    assert load_site(p, holdout_fraction=0.0, classes=["a", "b", "c"]).n_classes == 3


def test_csv_ids_are_stripped_strings_and_whole_float_labels_are_ints(tmp_path):
    p = tmp_path / "s.csv"
    p.write_text("record_id,x,label\n 007 ,1.5,1.0\n8,2.5,0\n")
    site = load_site(p, holdout_fraction=0.0)
    assert list(site.train_ids) == ["007", "8"] and site.train.y.tolist() == [1, 0]


def test_npz_with_and_without_ids(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 2, 4, 4)).astype(np.float64)
    y = rng.integers(0, 4, size=50)
    ids = np.array([f"rec-{i:03d}" for i in range(50)])
    np.savez(tmp_path / "a.npz", x=x, y=y, ids=ids)
    site = load_site(tmp_path / "a.npz")
    assert site.input_shape == (2, 4, 4) and site.feature_names is None
    assert site.train.X.dtype == np.float32
    by_id = all_rows(site)
    for i in range(50):
        np.testing.assert_allclose(by_id[ids[i]][0], x[i], rtol=1e-6)
        assert by_id[ids[i]][1] == y[i]
    np.savez(tmp_path / "b.npz", x=x, y=y.astype(np.float32))
    site = load_site(tmp_path / "b.npz", holdout_fraction=0.0)
    assert list(site.train_ids) == [str(i) for i in range(50)]
    assert site.train.y.dtype == np.int64 and site.train.y.tolist() == y.tolist()


def _img(path, arr, mode):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, mode=mode).save(path)


def test_image_folder_grayscale_and_rgb(tmp_path):
    rng = np.random.default_rng(2)
    gray = tmp_path / "gray"
    pixels = {}
    for cls in ("zebra", "ant"):
        for k in range(6):
            a = rng.integers(0, 256, size=(5, 7), dtype=np.uint8)
            ext = ".png" if k % 2 else ".pgm"
            _img(gray / cls / f"img{k}{ext}", a, "L")
            pixels[f"{cls}/img{k}{ext}"] = a
    site = load_site(gray, holdout_fraction=0.3)
    assert site.input_shape == (1, 5, 7) and site.feature_names is None
    assert site.class_names == ("ant", "zebra") and site.n_classes == 2
    by_id = all_rows(site)
    assert set(by_id) == set(pixels)
    for rid, a in pixels.items():
        x, t = by_id[rid]
        np.testing.assert_allclose(x[0], a / 255.0, atol=1e-6)
        assert t == (0 if rid.startswith("ant/") else 1)
        assert 0.0 <= x.min() and x.max() <= 1.0
    # declared classes decide the index, not the folder order
    site = load_site(gray, holdout_fraction=0.0, classes=["zebra", "ant", "bee"])
    assert {r: int(t) for r, t in zip(site.train_ids, site.train.y)} == {r: int(r.startswith("ant/")) for r in pixels}
    assert site.n_classes == 3

    rgb = tmp_path / "rgb"
    for k in range(3):
        _img(rgb / "c" / f"{k}.png", rng.integers(0, 256, size=(4, 6, 3), dtype=np.uint8), "RGB")
    _img(rgb / "d" / "x.jpg", rng.integers(0, 256, size=(4, 6, 3), dtype=np.uint8), "RGB")
    site = load_site(rgb, holdout_fraction=0.0)
    assert site.input_shape == (3, 4, 6) and sorted(site.train_ids) == ["c/0.png", "c/1.png", "c/2.png", "d/x.jpg"]


def test_image_of_different_size_names_the_file(tmp_path):
    _img(tmp_path / "a" / "1.png", np.zeros((4, 4), np.uint8), "L")
    _img(tmp_path / "a" / "2.png", np.zeros((4, 5), np.uint8), "L")
    msg = single_line_error(load_site, tmp_path, match="2.png")
    assert "1.png" in msg
    rgb = tmp_path / "mixed"
    _img(rgb / "a" / "1.png", np.zeros((4, 4), np.uint8), "L")
    _img(rgb / "b" / "2.png", np.zeros((4, 4, 3), np.uint8), "RGB")
    single_line_error(load_site, rgb, match="b/2.png")


# ---------------------------------------------------------------- holdout


def _holdout(site):
    return set(site.holdout_ids.tolist())


def test_holdout_is_stable_under_shuffling_and_appending(tmp_path):
    for seed in range(8):  # hypothesis is not installed: a seeded loop over random tables
        rng = np.random.default_rng(seed)
        n = int(rng.integers(20, 200))
        rows = table_rows(n, seed=seed)
        frac = float(rng.uniform(0.05, 0.6))
        base = load_site(write_csv(tmp_path / f"b{seed}.csv", rows), holdout_fraction=frac, salt=f"s{seed}")
        shuffled = [rows[i] for i in rng.permutation(n)]
        s2 = load_site(write_csv(tmp_path / f"s{seed}.csv", shuffled), holdout_fraction=frac, salt=f"s{seed}")
        assert _holdout(s2) == _holdout(base)
        assert set(s2.train_ids.tolist()) == set(base.train_ids.tolist())
        extra = table_rows(int(rng.integers(1, 50)), seed=seed + 100, start=n)
        s3 = load_site(write_csv(tmp_path / f"a{seed}.csv", rows + extra), holdout_fraction=frac, salt=f"s{seed}")
        assert _holdout(s3) & {r[0] for r in rows} == _holdout(base)
        assert set(s3.train_ids.tolist()) >= set(base.train_ids.tolist())


def test_holdout_share_near_fraction_and_salt_matters(tmp_path):
    rows = table_rows(2000)
    p = write_csv(tmp_path / "big.csv", rows)
    for frac in (0.1, 0.2, 0.5):
        share = len(load_site(p, holdout_fraction=frac).holdout) / 2000
        assert abs(share - frac) < 4 * np.sqrt(frac * (1 - frac) / 2000), (frac, share)
    assert _holdout(load_site(p, salt="a")) != _holdout(load_site(p, salt="b"))
    assert len(load_site(p, holdout_fraction=0.0).holdout) == 0


# ---------------------------------------------------------------- load errors


def _csv(tmp_path, text, name="s.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize("text, kwargs, match", [
    ("a,b\n1,2\n", {}, "'label' is not in"),
    ("a,label\n1,0.5\n2,1.25\n", {}, "looks continuous"),
    ("a,label\n1,yes\n2,no\n", {}, "declare"),
    ("a,label\n1,yes\n2,maybe\n", {"classes": ["no", "yes"]}, "'maybe'"),
    ("a,label\n1,0\n2,2\n", {"classes": ["no", "yes"]}, "outside 0..1"),
    ("a,label\n1,0\n2,-1\n", {}, "negative"),
    ("a,label\n1,0\n2,\n", {}, "1 empty values"),
    ("a,label\n1,0\n2,nan\n", {}, "1 empty values"),
    ("a,label\n1,no\n", {"classes": ["no", "no"]}, "repeat"),
    ("city,a,label\nParis,1,0\nRome,2,1\n", {}, "'city'"),
    ("a,b,label\n1,,0\n,3,1\n,4,1\n", {}, "column 'a' of"),
    ("a,label\n1,0\ninf,1\n", {}, "infinite"),
    ("record_id,a,label\nx,1,0\ny,2,1\nx,3,0\n", {}, "duplicate record id 'x' at data row 2 (0-based)"),
    ("record_id,a,label\nx,1,0\n  ,2,1\n", {}, "empty record id at data row 1 (0-based)"),
    ("record_id,a,label\n#x,1,0\n", {}, "'#x'"),
    ("a,a,label\n1,2,0\n", {}, "twice"),
    ("a,label\n", {}, "no data rows"),
    ("label\n0\n1\n", {}, "no feature columns"),
    ("a,label\n1,0\n", {"holdout_fraction": 1.0}, "holdout_fraction"),
])
def test_csv_errors_are_single_line(tmp_path, text, kwargs, match):
    single_line_error(load_site, _csv(tmp_path, text), match=match, **kwargs)


def test_continuous_message_says_classifier(tmp_path):
    msg = single_line_error(load_site, _csv(tmp_path, "a,label\n1,0.37\n"), match="classifier")
    assert "0.37" in msg


def test_text_column_error_names_the_column_and_the_fix(tmp_path):
    msg = single_line_error(load_site, _csv(tmp_path, "city,a,label\nParis,1,0\n"), match="encode it as numbers")
    assert "'city'" in msg


def test_missing_empty_and_unknown_paths(tmp_path):
    single_line_error(load_site, tmp_path / "nope.csv", match=str(tmp_path / "nope.csv"))
    single_line_error(load_site, _csv(tmp_path, "", "empty.csv"), match="is empty")
    single_line_error(load_site, _csv(tmp_path, "\n", "blank.csv"), match="is empty")
    single_line_error(load_site, _csv(tmp_path, "a,b", "x.parquet"), match="unknown format")
    (tmp_path / "imgs").mkdir()
    single_line_error(load_site, tmp_path / "imgs", match="no class folders")
    (tmp_path / "imgs" / "cat").mkdir()
    single_line_error(load_site, tmp_path / "imgs", match="no images")
    (tmp_path / "imgs" / "cat" / "notes.txt").write_text("x")
    single_line_error(load_site, tmp_path / "imgs", match="notes.txt")


def test_all_rows_in_holdout_is_an_error(tmp_path):
    p = _csv(tmp_path, "a,label\n1,0\n")
    single_line_error(load_site, p, holdout_fraction=0.999999, match="fall in the holdout")


def test_image_folder_not_in_declared_classes(tmp_path):
    _img(tmp_path / "cat" / "1.png", np.zeros((2, 2), np.uint8), "L")
    single_line_error(load_site, tmp_path, classes=["dog"], match="'cat'")


def test_npz_errors(tmp_path):
    np.savez(tmp_path / "a.npz", x=np.zeros((3, 2)))
    single_line_error(load_site, tmp_path / "a.npz", match="lacks array y")
    np.savez(tmp_path / "b.npz", x=np.zeros((3, 2)), y=np.zeros(4))
    single_line_error(load_site, tmp_path / "b.npz", match="need x (n, ...)")
    np.savez(tmp_path / "c.npz", x=np.zeros((3, 2)), y=np.array([0, 0.5, 1]))
    single_line_error(load_site, tmp_path / "c.npz", match="continuous")
    np.savez(tmp_path / "d.npz", x=np.zeros((3, 2)), y=np.zeros(3), ids=np.array(["a", "b", "a"]))
    single_line_error(load_site, tmp_path / "d.npz", match="duplicate record id 'a'")
    np.savez(tmp_path / "e.npz", x=np.full((3, 2), np.nan), y=np.zeros(3))
    single_line_error(load_site, tmp_path / "e.npz", match="NaN")
    (tmp_path / "f.npz").write_bytes(b"not a zip")
    single_line_error(load_site, tmp_path / "f.npz", match="cannot read")


# ---------------------------------------------------------------- id files and digests


def test_read_id_file(tmp_path):
    p = tmp_path / "ids.txt"
    p.write_text("# patients to erase\n p4711 \n\np12\n  # comment\np3\n")
    assert read_id_file(p) == ["p4711", "p12", "p3"]
    single_line_error(read_id_file, tmp_path / "none.txt", match="does not exist")
    (tmp_path / "e.txt").write_text("# only a comment\n\n")
    single_line_error(read_id_file, tmp_path / "e.txt", match="no record ids")
    (tmp_path / "d.txt").write_text("a\nb\n a\n")
    single_line_error(read_id_file, tmp_path / "d.txt", match="'a' twice (lines 1 and 3)")


def test_records_digest_is_order_free_salted_and_hides_ids():
    ids = ["patient-4711", "patient-0012"]
    d = records_digest(ids, "salt1")
    assert d == records_digest(reversed(ids), "salt1")
    assert d != records_digest(ids, "salt2") and d != records_digest(ids[:1], "salt1")
    assert len(d) == 64 and all(r not in d for r in ids)


# ---------------------------------------------------------------- erasure store


def test_erasure_store_put_get_atomic_and_idempotent(tmp_path):
    store = ErasureStore(tmp_path / "erasures" / "site2")
    assert store.root.is_dir()
    ids = ["patient-4711", "patient-0012"]
    d = store.put("wr-abc", ids, "s3cret")
    assert d == records_digest(ids, "s3cret") and all(r not in d for r in ids)
    assert [p.name for p in store.root.iterdir()] == ["wr-abc.json"]  # no temp file left
    assert json.loads((store.root / "wr-abc.json").read_text())["ids"] == ids
    assert store.get("wr-abc") == ids and store.salt("wr-abc") == "s3cret"
    assert store.get("wr-none") is None and store.salt("wr-none") is None
    before = (store.root / "wr-abc.json").stat().st_mtime_ns
    assert store.put("wr-abc", list(reversed(ids)), "other-salt") == d  # same ids: no-op, stored salt wins
    assert (store.root / "wr-abc.json").stat().st_mtime_ns == before
    single_line_error(store.put, "wr-abc", ["patient-4711"], "s3cret", match="different record ids")
    single_line_error(store.put, "wr-new", [], "s", match="no record ids")
    single_line_error(store.put, "wr-new", ["a", "b", "a"], "s", match="duplicate record id 'a'")
    single_line_error(store.put, "../escape", ["a"], "s", match="safe file name")
    assert sorted(p.name for p in store.root.iterdir()) == ["wr-abc.json"]
    assert ErasureStore(store.root).get("wr-abc") == ids  # persists across instances


def test_erased_before(tmp_path):
    store = ErasureStore(tmp_path)
    store.put("r1", ["a", "b"], "s")
    store.put("r2", ["c"], "s")
    store.put("r3", ["d"], "s")
    order = ["r1", "other-site", "r2", "r3"]
    assert store.erased_before("r1", order) == set()
    assert store.erased_before("r2", order) == {"a", "b"}
    assert store.erased_before("r3", order) == {"a", "b", "c"}
    assert store.erased_before("r4", order) == {"a", "b", "c", "d"}  # not applied yet: all applied ones are earlier


# ---------------------------------------------------------------- resolving records


def test_resolve_records_returns_exactly_the_named_rows(tmp_path):
    rows = table_rows(400, seed=5)
    site = load_site(write_csv(tmp_path / "s.csv", rows))
    rng = np.random.default_rng(0)
    named = [str(r) for r in rng.choice(site.train_ids, size=25, replace=False)]
    idx = resolve_records(site, named)
    assert idx.dtype == np.int64 and list(idx) == sorted(idx) and len(idx) == 25
    assert set(site.train_ids[idx].tolist()) == set(named)
    source = {r[0]: r for r in rows}
    for i in idx:
        rid = str(site.train_ids[i])
        np.testing.assert_allclose(site.train.X[i], source[rid][1:3], rtol=1e-6)
        assert site.train.y[i] == source[rid][3]


def test_resolve_records_errors(tmp_path):
    site = load_site(write_csv(tmp_path / "s.csv", table_rows(200, seed=6)))
    train, hold = [str(r) for r in site.train_ids], [str(r) for r in site.holdout_ids]
    msg = single_line_error(resolve_records, site, train[:2] + ["ghost1", "ghost2", "ghost3", "ghost4"],
                            match="4 unknown record ids")
    assert "not held by this site" in msg and "ghost4" not in msg  # at most 3 examples
    single_line_error(resolve_records, site, hold[:2] + train[:1], match="never-trained holdout rows")
    single_line_error(resolve_records, site, [train[0], train[1], train[0]], match="1 duplicate record ids")
    single_line_error(resolve_records, site, train[:3], already_erased={train[1]}, match="already erased")
    single_line_error(resolve_records, site, [], match="no record ids")


def test_erasure_round_trip_through_id_file_and_store(tmp_path):
    site = load_site(write_csv(tmp_path / "s.csv", table_rows(300, seed=7)))
    first, second = list(site.train_ids[:5]), list(site.train_ids[5:8])
    store = ErasureStore(tmp_path / "erasures")
    (tmp_path / "r1.txt").write_text("\n".join(first))
    store.put("r1", read_id_file(tmp_path / "r1.txt"), "salt-1")
    (tmp_path / "r2.txt").write_text("\n".join(second + first[:1]))
    ids = read_id_file(tmp_path / "r2.txt")
    single_line_error(resolve_records, site, ids, store.erased_before("r2", ["r1"]), match="already erased")
    idx = resolve_records(site, second, store.erased_before("r2", ["r1"]))
    assert set(site.train_ids[idx].tolist()) == set(second)
