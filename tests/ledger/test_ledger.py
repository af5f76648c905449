"""The withdrawal ledger: hash chain, tamper detection, states, idempotency, concurrent writers."""

import json
import multiprocessing as mp
import pytest
import sqlalchemy as sa

from unlearn_fl.ledger import Ledger, LedgerError, check_chain
from unlearn_fl.ledger.chain import GENESIS, entry_hash
from unlearn_fl.requests import WithdrawalRequest


def _req(i: int, client: int = 1) -> WithdrawalRequest:
    return WithdrawalRequest(client_ids=(client,), fraction=0.5, salt=f"s{i}", reason="GDPR Art. 17")


def _lifecycle(ledger: Ledger, n: int = 3) -> list[str]:
    ids = []
    for i in range(n):
        r = _req(i)
        ledger.receive(r, "m")
        ledger.append(r.request_id, "m", "running", {"attempt": 1})
        ledger.append(r.request_id, "m", "done", {"version": str(i + 2), "verdict": "passed"})
        ids.append(r.request_id)
    return ids


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    """The same tests on sqlite (the default) and on a real PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/ledger.db"
    url = request.getfixturevalue("postgres_url")
    engine = sa.create_engine(url)
    with engine.begin() as c:
        c.execute(sa.text("DROP TABLE IF EXISTS withdrawal_ledger"))
    engine.dispose()
    return url


@pytest.fixture
def ledger(url):
    return Ledger(url)


def test_hash_is_the_chain_formula(ledger):
    r = _req(0)
    e, new = ledger.receive(r, "m")
    assert new and e.seq == 1 and e.prev_hash == GENESIS
    assert e.hash == entry_hash(GENESIS, 1, r.request_id, "m", "received", e.at, e.body)
    e2 = ledger.append(r.request_id, "m", "running", {"attempt": 1})
    assert e2.prev_hash == e.hash and e2.seq == 2
    assert ledger.verify() is None


def test_a_request_sent_again_is_received_once(ledger):
    r = _req(0)
    first, new1 = ledger.receive(r, "m")
    again, new2 = ledger.receive(WithdrawalRequest.model_validate_json(r.model_dump_json()), "m")
    assert (new1, new2) == (True, False) and again.seq == first.seq
    assert [e.state for e in ledger.entries()] == ["received"]


def test_states_follow_the_lifecycle(ledger):
    r = _req(0)
    with pytest.raises(LedgerError, match="not received"):
        ledger.append(r.request_id, "m", "running")
    ledger.receive(r, "m")
    with pytest.raises(LedgerError, match="cannot become done"):
        ledger.append(r.request_id, "m", "done")
    ledger.append(r.request_id, "m", "running")
    ledger.append(r.request_id, "m", "running", {"retry_after": "interrupted"})  # a retry after a crash
    ledger.append(r.request_id, "m", "done")
    with pytest.raises(LedgerError):
        ledger.append(r.request_id, "m", "running")  # done is final: never applied twice
    ledger.append(r.request_id, "m", "erased", {"versions": []})
    assert ledger.state(r.request_id) == "erased"


def _sql(url: str, statement: str, **params) -> None:
    """Tamper with the table directly, as someone with write access to the database could."""
    engine = sa.create_engine(url)
    with engine.begin() as c:
        c.execute(sa.text(statement), params)
    engine.dispose()


def test_verify_names_a_changed_entry(ledger, url):
    ids = _lifecycle(ledger)
    _sql(url, "UPDATE withdrawal_ledger SET body=:b WHERE seq=5", b=json.dumps({"version": "9", "verdict": "passed"}))
    p = ledger.verify()
    assert p is not None and p.seq == 5 and p.request_id == ids[1] and "changed" in p.problem


def test_verify_names_a_removed_entry(ledger, url):
    _lifecycle(ledger)
    _sql(url, "DELETE FROM withdrawal_ledger WHERE seq=4")
    p = ledger.verify()
    assert p is not None and p.seq == 5 and "removed" in p.problem


def test_verify_names_reordered_entries(ledger, url):
    _lifecycle(ledger)
    # Swap entries 4 and 5 (their places), keeping each one's own hash: the links no longer hold.
    _sql(url, "UPDATE withdrawal_ledger SET seq=-4 WHERE seq=4")
    _sql(url, "UPDATE withdrawal_ledger SET seq=4 WHERE seq=5")
    _sql(url, "UPDATE withdrawal_ledger SET seq=5 WHERE seq=-4")
    p = ledger.verify()
    assert p is not None and p.seq == 4


def test_a_rewritten_chain_is_caught_by_its_anchors(ledger, url):
    """Removing the last entries leaves a valid shorter chain; the registry's anchor catches it."""
    _lifecycle(ledger)
    last = ledger.entries()[-1]
    _sql(url, "DELETE FROM withdrawal_ledger WHERE seq>=:s", s=last.seq)
    assert ledger.verify() is None
    p = ledger.verify(anchors={last.seq: last.hash})
    assert p is not None and p.seq == last.seq and "missing" in p.problem


def test_check_chain_rejects_a_state_out_of_order():
    rows, prev = [], GENESIS
    for seq, state in ((1, "received"), (2, "done")):
        h = entry_hash(prev, seq, "wr-x", "m", state, "t", {})
        rows.append({"seq": seq, "request_id": "wr-x", "model_name": "m", "state": state, "at": "t", "body": "{}",
                     "prev_hash": prev, "hash": h})
        prev = h
    p = check_chain(rows)
    assert p is not None and p.seq == 2 and "cannot follow" in p.problem


def _writer(url: str, worker: int, n: int) -> None:
    ledger = Ledger(url)
    for i in range(n):
        r = WithdrawalRequest(client_ids=(worker % 3,), fraction=0.25, salt=f"w{worker}-{i}")
        ledger.receive(r, "m")
        ledger.receive(r, "m")  # sent twice: received once
        ledger.append(r.request_id, "m", "running")
        ledger.append(r.request_id, "m", "aborted", {"reason": "test"})


def test_concurrent_writers_lose_and_duplicate_nothing(url):
    """4 processes x 25 requests, each received twice and taken to a final state, all at once."""
    Ledger(url)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(url, w, 25)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    ledger = Ledger(url)
    entries = ledger.entries()
    assert [e.seq for e in entries] == list(range(1, 301))
    received = [e.request_id for e in entries if e.state == "received"]
    assert len(received) == len(set(received)) == 100
    assert all(ledger.state(r) == "aborted" for r in received)
    assert ledger.verify() is None


def test_a_bad_url_is_one_clear_error(tmp_path):
    with pytest.raises(LedgerError, match="does not exist"):
        Ledger(f"sqlite:///{tmp_path}/missing/ledger.db")
    with pytest.raises(LedgerError, match="SQLAlchemy URL"):
        Ledger("nosuchdb://x")
    with pytest.raises(LedgerError, match="no ledger"):
        Ledger(f"sqlite:///{tmp_path}/absent.db", must_exist=True)
