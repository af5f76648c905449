"""One site's own data file with stable record ids, and the site-local erasure store.

In a real federation each site (a hospital, a bank) holds only its own file. An
erasure request names records ("erase patient 4711's rows at site 2"); the ids
stay at the site, the server sees only a count and a salted digest
(`records_digest`). Nothing in this module talks to the server.

The holdout (never-trained rows, the non-members of membership audits) is chosen
per record id by a salted hash, so it does not move when rows are reordered or
new rows are appended.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from unlearn_fl.data import Split

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".pgm")
_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class SiteError(ValueError):
    """Bad site input; str(e) is ONE line naming the problem and the fix."""

    def __init__(self, msg: object) -> None:
        super().__init__(" ".join(str(msg).split()))


@dataclass(frozen=True)
class SiteData:
    """One site's rows: a training split and a never-trained holdout, each with record ids.

    train/holdout: `Split` with X float32 (n, ...) and y int64 class indices.
    train_ids/holdout_ids: (n,) str arrays aligned with the rows, unique over both.
    feature_names: CSV column names of X (None for npz and image folders).
    class_names: the declared (or, for image folders, discovered) class names, else None.
    """

    train: Split
    holdout: Split
    train_ids: np.ndarray
    holdout_ids: np.ndarray
    feature_names: tuple[str, ...] | None
    class_names: tuple[str, ...] | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one row, X.shape[1:], e.g. (d,) or (C, H, W)."""
        return tuple(int(s) for s in self.train.X.shape[1:])

    @property
    def n_classes(self) -> int:
        """len(class_names) when classes are known, else max label + 1 over train and holdout."""
        if self.class_names:
            return len(self.class_names)
        y = np.concatenate([self.train.y, self.holdout.y])
        return int(y.max()) + 1 if len(y) else 0


# ---------------------------------------------------------------- helpers


def _examples(what: str, values: Sequence[str], reveal: bool = True) -> str:
    if not reveal:
        return f"{len(values)} {what}"
    shown = ", ".join(repr(str(v)) for v in values[:3])
    return f"{len(values)} {what} (e.g. {shown}{', ...' if len(values) > 3 else ''})"


def _check_ids(ids: Sequence[str], where: str) -> None:
    """SiteError for the first empty, unsafe or duplicated id (index = 0-based data row)."""
    seen: set[str] = set()
    for i, r in enumerate(ids):
        if r == "":
            raise SiteError(f"empty record id at data row {i} (0-based) of {where}: give every row an id")
        if "\n" in r or "\r" in r or r.startswith("#"):
            raise SiteError(f"record id {r!r} at data row {i} (0-based) of {where} has a line break or starts with '#', "
                            "so it cannot be named in an id file: rename it")
        if r in seen:
            raise SiteError(f"duplicate record id {r!r} at data row {i} (0-based) of {where}: record ids must be unique")
        seen.add(r)


def _unit(salt: str, record_id: str) -> float:
    """u in [0, 1): first 8 bytes (big-endian) of sha256(f"{salt}:{id}") / 2**64."""
    return int.from_bytes(hashlib.sha256(f"{salt}:{record_id}".encode()).digest()[:8], "big") / 2.0**64


