"""The withdrawal ledger: an append-only, hash-chained record of every request's states.

Stored in any SQLAlchemy database: sqlite by default (a file beside the MLflow store),
PostgreSQL or another server in deployment. One table; entries are only ever inserted:

    seq        1, 2, 3, ... (primary key: two writers cannot take the same place)
    request_id the withdrawal request (wr-...)
    model_name the registered model (federation) it concerns
    state      received | running | done | failed | aborted | erased   (chain.STATES)
    at         UTC time of the entry, ISO 8601
    body       JSON: what the state records (scope and counts, version, verdict, erased artefacts);
               digests and counts only, never record ids or data
    prev_hash  the previous entry's hash (unique: the chain cannot fork)
    hash       chain.entry_hash of the entry

Writers race safely: an append reads the last entry and inserts the next one; a writer that
lost the race (same seq or prev_hash) gets an integrity error and tries again. A request is
`received` at most once (a unique index), so a request sent again with the same id is recognised.
"""

from __future__ import annotations

import datetime as _dt
import json
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from unlearn_fl.ledger.chain import FINAL, GENESIS, NEXT_STATES, ChainProblem, canonical, check_chain, entry_hash
from unlearn_fl.requests import WithdrawalRequest

LEDGER_FILE = "unlearn-ledger.db"


class LedgerError(RuntimeError):
    """The ledger cannot be opened or an entry is not allowed; the message names the fix."""


class LedgerEntry(BaseModel):
    """One ledger row (see the module docstring)."""

    model_config = ConfigDict(frozen=True)

    seq: int
    request_id: str
    model_name: str
    state: str
    at: str
    body: dict
    prev_hash: str
    hash: str


def default_ledger_url(tracking_uri: str, out: str | Path) -> str:
    """sqlite beside an sqlite MLflow store (`.../mlflow.db` -> `.../unlearn-ledger.db`); else in `out`."""
    if tracking_uri.startswith("sqlite:///"):
        store = Path(tracking_uri[len("sqlite:///"):])
        return "sqlite:///" + str(store.parent / LEDGER_FILE)
    return "sqlite:///" + str(Path(out).resolve() / LEDGER_FILE)


def _driver_missing(url: str, e: ModuleNotFoundError) -> LedgerError:
    return LedgerError(f"cannot open ledger {url}: its database driver {e.name!r} is not installed; install it "
                       "(PostgreSQL: pip install 'unlearn-fl[postgres]' and a postgresql+psycopg:// URL)")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds")


