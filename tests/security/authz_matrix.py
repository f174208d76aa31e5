"""The authorization matrix: who may call every route of every service, in one table.

Each route names the roles it lets in (``admin`` is always in) and, of those, the ones whose area
scope (or, for a department, being the one a request was dispatched to) limits what they reach:
with a token scoped elsewhere those get 403. ``PUBLIC`` routes need no token. Everyone else is
refused -- 403 for a valid token of another role, 401 without a valid token (missing, malformed,
expired, signed with another key, ``alg: none``, another issuer, an unknown role); the few
routes a resident reaches with the request's own token answer 404 instead (they never confirm a
request exists). test_authz_matrix.py calls every route with every role against this table and
fails on a route this table does not list.

Placeholders in paths and queries are filled by the test from a real request it submits:
``{rid}`` that request, ``{area}`` its grid, ``{staff}`` its assignee, ``{dispatch}`` its dispatch to
``{department}``, ``{community}`` its community and ``{volunteer}`` a volunteer living there (the
request's match exists: volunteers were asked for). Placeholders in JSON bodies are filled too.
Anything else is a placeholder value that exists nowhere (404 once let in).
"""

from __future__ import annotations

from dataclasses import dataclass, field

ROLES = ("resident", "operator", "grid_worker", "supervisor", "department", "volunteer", "auditor", "admin")
PUBLIC = frozenset(ROLES) | {None}


@dataclass(frozen=True)
class Rule:
    allowed: frozenset  # roles let in (None in it: no token needed)
    scoped: frozenset = frozenset()  # of those, the ones limited to their area / their dispatches
    path: str = ""  # the concrete path to call when it differs from the route's (placeholders filled)
    query: dict = field(default_factory=dict)
    body: dict | None = None  # JSON body of POST/PUT/PATCH (default {}); Open311 sends a form instead
    form: dict | None = None
    refused: tuple[int, ...] = (401, 403)  # what a caller who is not let in gets
    district_only: bool = False  # any area scope is refused, the request's own area too
    after_audit: bool = False  # call once audit has seen the request (its area check needs it)


def allow(*roles: str, scoped: tuple[str, ...] = (), **kw) -> Rule:
    return Rule(frozenset(roles) | {"admin"}, frozenset(scoped), **kw)


def public(**kw) -> Rule:
    return Rule(PUBLIC, **kw)


#: the operational routes every service has
COMMON = {
    "GET /openapi.json": public(), "GET /docs": public(), "MOUNT /docs/static": public(path="/docs/static/favicon.png"),
    "GET /health/live": public(), "GET /health/ready": public(), "GET /metrics": public(),
    "GET /calendar": public(),  # the working calendar this process computes deadlines with
}
STAFF_READ = ("operator", "grid_worker", "supervisor", "department", "auditor")
OPEN311_KEY = "civicgrid-dev-open311-key"
MONTH = {"month": "2026-11"}