def _labels(raw: np.ndarray, classes: Sequence[str] | None, where: str) -> np.ndarray:
    """Encode raw labels (numbers or text) as int64 class indices; see `load_site`."""
    if raw.dtype.kind in "biuf":
        num = raw.astype(np.float64)
    else:
        txt = np.array([str(v).strip() for v in raw], dtype=object)
        txt[np.isin(txt, ["nan", "NaN", "NAN"])] = ""  # pandas/numpy spelling of a missing label
        if (txt == "").any():
            raise SiteError(f"target of {where} has {int((txt == '').sum())} empty values: fill or drop those rows")
        num = np.array([_float(v) for v in txt])
        if np.isnan(num).any():  # text labels: map through the declared classes
            if not classes:
                raise SiteError(f"target of {where} has text labels such as {txt[np.isnan(num)][0]!r}: declare the "
                                "classes so every site encodes them alike, e.g. in the app config classes=\"no,yes\"")
            index = {str(c): k for k, c in enumerate(classes)}
            bad = [v for v in txt if v not in index]
            if bad:
                raise SiteError(f"label {bad[0]!r} in {where} is not a declared class ({', '.join(index)}): "
                                "add it to classes or fix the label")
            return np.array([index[v] for v in txt], dtype=np.int64)
    if not np.isfinite(num).all():
        raise SiteError(f"target of {where} has missing or infinite labels: fill or drop those rows")
    if (num != np.round(num)).any():
        raise SiteError(f"target of {where} looks continuous: values such as {float(num[num != np.round(num)][0])!r}; "
                        "this is a classifier: use integer class labels 0..C-1 or class names")
    y = num.astype(np.int64)
    if (y < 0).any():
        raise SiteError(f"target of {where} has negative label {int(y[y < 0][0])}: use class indices 0..C-1")
    if classes and (y >= len(classes)).any():
        raise SiteError(f"label {int(y.max())} in {where} is outside 0..{len(classes) - 1} for the {len(classes)} "
                        "declared classes: integer labels are class indices, relabel them or declare more classes")
    if not classes:  # undeclared integers: the same rule as a whole table's target (data.class_label_problem)
        from unlearn_fl.data import class_label_problem

        problem = class_label_problem(np.unique(y, return_counts=True)[1])
        if problem is not None:
            raise SiteError(f"target of {where} {problem}; if these are class indices, declare the classes "
                            "(app config classes=\"...\") so every site encodes them alike")
    return y


def _float(v: str) -> float:
    try:
        return float(v)
    except ValueError:
        return float("nan")


# ---------------------------------------------------------------- loaders


