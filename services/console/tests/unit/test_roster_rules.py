"""The roster pages' own rules: the pickers' area, the bodies the forms send, grid's refusals by the
field they name and in the visitor's language, and who covers whom in words."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest
from starlette.datastructures import ImmutableMultiDict

from civicgrid_console.domain.roster import (
    FormErrors,
    duty_body,
    error_text,
    field_errors,
    my_post_text,
    picked,
    post_body,
    safe_back,
    serving_text,
)

TZ = ZoneInfo("Asia/Shanghai")
GRID = "110101001002003"


def test_the_pickers_name_one_consistent_area():
    assert picked("110101001", "110101001002", GRID).area == GRID
    assert picked("110101002", "110101001002", GRID).area == "110101002", "a changed street drops the rest"
    assert picked("110101001", "110101001003", GRID).area == "110101001003", "a changed community drops the grid"
    assert picked(grid=GRID) == picked("110101001", "110101001002", GRID), "a grid alone names its parents"
    assert picked(default="110101001002").area == "110101001002"
    assert picked("../etc", "x", "1").area == ""


def test_only_the_roster_page_is_a_way_back():
    assert safe_back("/admin/roster?street=110101001") == "/admin/roster?street=110101001"
    assert safe_back("https://elsewhere.example/") == "/admin/roster"
    assert safe_back("/admin/roster//x") == "/admin/roster"


def test_form_bodies():
    assert post_body(ImmutableMultiDict({"a": " s1 ", "b": "", "version": "3"})) == {"a": "s1", "b": None,
                                                                                   "version": 3}
    with pytest.raises(FormErrors) as exc:
        post_body(ImmutableMultiDict({"a": "s1", "version": "x"}))
    assert list(exc.value.errors) == ["version"]
    away = duty_body(ImmutableMultiDict({"duty": "off", "away_until": "2026-12-02T18:30", "leave_until": "2026-12-09",
                                         "version": "2"}), TZ)
    assert away == {"duty": "off", "away_until": "2026-12-02T18:30:00+08:00", "version": 2}, "office time"
    assert duty_body(ImmutableMultiDict({"duty": "leave", "leave_until": ""}), TZ) == {"duty": "leave",
                                                                                      "leave_until": None}
    with pytest.raises(FormErrors):
        duty_body(ImmutableMultiDict({"duty": "leave"}), TZ, own=True)  # leave is a supervisor's to grant


def test_grids_refusals_by_field_in_both_languages():
    errors = [{"field": "b", "message": "B must be a different person from A"},
              {"field": "lines/0", "message": "Input should be 'general' or 'care'"}]
    assert field_errors("zh", errors) == {"b": "B岗不能与A岗是同一人。", "lines": "Input should be 'general' or 'care'"}
    assert error_text("en", "s9 is not trained for the care line") == "Not trained for the care line."
    assert error_text("zh", "c1 is a supervisor; a grid post needs a grid_worker") == "网格岗位须由网格员担任。"


def test_who_covers_whom_in_words():
    post = {"a_id": "s1", "a": {"name": "张三"}, "b_id": "s2", "b": {"name": "李四"}, "serving": "B",
            "reason": "A on leave until 2026-12-09"}
    assert serving_text("en", post) == "B (李四 (s2)) covers for A (张三 (s1)): on leave until 2026-12-09."
    assert my_post_text("zh", post | {"as_holder": "B"}) == "您是B岗，正在为A岗 张三 (s1) 顶岗（休假至 2026-12-09）。"
    assert my_post_text("en", post | {"as_holder": "A"}) == "You are A; B (李四 (s2)) covers for you now (on leave until " \
                                                            "2026-12-09)."
    assert "chain" in serving_text("en", post | {"serving": "chain", "reason": "A off duty, B at load limit (20)"})
    assert serving_text("zh", post | {"serving": "chain", "reason": "A off duty, B at load limit (20)"}) == \
        "A、B岗都无法承接，由上级承接（A 离岗，B 工作量已满（20））。"
