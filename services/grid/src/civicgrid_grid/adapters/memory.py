"""In-memory adapters of grid's storage port, for unit tests: the same guards as the MongoDB
adapters (``tests/contract`` holds both to the same assertions), documents kept as the store would
keep them (through ``case_to_document``), published events collected in ``published``."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from typing import Any

from civicgrid_contracts import Envelope
from civicgrid_grid.adapters.documents import (
    APPLIED,
    FIRST_SCHEMA_VERSION,
    ROSTER_SCHEMA_VERSION,
    candidate_of,
    case_from_document,
    case_to_document,
    member_fields,
    member_from_document,
    post_from_document,
    with_roster_defaults,
)
from civicgrid_grid.adapters.repos import plan_reservations
from civicgrid_grid.domain.request import OPEN, RequestCase
from civicgrid_grid.domain.roster import Post, StaffMember, post_id


class MemoryRequests:
    def __init__(self) -> None:
        self.docs: dict[str, dict[str, Any]] = {}
        self.caused: dict[str, list[Envelope]] = {}
        self.published: list[Envelope] = []

    async def get(self, rid: str) -> RequestCase | None:
        doc = self.docs.get(rid)
        return case_from_document(copy.deepcopy(doc)) if doc else None

    async def get_many(self, ids: Sequence[str]) -> dict[str, RequestCase]:
        return {rid: case_from_document(copy.deepcopy(self.docs[rid])) for rid in ids if rid in self.docs}

    async def insert_new(self, items: Sequence[tuple[RequestCase, Sequence[Envelope]]], *,
                         crash_point_name: str | None = None) -> set[str]:
        inserted = set()
        for case, events in items:
            if case.id in self.docs:
                self.published += self.caused.get(case.id, [])
                continue
            case.version = 1
            self.docs[case.id] = case_to_document(case)
            self.caused[case.id] = list(events)
            self.published += events
            inserted.add(case.id)
        return inserted

    def _accepts(self, case: RequestCase, cause_id: str | None) -> bool:
        stored = self.docs.get(case.id)
        return (stored is not None and stored.get("version", 0) == case.version
                and (cause_id is None or cause_id not in stored.get(APPLIED, [])))

    async def save(self, case: RequestCase, events: Sequence[Envelope] = (), *,
                   cause_id: str | None = None) -> bool:
        if not self._accepts(case, cause_id):
            return False
        case.version += 1
        if cause_id is not None:
            case.applied.append(cause_id)
        self.docs[case.id] = case_to_document(case)
        self.published += events
        return True

    async def save_many(self, cases: Sequence[tuple[RequestCase, str]]) -> None:
        for case, cause_id in cases:
            await self.save(case, cause_id=cause_id)

    def _open(self, key: str, value: str, limit: int) -> list[RequestCase]:
        docs = [d for d in self.docs.values() if d["status"] in OPEN
                and (value in (d.get(key) or []) if key == "dispatched_to" else d.get(key) == value)]
        docs.sort(key=lambda d: (d["prio"], d.get("due_response") is not None, d.get("due_response")))
        return [case_from_document(copy.deepcopy(d)) for d in docs[:limit]]

    async def open_held_by(self, assignee_id: str, *, limit: int = 1000) -> list[RequestCase]:
        return self._open("assignee_id", assignee_id, limit)

    async def open_dispatched_to(self, department: str, *, limit: int = 1000) -> list[RequestCase]:
        return self._open("dispatched_to", department, limit)


def _version_is(doc: dict[str, Any] | None, version: int) -> bool:
    return doc is not None and int(doc.get("version", 0)) == version


class MemoryStaff:
    def __init__(self) -> None:
        self.docs: dict[str, dict[str, Any]] = {}
        self.published: list[Envelope] = []

    staff_of = staticmethod(candidate_of)

    async def member(self, sid: str) -> StaffMember | None:
        doc = self.docs.get(sid)
        return member_from_document(copy.deepcopy(doc)) if doc else None

    async def members(self, ids: Sequence[str]) -> dict[str, StaffMember]:
        return {sid: member_from_document(copy.deepcopy(self.docs[sid])) for sid in ids if sid in self.docs}

    async def members_under(self, area: str, *, limit: int = 2000) -> list[StaffMember]:
        docs = sorted((d for d in self.docs.values() if str(d.get("area", "")).startswith(area)),
                      key=lambda d: d["_id"])
        return [member_from_document(copy.deepcopy(d)) for d in docs[:limit]]

    async def create(self, member: StaffMember, events: Sequence[Envelope] = ()) -> bool:
        if member.id in self.docs:
            return False
        self.docs[member.id] = {"_id": member.id, **member_fields(member), "version": 1, "load": 0, "holding": []}
        member.version = 1
        self.published += events
        return True

    async def save_member(self, member: StaffMember, events: Sequence[Envelope] = ()) -> bool:
        doc = self.docs.get(member.id)
        if not _version_is(doc, member.version):
            return False
        doc.update(member_fields(member), version=member.version + 1)
        member.version += 1
        self.published += events
        return True

    async def get(self, sid: str) -> dict | None:
        return copy.deepcopy(self.docs.get(sid))

    async def read_many(self, ids: Sequence[str]) -> dict[str, dict]:
        return {sid: copy.deepcopy(self.docs[sid]) for sid in ids if sid in self.docs}

    async def reserve_many(self, wants: Sequence[tuple[str, str, bool]], *,
                           read: dict[str, dict] | None = None) -> set[tuple[str, str]]:
        granted: set[tuple[str, str]] = set()
        for sid, rids in plan_reservations(wants, self.docs, granted).items():
            d = self.docs[sid]
            d["load"] = int(d.get("load", 0)) + len(rids)
            d["holding"] = [*d.get("holding", []), *rids]
            granted |= {(sid, rid) for rid in rids}
        return granted

    async def release(self, sid: str | None, rid: str) -> None:
        d = self.docs.get(sid or "")
        if d is not None and rid in d.get("holding", []):
            d["load"] -= 1
            d["holding"].remove(rid)

    async def upsert_many(self, docs: Sequence[dict]) -> None:
        for doc in docs:
            live = self.docs.get(doc["_id"], {"load": 0, "holding": [], "version": 0})
            self.docs[doc["_id"]] = {**live, **with_roster_defaults(copy.deepcopy(doc)), "load": live["load"],
                                     "holding": live["holding"],
                                     "version": int(live.get("version", 0)) + 1,
                                     "schema_version": ROSTER_SCHEMA_VERSION}


class MemoryRoster:
    def __init__(self) -> None:
        self.kinds: dict[str, dict[str, dict]] = {"posts": {}, "chain": {}, "departments": {}}
        self.published: list[Envelope] = []

    async def post(self, pid: str) -> Post | None:
        doc = self.kinds["posts"].get(pid)
        return post_from_document(copy.deepcopy(doc)) if doc else None

    async def posts_under(self, area: str, *, limit: int = 2000) -> list[Post]:
        docs = sorted((d for d in self.kinds["posts"].values() if d["area"].startswith(area)), key=lambda d: d["_id"])
        return [post_from_document(copy.deepcopy(d)) for d in docs[:limit]]

    async def posts_held_by(self, sid: str) -> list[Post]:
        docs = sorted((d for d in self.kinds["posts"].values() if sid in (d.get("a"), d.get("b"))),
                      key=lambda d: d["_id"])
        return [post_from_document(copy.deepcopy(d)) for d in docs]

    async def save_post(self, post: Post, events: Sequence[Envelope] = ()) -> bool:
        doc = self.kinds["posts"].get(post.id)
        if not _version_is(doc, post.version):
            return False
        doc.update(a=post.a, b=post.b, version=post.version + 1, schema_version=ROSTER_SCHEMA_VERSION)
        post.version += 1
        self.published += events
        return True

    async def posts_for(self, areas: Sequence[str], lines: Iterable[str] = ("general", "care")
                        ) -> dict[tuple[str, str], dict]:
        posts = self.kinds["posts"]
        wanted = [post_id(a, line) for a in areas for line in lines]
        return {(posts[i]["area"], posts[i]["line"]): dict(posts[i]) for i in wanted if i in posts}

    async def chain_for(self, keys: Sequence[str]) -> dict[str, str]:
        return {k: self.kinds["chain"][k]["staff_id"] for k in keys if k in self.kinds["chain"]}

    async def known_departments(self, ids: Sequence[str]) -> set[str]:
        return set(ids) & set(self.kinds["departments"])

    async def list_departments(self) -> list[dict[str, Any]]:
        return [dict(self.kinds["departments"][k]) for k in sorted(self.kinds["departments"])]

    async def upsert(self, kind: str, docs: Sequence[dict]) -> None:
        for d in docs:
            old = self.kinds[kind].get(d["_id"], {})
            new = {**old, **copy.deepcopy(d)}
            if kind == "posts":
                new.update(version=int(old.get("version", 0)) + 1, schema_version=ROSTER_SCHEMA_VERSION)
            self.kinds[kind][d["_id"]] = new


class MemoryCatalogue:
    def __init__(self) -> None:
        self.docs: dict[str, dict] = {}

    async def apply(self, doc: dict) -> bool:
        old = self.docs.get(doc["_id"])
        if old is not None and old["revision"] >= doc["revision"]:
            return False
        self.docs[doc["_id"]] = {**copy.deepcopy(doc), "schema_version": FIRST_SCHEMA_VERSION}
        return True

    async def get_many(self, codes: Sequence[str]) -> dict[str, dict]:
        return {c: dict(self.docs[c]) for c in codes if c in self.docs}
