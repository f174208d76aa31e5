"""Grid's handlers: consumers' (``events``), staff actions (``commands``) and assignment
(``assigning``), over the context built in bootstrap (``context``)."""

from civicgrid_grid.domain.request import OPEN
from civicgrid_grid.handlers.assigning import decide_many, locate_request
from civicgrid_grid.handlers.commands import Commands
from civicgrid_grid.handlers.context import GridContext
from civicgrid_grid.handlers.events import (
    CRASH_AFTER_ASSIGNMENT,
    handle_catalogue,
    handle_requests,
    handle_supervision,
    handle_volunteers,
)
from civicgrid_grid.handlers.roster import RosterAdmin

__all__ = ["CRASH_AFTER_ASSIGNMENT", "OPEN", "Commands", "GridContext", "decide_many", "handle_catalogue",
           "handle_requests", "handle_supervision", "handle_volunteers", "locate_request", "RosterAdmin"]
