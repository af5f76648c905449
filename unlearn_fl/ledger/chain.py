"""The ledger's hash chain and request states: pure functions, no database.

Each entry is hashed over its own fields and the previous entry's hash,

    hash_k = SHA-256( hash_{k-1} || canonical JSON of (seq_k, request_id_k, model_name_k, state_k, at_k, body_k) ),

with hash_0 = 64 zeros. Changing any entry changes its hash, so it no longer matches what the next
entry recorded as `prev_hash`; removing or reordering entries breaks the sequence numbers or the links.
(A removed *last* entry leaves a valid shorter chain: the registry's `ledger_entry` tags witness the
entries that produced versions, see `Ledger.verify(anchors=...)`.)

States of one request:

    received -> running -> done | failed | aborted        (running again: retried after an interruption)
    received -> aborted                                   (refused before any work, e.g. unknown site)
    done -> erased                                        (artefacts that held its data were erased)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

GENESIS = "0" * 64

FINAL = ("done", "failed", "aborted")
STATES = ("received", "running", *FINAL, "erased")

NEXT_STATES: dict[str | None, tuple[str, ...]] = {
    None: ("received",),
    "received": ("running", "aborted"),
    "running": ("running", *FINAL),
    "done": ("erased",),
    "failed": (),
    "aborted": (),
    "erased": ("erased",),
}
"""State a request is in -> states its next entry may record."""


def canonical(obj) -> str:
    """JSON with sorted keys and no whitespace: the bytes that are hashed."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)


def entry_hash(prev_hash: str, seq: int, request_id: str, model_name: str, state: str, at: str, body: dict) -> str:
    """hash_k of the module docstring (hex, 64 characters)."""
    fields = canonical({"seq": seq, "request_id": request_id, "model_name": model_name, "state": state, "at": at,
                        "body": body})
    return hashlib.sha256((prev_hash + fields).encode()).hexdigest()


@dataclass(frozen=True)
class ChainProblem:
    """The first entry that breaks the chain, and how."""

    seq: int
    request_id: str
    problem: str

    def __str__(self) -> str:
        return f"entry {self.seq} ({self.request_id}): {self.problem}"


def check_chain(rows: list[dict]) -> ChainProblem | None:
    """The first broken entry of `rows` (dicts with the columns, in storage order by seq), or None.

    Detects: a changed entry (its hash does not match its content), a removed or reordered entry
    (sequence numbers not 1, 2, 3, ... or a `prev_hash` that is not the previous entry's hash),
    and a state change the request's states do not allow (e.g. `done` never `running`).
    """
    prev, state_of = GENESIS, {}
    for i, r in enumerate(rows, start=1):
        rid = r["request_id"]
        if r["seq"] != i:
            return ChainProblem(r["seq"], rid, f"expected entry {i} here: an entry was removed or the entries reordered")
        if r["prev_hash"] != prev:
            return ChainProblem(i, rid, "does not link to the entry before it: an entry was removed, inserted or reordered")
        body = json.loads(r["body"]) if isinstance(r["body"], str) else r["body"]
        if entry_hash(prev, i, rid, r["model_name"], r["state"], r["at"], body) != r["hash"]:
            return ChainProblem(i, rid, "its content does not match its hash: the entry was changed")
        current = state_of.get(rid)
        if r["state"] not in NEXT_STATES.get(current, ()):
            return ChainProblem(i, rid, f"state {r['state']!r} cannot follow {current or 'nothing'!r}")
        state_of[rid] = r["state"]
        prev = r["hash"]
    return None