MATRIX: dict[str, dict[str, Rule]] = {
    "intake": {
        **COMMON,
        "POST /api/v1/requests": public(body={"service_code": "no_such_service"}),
        # staff read any request in their area; a resident needs the request's token (401 without)
        "GET /api/v1/requests/{request_id}": allow(*STAFF_READ, scoped=STAFF_READ, path="/api/v1/requests/{rid}"),
        "GET /api/v1/requests": allow(*STAFF_READ, scoped=STAFF_READ, query={"area": "{area}"}),
        # an operator records what a resident says on the phone; anyone else needs the request's token
        "POST /api/v1/requests/{request_id}/rating": allow(
            "operator", path="/api/v1/requests/{rid}/rating", body={"rating": "satisfied"}, refused=(404,)),
        "POST /api/v1/requests/{request_id}/erasure": allow("operator", path="/api/v1/requests/{rid}/erasure",
                                                            refused=(404,)),
        "POST /api/v1/requests/{request_id}/unmerge": allow(
            "operator", "grid_worker", "supervisor", scoped=("operator", "grid_worker", "supervisor"),
            path="/api/v1/requests/{rid}/unmerge", body={"reason": "authorization matrix"}),
        "GET /api/v1/requests/{request_id}/contact": allow(
            "operator", "grid_worker", "supervisor", scoped=("operator", "grid_worker", "supervisor"),
            path="/api/v1/requests/{rid}/contact", query={"reason": "authorization matrix"}),
        "GET /api/v1/requests/{request_id}/contact-access-log": allow("supervisor", "auditor",
                                                                      path="/api/v1/requests/{rid}/contact-access-log"),
        "GET /api/v1/calendar": public(), "GET /api/v1/calendar/{year}": public(path="/api/v1/calendar/2026"),
        "PUT /api/v1/calendar/{year}": allow(path="/api/v1/calendar/2199"),  # admin only ({} is refused: 422)
        # admin only; an empty batch is refused (422) once let in, so the matrix imports nothing
        "POST /api/v1/imports/requests": allow(body={"system": "authz-matrix", "items": []}),
        "GET /api/v1/services": public(),
        "GET /api/v1/services/{code}": public(path="/api/v1/services/public_facility"),
        "POST /api/v1/services": allow(),
        "PUT /api/v1/services/{code}": allow(path="/api/v1/services/no_such_service"),
        "DELETE /api/v1/services/{code}": allow(path="/api/v1/services/no_such_service"),
        "POST /api/v1/services/{code}/reactivate": allow(path="/api/v1/services/no_such_service/reactivate"),
        # Open311: public, its POST identified by the client's api_key
        "GET /open311/v2/discovery.{fmt}": public(path="/open311/v2/discovery.json"),
        "GET /open311/v2/services.{fmt}": public(path="/open311/v2/services.json"),
        "GET /open311/v2/services/{service_code}.{fmt}": public(path="/open311/v2/services/public_facility.json"),
        "POST /open311/v2/requests.{fmt}": public(path="/open311/v2/requests.json",
                                                  form={"api_key": OPEN311_KEY, "service_code": "no_such_service"}),
        "GET /open311/v2/requests.{fmt}": public(path="/open311/v2/requests.json"),
        "GET /open311/v2/requests/{request_id}.{fmt}": public(path="/open311/v2/requests/no-such-request.json"),
        "GET /open311/v2/tokens/{token}.{fmt}": public(path="/open311/v2/tokens/no-such-token.json"),
    },
    "grid": {
        **COMMON,
        "GET /v1/map": public(), "GET /v1/map/locate": public(query={"address": "nowhere"}),
        "GET /v1/map/buildings": public(query={"limit": "1"}), "GET /v1/map/grids": public(query={"limit": "1"}),
        "GET /v1/map/export": public(query={"area": "9"}), "GET /v1/map/areas": public(),
        "POST /v1/map/import": allow(),
        "GET /v1/map/versions": allow("supervisor"),
        "POST /v1/map/versions/{version}/activate": allow(path="/v1/map/versions/999999/activate"),
        "GET /v1/queue": allow("grid_worker", "supervisor", "department"),
        "GET /v1/queues/{staff_id}": allow("supervisor", scoped=("supervisor",), path="/v1/queues/{staff}"),
        # a department reaches only requests dispatched to it; grid workers and supervisors their area
        "GET /v1/requests/{rid}": allow("grid_worker", "supervisor", "department", "auditor",
                                        scoped=("grid_worker", "supervisor", "department", "auditor"),
                                        path="/v1/requests/{rid}"),
        "POST /v1/requests/{rid}/accept": allow("grid_worker", "supervisor", scoped=("grid_worker", "supervisor"),
                                                path="/v1/requests/{rid}/accept"),
        "POST /v1/requests/{rid}/notes": allow("grid_worker", "supervisor", scoped=("grid_worker", "supervisor"),
                                               path="/v1/requests/{rid}/notes", body={"note": "authorization matrix"}),
        "POST /v1/requests/{rid}/volunteers": allow("grid_worker", "supervisor", path="/v1/requests/{rid}/volunteers",
                                                    body={"needed_hours": 0}),
        "POST /v1/requests/{rid}/whistle": allow("grid_worker", "supervisor", path="/v1/requests/{rid}/whistle"),
        "POST /v1/requests/{rid}/transfer": allow("grid_worker", "supervisor", path="/v1/requests/{rid}/transfer"),
        "POST /v1/requests/{rid}/resolve": allow("grid_worker", "supervisor", path="/v1/requests/{rid}/resolve"),
        "POST /v1/requests/{rid}/reject": allow("grid_worker", "supervisor", path="/v1/requests/{rid}/reject"),
        "POST /v1/requests/{rid}/reassign": allow("supervisor", path="/v1/requests/{rid}/reassign"),
        "POST /v1/requests/{rid}/dispatches/{dispatch_id}/acknowledge": allow(
            "department", scoped=("department",), path="/v1/requests/{rid}/dispatches/{dispatch}/acknowledge"),
        "POST /v1/requests/{rid}/dispatches/{dispatch_id}/report": allow(
            "department", path="/v1/requests/{rid}/dispatches/{dispatch}/report"),
        "GET /v1/staff/{staff_id}": allow("grid_worker", "supervisor", scoped=("grid_worker", "supervisor"),
                                          path="/v1/staff/{staff}"),
        "PUT /v1/staff/{staff_id}/duty": allow("supervisor", scoped=("supervisor",), path="/v1/staff/{staff}/duty",
                                               body={"duty": "on"}),
        # the roster: supervisors read their area's posts and staff, administrators change them; a
        # staff member reads the posts they hold (or, scoped, their area's people's) and sets their own duty
        "GET /v1/roster/posts": allow("supervisor", scoped=("supervisor",), query={"area": "{area}"}),
        "PUT /v1/roster/posts/{post_id}": allow(path="/v1/roster/posts/no-such-post"),
        "GET /v1/roster/staff": allow("supervisor", scoped=("supervisor",), query={"area": "{area}"}),
        "POST /v1/roster/staff": allow(),
        "PUT /v1/roster/staff/{staff_id}": allow(path="/v1/roster/staff/no-such-staff"),
        "GET /v1/staff/{staff_id}/posts": allow("grid_worker", "supervisor", scoped=("grid_worker", "supervisor"),
                                                path="/v1/staff/{staff}/posts"),
        "PUT /v1/me/duty": allow("grid_worker", "supervisor", body={"duty": "on"}),
        "GET /v1/departments": public(),
    },
    "matching": {
        **COMMON,
        # the registry is area-limited (docs/adr/0701): a scoped caller reaches the volunteers living in
        # their area (a grid worker's: their grid's community) and registers only there; the request's
        # match is its area's. Lists, reports and the preview's candidates are narrowed, never refused;
        # hours entries are the area's of their request (tested on the fakes: the matrix has none).
        "POST /volunteers": allow("supervisor", "grid_worker", scoped=("supervisor", "grid_worker"),
                                  body={"id": "{volunteer}", "name": "Matrix Volunteer", "community": "{community}",
                                        "lat": 39.9, "lon": 116.3, "on_duty": False}),  # 409 once let in
        "GET /volunteers": allow("supervisor", "grid_worker", scoped=("supervisor", "grid_worker"),
                                 query={"community": "{community}", "limit": "1"}),
        "GET /volunteers/{vid}": allow("supervisor", "grid_worker", scoped=("supervisor", "grid_worker"),
                                       path="/volunteers/{volunteer}"),
        "PATCH /volunteers/{vid}": allow("supervisor", "grid_worker", scoped=("supervisor", "grid_worker"),
                                         path="/volunteers/{volunteer}"),
        "POST /volunteers/{vid}/qualifications": allow("supervisor", "grid_worker",
                                                       scoped=("supervisor", "grid_worker"),
                                                       path="/volunteers/{volunteer}/qualifications",
                                                       body={"code": "authz_matrix"}),
        "GET /volunteers/{vid}/certificate": allow("supervisor", "grid_worker", scoped=("supervisor", "grid_worker"),
                                                   path="/volunteers/{volunteer}/certificate"),
        "GET /volunteers/{vid}/hours": allow("supervisor", "grid_worker", scoped=("supervisor", "grid_worker"),
                                             path="/volunteers/{volunteer}/hours"),
        "GET /matches/{request_id}": allow("supervisor", "grid_worker", scoped=("supervisor", "grid_worker"),
                                           path="/matches/{rid}"),
        "POST /matches/{request_id}/no-show": allow("supervisor", "grid_worker", scoped=("supervisor", "grid_worker"),
                                                    path="/matches/{rid}/no-show"),  # 404 once let in: no winner
        "POST /match/preview": allow("supervisor", "grid_worker"),
        "POST /hours/{entry_id}/approve": allow("supervisor", "grid_worker", path="/hours/no-such-entry/approve"),
        "POST /hours/{entry_id}/correct": allow("supervisor", "grid_worker", path="/hours/no-such-entry/correct"),
        "GET /reports/service-times": allow("supervisor", "grid_worker", "auditor", query=MONTH),
        "GET /reports/work-units": allow("supervisor", "grid_worker"),
        "GET /reports/work-units/{unit}": allow("supervisor", "grid_worker", path="/reports/work-units/nowhere",
                                                query=MONTH),
        # a volunteer's own record, offers and assignments (the token's subject is the volunteer)
        "GET /me": allow("volunteer"), "GET /me/offers": allow("volunteer"), "GET /me/hours": allow("volunteer"),
        "POST /me/offers/{offer_id}/accept": allow("volunteer", path="/me/offers/no-such-offer/accept"),
        "POST /me/offers/{offer_id}/decline": allow("volunteer", path="/me/offers/no-such-offer/decline"),
        "POST /me/assignments/{request_id}/check-in": allow("volunteer", path="/me/assignments/nothing/check-in"),
        "POST /me/assignments/{request_id}/check-out": allow("volunteer", path="/me/assignments/nothing/check-out"),
        "POST /me/assignments/{request_id}/complete": allow("volunteer", path="/me/assignments/nothing/complete"),
    },
    "audit": {
        **COMMON,
        "GET /requests/{request_id}/timeline": allow("supervisor", "auditor", "grid_worker",
                                                     scoped=("supervisor", "auditor", "grid_worker"),
                                                     path="/requests/{rid}/timeline", after_audit=True),
        # the caller's own area is what these list: a scope narrows the answer, it never refuses
        "GET /supervision/overdue": allow("supervisor", "auditor"),
        "GET /supervision/escalated": allow("supervisor", "auditor"),
        "GET /kpis": allow("supervisor", "auditor", scoped=("supervisor", "auditor"),
                           query={"dimension": "grid", "key": "{area}", "from": "2026-11-01", "to": "2026-11-30"}),
        # the evaluation spans the district: any narrower scope is refused
        "GET /evaluations/{quarter}": allow("supervisor", "auditor", scoped=("supervisor", "auditor"),
                                            path="/evaluations/2026Q4", district_only=True),
        "GET /audit/logs": allow("auditor"),
        "GET /audit/logs/{log}/verify": allow("auditor", path="/audit/logs/no-such-log/verify"),
        "GET /audit/events/{event_id}/proof": allow("auditor", path="/audit/events/no-such-event/proof"),
        "POST /audit/checkpoints": allow("auditor"),
        # who read residents' contact details and changed what: the auditors' view
        "GET /audit/staff-access": allow("auditor", query={"request_id": "{rid}"}),
    },
}
