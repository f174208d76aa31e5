"""Whose records a staff member reaches: the registry is area-limited (docs/adr/0701).

A staff token carries an area code prefix (codes nest: district(6) + street(3) + community(3) +
grid(3)); ``""`` and the admin role reach the whole district. A volunteer lives in a community
(``Volunteer.community``), a match and its hours entries are about a request located in one
(``Visit.community``, ``HoursEntry.community``). A scope finer than a community -- a grid worker's
grid -- reaches the volunteers of the community the grid lies in: the community is the finest
level a volunteer is placed at, and a grid worker registers and looks after the volunteers there.

A record outside the scope is refused with 403 (``OutsideArea``), as grid answers a request
outside a worker's area; one that does not exist is 404 either way. Lists and reports are
narrowed to the scope, never refused.
"""

from __future__ import annotations

from dataclasses import dataclass

from civicgrid_matching.domain.errors import OutsideArea

#: district(6) + street(3) + community(3): the length of a community's area code
COMMUNITY_CODE_LENGTH = 12


@dataclass(frozen=True)
class AreaScope:
    #: area code prefix a community code must start with; "" = the whole district
    prefix: str = ""

    @classmethod
    def of(cls, role: str, area: str) -> AreaScope:
        """The scope of a staff member with ``role`` and token area ``area``."""
        if role == "admin":
            return DISTRICT
        return cls(area[:COMMUNITY_CODE_LENGTH])

    @property
    def district_wide(self) -> bool:
        return self.prefix == ""

    def covers(self, community: str | None) -> bool:
        """Whether a record placed in ``community`` is within reach (an unplaced one: district-wide only)."""
        return self.district_wide or (bool(community) and community.startswith(self.prefix))

    def require(self, community: str | None, what: str) -> None:
        if not self.covers(community):
            raise OutsideArea(f"{what} is in community {community!r}, outside your area {self.prefix!r}")


DISTRICT = AreaScope()