def _read_csv(p: Path, target: str, id_column: str | None, classes):
    import pandas as pd

    try:
        with p.open(newline="", encoding="utf-8-sig") as f:
            header = next(csv.reader(f), None)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise SiteError(f"cannot read {p}: {type(e).__name__}: {e}; save it as UTF-8 comma-separated text") from None
    if not header or not any(h.strip() for h in header):
        raise SiteError(f"{p} is empty: write a header row and at least one data row")
    names = [h.strip() for h in header]
    dup = next((h for h in names if names.count(h) > 1), None)
    if dup is not None:
        raise SiteError(f"{p} has the column {dup!r} twice: give every column a distinct name")
    try:
        df = pd.read_csv(p, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except Exception as e:  # pandas raises many types for malformed files
        raise SiteError(f"cannot read {p}: {type(e).__name__}: {e}; check it is a comma-separated file with a header row") from None
    df.columns = names
    if len(df) == 0:
        raise SiteError(f"{p} has a header but no data rows: add rows")
    if target not in names:
        raise SiteError(f"target column {target!r} is not in {p}; columns are: {', '.join(names)}; pass the right target")
    text = {c: df[c].fillna("").str.strip().to_numpy(dtype=object) for c in names}
    y = _labels(text.pop(target), classes, f"{p} (column {target!r})")
    if id_column and id_column in text:
        ids = [str(v) for v in text.pop(id_column)]
    else:
        ids = [str(i) for i in range(len(df))]
    if not text:
        raise SiteError(f"{p} has no feature columns besides {target!r}: add numeric feature columns")
    cols = []
    for c, v in text.items():
        empty = int((v == "").sum())
        if empty:
            raise SiteError(f"column {c!r} of {p} has {empty} empty cells: fill or drop them at every site alike")
        x = pd.to_numeric(pd.Series(v, dtype=object), errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        bad = np.isnan(x) & ~np.isin(v, ["nan", "NaN", "NAN"])
        if bad.any():
            raise SiteError(f"column {c!r} of {p} is text (e.g. {v[bad][0]!r} at 0-based data row {int(np.argmax(bad))}): "
                            "encode it as numbers the same way at every site")
        if np.isnan(x).any():
            raise SiteError(f"column {c!r} of {p} has {int(np.isnan(x).sum())} NaN cells: fill or drop them")
        if np.isinf(x).any():
            raise SiteError(f"column {c!r} of {p} has infinite values (0-based data row {int(np.argmax(np.isinf(x)))}): "
                            "replace them with finite numbers")
        cols.append(x)
    return np.stack(cols, axis=1).astype(np.float32), y, ids, tuple(text), None


def _read_npz(p: Path, classes):
    try:
        with np.load(p, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:
        raise SiteError(f"cannot read {p}: {type(e).__name__}: {e}; save it with numpy.savez(path, x=..., y=..., ids=...)") from None
    missing = [k for k in ("x", "y") if k not in arrays]
    if missing:
        raise SiteError(f"{p} lacks array {' and '.join(missing)} (has: {', '.join(arrays) or 'none'}): "
                        "save it with numpy.savez(path, x=..., y=..., ids=...)")
    x, y_raw = arrays["x"], arrays["y"]
    if x.ndim < 2 or y_raw.ndim != 1 or len(x) != len(y_raw):
        raise SiteError(f"{p}: x has shape {x.shape} and y {y_raw.shape}: need x (n, ...) with at least 2 dims and y (n,)")
    if len(y_raw) == 0:
        raise SiteError(f"{p} has no rows: add rows")
    if x.dtype.kind not in "biuf":
        raise SiteError(f"{p}: x has dtype {x.dtype}: features must be numbers")
    if not np.isfinite(x).all():
        raise SiteError(f"{p}: x has {int((~np.isfinite(x)).sum())} NaN or infinite values: replace them")
    y = _labels(y_raw, classes, str(p))
    if "ids" in arrays:
        if arrays["ids"].shape != (len(y),):
            raise SiteError(f"{p}: ids has shape {arrays['ids'].shape}, need ({len(y)},) aligned with y")
        ids = [str(v).strip() for v in arrays["ids"]]
    else:
        ids = [str(i) for i in range(len(y))]
    return x.astype(np.float32), y, ids, None, None


def _read_images(root: Path, classes):
    from PIL import Image

    folders = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not folders:
        raise SiteError(f"{root} has no class folders: lay images out as {root}/<class name>/<file>")
    names = tuple(str(c) for c in classes) if classes else tuple(folders)
    unknown = [f for f in folders if f not in names]
    if unknown:
        raise SiteError(f"folder {unknown[0]!r} in {root} is not a declared class ({', '.join(names)}): "
                        "add it to classes or move it out")
    xs, ys, ids, first = [], [], [], None
    for folder in folders:
        for f in sorted((root / folder).iterdir()):
            if f.name.startswith("."):
                continue
            if f.is_dir() or f.suffix.lower() not in IMAGE_SUFFIXES:
                raise SiteError(f"{f} is not a png/jpg/pgm image: convert it or move it out of {root}")
            try:
                with Image.open(f) as im:
                    im.load()
                    if im.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit grayscale (e.g. PGM maxval > 255)
                        a = np.asarray(im, dtype=np.float32)[None] / 65535.0
                    else:
                        gray = im.mode in ("1", "L", "LA")  # anything else (RGB, RGBA, P, CMYK) -> RGB
                        a = np.asarray(im.convert("L" if gray else "RGB"), dtype=np.float32) / 255.0
                        a = a[None] if gray else a.transpose(2, 0, 1)
            except Exception as e:
                raise SiteError(f"cannot read image {f}: {type(e).__name__}: {e}; replace or remove it") from None
            if first is None:
                first = (f, a.shape)
            elif a.shape != first[1]:
                raise SiteError(f"image {f} has shape {a.shape} (channels, height, width) but {first[0]} has "
                                f"{first[1]}: resize/convert every image to one size and mode")
            xs.append(a)
            ys.append(names.index(folder))
            ids.append(f.relative_to(root).as_posix())
    if not xs:
        raise SiteError(f"{root} holds no images: put png/jpg/pgm files in {root}/<class name>/")
    return np.stack(xs).astype(np.float32), np.array(ys, dtype=np.int64), ids, None, names


def load_site(path: str | Path, target: str = "label", id_column: str | None = "record_id",
              holdout_fraction: float = 0.2, classes: Sequence[str] | None = None,
              salt: str = "holdout") -> SiteData:
    """Load one site's data file and split it into train and a stable, never-trained holdout.

    path: a `.csv` file (header row; `target` column of labels; optional `id_column` of
    record ids, else ids are the 0-based data-row numbers; every other column numeric),
    a `.npz` file (arrays x (n, ...), y (n,), optional ids (n,)), or a folder
    `root/<class name>/<file>` of png/jpg/pgm images (X (n, 1|3, H, W) scaled to [0, 1],
    ids = path relative to root with forward slashes).
    Labels: integers 0..C-1 as they are, or text mapped through `classes` (index in the
    list; a list of names or the app config's comma string "no,yes"). Image classes: position of the folder name in `classes`, else in the sorted
    folder names.
    Holdout: a row is held out iff u(salt, id) < holdout_fraction, u = first 8 bytes
    (big-endian) of sha256(f"{salt}:{id}") / 2**64, so reordering or appending rows
    never moves an existing row between train and holdout.

    Raises SiteError (one line) for a missing or empty path, an unknown format, a
    missing target, text features, empty/NaN/inf cells, continuous or undeclared text
    labels, empty/duplicate ids, images of different sizes, holdout_fraction outside
    [0, 1), or a file whose every row falls in the holdout.
    """
    p = Path(path)
    if isinstance(classes, str):  # the app config's "no,yes"
        classes = [c.strip() for c in classes.split(",") if c.strip()] or None
    if classes is not None and len(set(map(str, classes))) != len(classes):
        raise SiteError(f"declared classes {list(classes)} repeat a name: list each class once")
    if not 0.0 <= holdout_fraction < 1.0:
        raise SiteError(f"holdout_fraction {holdout_fraction!r} is outside [0, 1): use e.g. 0.2")
    if not p.exists():
        raise SiteError(f"site data {p} does not exist: point the site at its own .csv, .npz or image folder")
    if p.is_dir():
        X, y, ids, features, names = _read_images(p, classes)
    elif p.stat().st_size == 0:
        raise SiteError(f"site data {p} is empty: write a header row and data rows (or x/y arrays)")
    elif p.suffix.lower() == ".csv":
        X, y, ids, features, names = _read_csv(p, target, id_column, classes)
    elif p.suffix.lower() == ".npz":
        X, y, ids, features, names = _read_npz(p, classes)
    else:
        raise SiteError(f"site data {p} has unknown format {p.suffix!r}: use a .csv file, a .npz file or an image folder")
    _check_ids(ids, str(p))
    if names is None and classes:
        names = tuple(str(c) for c in classes)
    ids_arr = np.array(ids, dtype=str)
    held = np.array([_unit(salt, r) < holdout_fraction for r in ids], dtype=bool)
    if held.all():
        raise SiteError(f"all {len(ids)} rows of {p} fall in the holdout: add rows or lower holdout_fraction")
    tr, ho = np.flatnonzero(~held), np.flatnonzero(held)
    data = Split(X, y)
    return SiteData(data.subset(tr), data.subset(ho), ids_arr[tr], ids_arr[ho], features, names)


# ---------------------------------------------------------------- erasure


def read_id_file(path: str | Path) -> list[str]:
    """Record ids of an erasure request: one per line, stripped; blank and '#' lines ignored.

    Raises SiteError for a missing file, a file with no ids, or a duplicated id.
    """
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8-sig").splitlines()
    except FileNotFoundError:
        raise SiteError(f"id file {p} does not exist: write the record ids to erase, one per line") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SiteError(f"cannot read id file {p}: {type(e).__name__}: {e}; write it as UTF-8 text") from None
    ids: list[str] = []
    seen: dict[str, int] = {}
    for n, line in enumerate(lines, 1):
        r = line.strip()
        if not r or r.startswith("#"):
            continue
        if r in seen:
            raise SiteError(f"id file {p} names {r!r} twice (lines {seen[r]} and {n}): list each record once")
        seen[r] = n
        ids.append(r)
    if not ids:
        raise SiteError(f"id file {p} names no record ids: write the ids to erase, one per line")
    return ids


def records_digest(ids: Iterable[str], salt: str) -> str:
    """sha256 hex of (salt + "\\n" + "\\n".join(sorted(ids))) as UTF-8; the server may see it, never the ids.

    Use a secret random salt per request (e.g. secrets.token_hex(16)), kept at the site:
    with a known salt a small id space (patient numbers) can be guessed from the digest.
    """
    return hashlib.sha256((salt + "\n" + "\n".join(sorted(ids))).encode("utf-8")).hexdigest()


class ErasureStore:
    """A site-local folder of erasure requests, root/<request_id>.json; it never leaves the site.

    Each file holds the request's record ids (in the order given), its salt and digest.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, request_id: str) -> Path:
        if not isinstance(request_id, str) or not _REQUEST_ID.fullmatch(request_id):
            raise SiteError(f"request id {request_id!r} is not a safe file name: use letters, digits, '.', '_', '-'")
        return self.root / f"{request_id}.json"

    def _read(self, request_id: str) -> dict | None:
        p = self._path(request_id)
        try:
            return json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            raise SiteError(f"erasure record {p} is unreadable: {type(e).__name__}: {e}; restore it from backup") from None

    def put(self, request_id: str, ids: Sequence[str], salt: str) -> str:
        """Record a request's ids atomically; return records_digest(ids, salt).

        Putting the same ids again is a no-op returning the stored digest (the stored
        salt wins). Raises SiteError for no ids, an empty or duplicated id, or a
        request id already stored with different ids.
        """
        p = self._path(request_id)
        ids = [str(r) for r in ids]
        if not ids:
            raise SiteError(f"erasure request {request_id} names no record ids: name at least one")
        _check_ids(ids, f"erasure request {request_id}")
        old = self._read(request_id)
        if old is not None:
            if sorted(old["ids"]) != sorted(ids):
                raise SiteError(f"erasure request {request_id} is already stored with different record ids: "
                                "use a new request id")
            return str(old["digest"])
        digest = records_digest(ids, salt)
        body = json.dumps({"request_id": request_id, "ids": ids, "salt": salt, "digest": digest}, indent=1)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=f".{request_id}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(body)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, p)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return digest

    def get(self, request_id: str) -> list[str] | None:
        """The record ids of a stored request, or None if this site holds no such request."""
        rec = self._read(request_id)
        return None if rec is None else [str(r) for r in rec["ids"]]

    def salt(self, request_id: str) -> str | None:
        """The salt of a stored request's digest, or None if unknown here."""
        rec = self._read(request_id)
        return None if rec is None else str(rec["salt"])

    def find(self, ids: Sequence[str]) -> tuple[str, str] | None:
        """(request id, salt) of a stored request that names exactly `ids`, or None: a repeated erasure
        of the same records reuses its salt, so its digest and request id are the same again."""
        want = sorted(str(i) for i in ids)
        for p in sorted(self.root.glob("*.json")):
            body = self._read(p.stem)
            if body is not None and sorted(body.get("ids", [])) == want:
                return p.stem, str(body.get("salt", ""))
        return None

    def erased_before(self, request_id: str, order: Sequence[str]) -> set[str]:
        """Record ids erased by the requests before `request_id` in `order` (applied ids, oldest first).

        If request_id is not in `order` (not applied yet), every request in `order`
        counts as earlier. Requests this site holds no record of (e.g. other sites'
        requests) are skipped.
        """
        order = list(order)
        earlier = order[: order.index(request_id)] if request_id in order else order
        out: set[str] = set()
        for r in earlier:
            out.update(self.get(r) or ())
        return out


def resolve_records(site: SiteData, ids: Sequence[str], already_erased: set[str] = frozenset(),
                    reveal_ids: bool = True) -> np.ndarray:
    """Sorted int64 indices into site.train of the rows whose ids are named.

    Raises SiteError (one line, count and at most 3 example ids) for no ids,
    duplicated ids, ids already erased by an earlier request, ids of never-trained
    holdout rows, and ids this site does not hold. With `reveal_ids=True` the message
    contains record ids: keep it at the site. `reveal_ids=False` gives counts only: what a
    site may send to the server (the engine's client handler uses it).
    """
    ids = [str(r) for r in ids]
    if not ids:
        raise SiteError("the erasure request names no record ids: name at least one")
    seen: set[str] = set()
    dups = [r for r in ids if r in seen or seen.add(r)]
    if dups:
        raise SiteError(f"{_examples('duplicate record ids', dups, reveal_ids)} in the request: list each record once")
    gone = [r for r in ids if r in already_erased]
    if gone:
        raise SiteError(f"{_examples('record ids', gone, reveal_ids)} were already erased by an earlier request: "
                        "remove them from the id file")
    held = set(site.holdout_ids.tolist())
    hold = [r for r in ids if r in held]
    if hold:
        raise SiteError(f"{_examples('record ids', hold, reveal_ids)} are never-trained holdout rows: delete them at the site; "
                        "no model holds them")
    index = {r: i for i, r in enumerate(site.train_ids.tolist())}
    unknown = [r for r in ids if r not in index]
    if unknown:
        raise SiteError(f"{_examples('unknown record ids', unknown, reveal_ids)}, not held by this site: check the site and the id file")
    return np.sort(np.array([index[r] for r in ids], dtype=np.int64))