class Ledger:
    """The withdrawal ledger at a SQLAlchemy URL (`sqlite:///PATH`, `postgresql://...`).

    Raises LedgerError when the database cannot be opened (a missing folder, a bad URL, a server
    that does not answer).
    """

    def __init__(self, url: str, must_exist: bool = False) -> None:
        import sqlalchemy as sa

        self.url = url
        if url.startswith("sqlite:///"):
            path = Path(url[len("sqlite:///"):])
            if not path.parent.is_dir():
                raise LedgerError(f"cannot open ledger {url}: folder {path.parent} does not exist; create it or pass another --ledger")
            if must_exist and not path.is_file():
                raise LedgerError(f"no ledger at {path}: pass the --ledger (or --tracking-uri) the federation used")
        try:
            kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
            self.engine = sa.create_engine(url, **kwargs)
        except ModuleNotFoundError as e:
            raise _driver_missing(url, e) from None
        except Exception as e:
            raise LedgerError(f"cannot open ledger {url!r}: {e.__class__.__name__}; give a SQLAlchemy URL such as "
                              "sqlite:///PATH/ledger.db or postgresql+psycopg://USER@HOST/DB") from None
        if url.startswith("sqlite"):
            @sa.event.listens_for(self.engine, "connect")
            def _wal(dbapi_conn, _record):  # readers never block the writer, nor it them
                dbapi_conn.execute("PRAGMA journal_mode=WAL")
                dbapi_conn.execute("PRAGMA synchronous=FULL")
        md = sa.MetaData()
        self.table = sa.Table(
            "withdrawal_ledger", md,
            sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
            sa.Column("request_id", sa.String(64), nullable=False, index=True),
            sa.Column("model_name", sa.String(256), nullable=False),
            sa.Column("state", sa.String(16), nullable=False),
            sa.Column("at", sa.String(40), nullable=False),
            sa.Column("body", sa.Text, nullable=False),
            sa.Column("prev_hash", sa.String(64), nullable=False, unique=True),
            sa.Column("hash", sa.String(64), nullable=False, unique=True),
        )
        t = self.table
        sa.Index("withdrawal_received_once", t.c.request_id, unique=True,
                 sqlite_where=t.c.state == "received", postgresql_where=t.c.state == "received")
        try:
            if must_exist:  # a reader never creates a ledger (e.g. a table inside the MLflow store by mistake)
                if not sa.inspect(self.engine).has_table("withdrawal_ledger"):
                    raise LedgerError(f"{url} holds no withdrawal ledger: pass the --ledger (or --tracking-uri) the federation used")
            else:
                md.create_all(self.engine)
        except LedgerError:
            raise
        except ModuleNotFoundError as e:
            raise _driver_missing(url, e) from None
        except Exception as e:
            raise LedgerError(f"cannot open ledger {url}: {e.__class__.__name__}: {str(e).splitlines()[0][:160]}; check that "
                              "the database server runs and the URL's user, host, port and database") from None

    # ------------------------------------------------------------------ reading

    def _rows(self, where=None) -> list[dict]:
        import sqlalchemy as sa

        q = sa.select(self.table).order_by(self.table.c.seq)
        if where is not None:
            q = q.where(where)
        with self.engine.connect() as c:
            return [dict(r._mapping) for r in c.execute(q)]

    def entries(self, request_id: str | None = None, model_name: str | None = None) -> list[LedgerEntry]:
        """Entries in order, optionally of one request or one model."""
        t, conds = self.table, []
        if request_id is not None:
            conds.append(t.c.request_id == request_id)
        if model_name is not None:
            conds.append(t.c.model_name == model_name)
        import sqlalchemy as sa

        rows = self._rows(sa.and_(*conds) if conds else None)
        return [LedgerEntry(**{**r, "body": json.loads(r["body"])}) for r in rows]

    def state(self, request_id: str) -> str | None:
        """The request's latest state, or None when the ledger has never received it."""
        e = self.entries(request_id)
        return e[-1].state if e else None

    def requests(self, model_name: str, states: tuple[str, ...], origin: str | None = None) -> list[tuple[WithdrawalRequest, str]]:
        """(request, latest state) of the model's requests whose latest state is one of `states`, in the
        order they were received; `origin`: only those received as "planned" or "submitted"."""
        latest: dict[str, str] = {}
        received: dict[str, LedgerEntry] = {}
        for e in self.entries(model_name=model_name):
            latest[e.request_id] = e.state
            if e.state == "received" and "request" in e.body:  # (an invalid file is received and aborted at once)
                received[e.request_id] = e
        out = []
        for rid, e in sorted(received.items(), key=lambda kv: kv[1].seq):
            if latest[rid] in states and (origin is None or e.body.get("origin") == origin):
                out.append((WithdrawalRequest.model_validate(e.body["request"]), latest[rid]))
        return out

    def verify(self, anchors: dict[int, str] | None = None) -> ChainProblem | None:
        """The first broken entry (chain.check_chain), or None.

        anchors: {seq: hash} recorded elsewhere (the registry's `ledger_entry` tags); an anchored
        entry that is missing or differs is reported too (this catches a removed last entry).
        """
        rows = self._rows()
        problem = check_chain(rows)
        if problem is not None:
            return problem
        by_seq = {r["seq"]: r for r in rows}
        for seq, h in sorted((anchors or {}).items()):
            r = by_seq.get(seq)
            if r is None:
                return ChainProblem(seq, "?", "recorded in the model registry but missing from the ledger: entries were removed")
            if r["hash"] != h:
                return ChainProblem(seq, r["request_id"], "differs from the hash the model registry recorded for it")
        return None

    # ------------------------------------------------------------------ writing

    def append(self, request_id: str, model_name: str, state: str, body: dict | None = None) -> LedgerEntry:
        """Append one entry; raises LedgerError when the request's current state does not allow `state`."""
        import sqlalchemy as sa

        body = json.loads(canonical(body or {}))
        t = self.table
        for attempt in range(200):
            with self.engine.connect() as c:
                last = c.execute(sa.select(t.c.seq, t.c.hash).order_by(t.c.seq.desc()).limit(1)).first()
                cur = c.execute(sa.select(t.c.state).where(t.c.request_id == request_id)
                                .order_by(t.c.seq.desc()).limit(1)).scalar()
            if state not in NEXT_STATES.get(cur, ()):
                raise LedgerError(f"request {request_id} is {cur or 'not received'}; it cannot become {state}")
            seq, prev = (last.seq + 1, last.hash) if last else (1, GENESIS)
            at = _now()
            row = {"seq": seq, "request_id": request_id, "model_name": model_name, "state": state, "at": at,
                   "body": canonical(body), "prev_hash": prev,
                   "hash": entry_hash(prev, seq, request_id, model_name, state, at, body)}
            try:
                with self.engine.begin() as c:
                    c.execute(t.insert().values(**row))
                return LedgerEntry(**{**row, "body": body})
            except sa.exc.IntegrityError:
                if state == "received" and self.state(request_id) is not None:
                    raise LedgerError(f"request {request_id} was already received") from None
                time.sleep(0.005 * (1 + attempt % 10))  # another writer took this place: read again
            except sa.exc.OperationalError as e:  # sqlite busy beyond its timeout
                if "locked" not in str(e):
                    raise
                time.sleep(0.05)
        raise LedgerError(f"could not append to the ledger {self.url}: too many concurrent writers")

    def receive(self, request: WithdrawalRequest, model_name: str, origin: str = "submitted") -> tuple[LedgerEntry, bool]:
        """Record a request as received: (its received entry, True) or, when the same id was received
        before, (that earlier entry, False). Never applied twice: callers act only on new ones."""
        body = {"request": json.loads(request.model_dump_json()), "scope": request.scope, "origin": origin}
        try:
            return self.append(request.request_id, model_name, "received", body), True
        except LedgerError:
            first = self.entries(request.request_id)
            if first:
                return first[0], False
            raise

    def is_final(self, request_id: str) -> bool:
        return self.state(request_id) in (*FINAL, "erased")
