"""Every label and message of the console in Simplified Chinese (the default) and English, and
dates in the office's time zone.

A small catalogue in code rather than gettext files: the console has a few hundred strings, both
languages are kept side by side (a missing one is a failing unit test, not a fallback at run time),
and nothing needs compiling.
"""

from __future__ import annotations

from datetime import datetime, timezone
from functools import cache
from zoneinfo import ZoneInfo

import opencc

M: dict[str, tuple[str, str]] = {
    # ---- layout
    "app.name": ("城市网格服务台", "civicgrid console"),
    "nav.skip": ("跳到正文", "Skip to content"),
    "nav.home": ("首页", "Home"),
    "nav.report": ("我要反映", "Report a problem"),
    "nav.my_reports": ("我的反映", "My reports"),
    "nav.queue": ("我的工单", "My queue"),
    "nav.dispatches": ("派单", "Dispatches"),
    "nav.offers": ("志愿服务", "Volunteering"),
    "nav.supervise": ("督办", "Supervision"),
    "nav.kpis": ("考核指标", "KPIs"),
    "nav.evaluation": ("季度考评", "Quarterly evaluation"),
    "nav.audit": ("审计", "Audit"),
    "nav.admin": ("管理", "Administration"),
    "nav.signin": ("登录", "Sign in"),
    "nav.signout": ("退出", "Sign out"),
    "nav.language": ("语言", "Language"),
    "nav.switch_to": ("English", "中文"),
    "nav.signed_in_as": ("当前用户", "Signed in as"),
    "common.submit": ("提交", "Submit"),
    "common.save": ("保存", "Save"),
    "common.search": ("搜索", "Search"),
    "common.back": ("返回", "Back"),
    "common.none": ("暂无", "None"),
    "common.optional": ("选填", "optional"),
    "common.required": ("必填", "required"),
    "common.reason": ("原因", "Reason"),
    "common.status": ("状态", "Status"),
    "common.request": ("诉求", "Request"),
    "common.service": ("事项", "Service"),
    "common.grid": ("网格", "Grid"),
    "common.area": ("区域", "Area"),
    "common.when": ("时间", "When"),
    "common.who": ("操作人", "Who"),
    "common.details": ("详情", "Details"),
    "common.open": ("打开", "Open"),
    "common.hours": ("小时", "hours"),
    "common.yes": ("是", "Yes"),
    "common.no": ("否", "No"),
    "common.count": ("数量", "Count"),
    "common.level": ("层级", "Level"),
    # ---- errors
    "error.title": ("出错了", "Something went wrong"),
    "error.api": ("{service} 服务答复：{title}", "The {service} service answered: {title}"),
    "error.unavailable": ("{service} 服务暂时无法访问，请稍后再试。", "The {service} service cannot be reached; try again shortly."),
    "error.unexpected": ("系统出现意外错误，已记录。请稍后再试。", "An unexpected error happened and was logged. Please try again."),
    "error.csrf": ("表单已过期或来源不明，请刷新页面后重试。", "The form expired or did not come from this site; reload the page and try again."),
    "error.signin_required": ("请先登录。", "Please sign in first."),
    "error.forbidden": ("您的角色不能打开此页面。", "Your role cannot open this page."),
    "error.not_found": ("找不到该页面。", "Page not found."),
    "error.field": ("{field}：{message}", "{field}: {message}"),
    "error.invalid_form": ("请检查填写的内容。", "Please check what you entered."),
    "error.status.401": ("需要登录或登录已过期", "Sign-in needed or expired"),
    "error.status.403": ("无权进行此操作", "Not allowed"),
    "error.status.404": ("找不到", "Not found"),
    "error.status.409": ("与当前状态冲突", "Conflicts with the current state"),
    "error.status.422": ("填写有误", "Invalid input"),
    "error.status.503": ("服务暂不可用", "Service unavailable"),
    # ---- sign-in
    "signin.title": ("登录", "Sign in"),
    "signin.dev_title": ("开发环境登录（演示账号）", "Development sign-in (demo accounts)"),
    "signin.dev_note": ("仅开发环境可用：选择一个演示人员，控制台会签发与各服务相同的开发令牌。",
                        "Development mode only: pick a demo person; the console mints the same development token "
                        "the services accept."),
    "signin.as": ("以此身份登录", "Sign in as this person"),
    "signin.custom": ("其他身份", "Someone else"),
    "signin.role": ("角色", "Role"),
    "signin.sub": ("人员编号", "Person id"),
    "signin.area": ("区域代码（留空为全区）", "Area code (empty: the whole district)"),
    "signin.unavailable": ("尚未配置登录方式。", "No sign-in method is configured."),
    "signin.done": ("已登录：{label}", "Signed in: {label}"),
    "signin.out": ("已退出。", "Signed out."),
    "role.resident": ("居民", "Resident"),
    "role.operator": ("接线员", "Operator"),
    "role.grid_worker": ("网格员", "Grid worker"),
    "role.supervisor": ("督办人员", "Supervisor"),
    "role.department": ("职能部门", "Department"),
    "role.volunteer": ("志愿者", "Volunteer"),
    "role.auditor": ("审计员", "Auditor"),
    "role.admin": ("管理员", "Administrator"),
    "demo.worker_a": ("网格员（A岗）", "Grid worker (post A)"),
    "demo.worker_b": ("网格员（B岗）", "Grid worker (post B)"),
    "demo.grid_head": ("网格长", "Grid head"),
    "demo.community": ("社区督办", "Community supervisor"),
    "demo.street": ("街道督办", "Street supervisor"),
    "demo.district": ("区督办", "District supervisor"),
    "demo.department": ("部门：{name}", "Department: {name}"),
    "demo.volunteer": ("志愿者 {name}", "Volunteer {name}"),
    "demo.auditor": ("审计员", "Auditor"),
    "demo.admin": ("街道管理员", "Street office administrator"),
    # ---- home
    "home.title": ("欢迎使用城市网格服务台", "Welcome to the civicgrid console"),
    "home.resident": ("发现问题？告诉我们，并随时查看办理进度。", "Seen a problem? Tell us, and follow what is done about it."),
    "home.staff": ("工作人员请登录后处理工单。", "Staff: sign in to work on requests."),
    # ---- resident
    "report.title": ("选择反映事项", "Choose what to report"),
    "group.care": ("关爱服务", "Care"),
    "group.community": ("社区事务", "Community"),
    "group.enforcement": ("执法监管", "Enforcement"),
    "group.environment": ("环境", "Environment"),
    "group.facilities": ("公共设施", "Facilities"),
    "group.general": ("其他", "General"),
    "group.property": ("物业", "Property"),
    "group.public_order": ("治安秩序", "Public order"),
    "group.registration": ("登记服务", "Registration"),
    "group.utilities": ("水电气暖", "Utilities"),
    "report.search_label": ("搜索事项（中文或英文）", "Search services (Chinese or English)"),
    "report.no_match": ("没有找到匹配的事项。", "No service matches."),
    "report.form_title": ("反映：{name}", "Report: {name}"),
    "report.where": ("位置", "Where"),
    "report.map_hint": ("在地图上点击放置位置，或填写楼栋编号或地址。", "Click the map to drop a pin, or give a building id or an address."),
    "report.map_label": ("选择位置的地图", "Map to choose the place"),
    "report.lat": ("纬度", "Latitude"),
    "report.lon": ("经度", "Longitude"),
    "report.building": ("楼栋编号", "Building id"),
    "report.address": ("地址", "Address"),
    "report.description": ("问题描述", "What is the problem?"),
    "report.questions": ("补充信息", "A few questions"),
    "report.contact": ("联系方式（选填，只有工作人员可见，加密保存）", "Contact (optional; only staff see it, stored encrypted)"),
    "report.name": ("姓名", "Name"),
    "report.phone": ("电话", "Phone"),
    "report.email": ("电子邮箱", "E-mail"),
    "report.send": ("提交反映", "Send the report"),
    "report.choose": ("请选择", "Choose"),
    "report.need_place": ("请在地图上放置位置，或填写楼栋编号或地址。", "Drop a pin on the map, or give a building id or an address."),
    "report.sent": ("已收到您的反映，编号 {rid}。请保存跟踪链接。", "Your report {rid} was received. Keep the tracking link."),
    "report.duplicate": ("附近已有人反映过同一问题——您已自动关注该诉求（共 {n} 位居民）。",
                         "Already reported nearby — you now follow that request ({n} residents)."),
    "report.follow_it": ("查看已有的诉求", "Follow the existing request"),
    "track.title": ("诉求 {rid}", "Request {rid}"),
    "track.link": ("跟踪链接（请保存）", "Tracking link (keep it)"),
    "track.expected": ("预计办结", "Expected by"),
    "track.received": ("受理时间", "Received"),
    "track.history": ("办理进度", "Progress"),
    "track.responsible": ("责任单位", "Responsible"),
    "track.merged": ("该诉求与已有诉求合并办理，当前状态：{status}", "This report joined an existing request, now: {status}"),
    "track.rate": ("评价办理结果", "Rate the result"),
    "track.comment": ("评价意见", "Comment"),
    "track.rated": ("感谢您的评价。", "Thank you for your rating."),
    "track.reopened": ("您不满意，诉求已重新办理。", "You were not satisfied: the request was reopened."),
    "track.my_title": ("我的反映", "My reports"),
    "track.none": ("本浏览器还没有提交过反映。", "No reports sent from this browser yet."),
    "rating.satisfied": ("满意", "Satisfied"),
    "rating.basically_satisfied": ("基本满意", "Basically satisfied"),
    "rating.unsatisfied": ("不满意", "Unsatisfied"),
    # ---- statuses
    "status.received": ("已受理", "Received"),
    "status.assigned": ("已派单", "Assigned"),
    "status.accepted": ("办理中", "Accepted"),
    "status.in_progress": ("办理中", "In progress"),
    "status.dispatched": ("已吹哨", "Dispatched"),
    "status.escalated": ("已升级", "Escalated"),
    "status.resolved": ("已办结", "Resolved"),
    "status.closed": ("已关闭", "Closed"),
    "status.rejected": ("不予受理", "Rejected"),
    "status.reopened": ("重新办理", "Reopened"),
    "status.merged": ("已合并", "Merged"),
    "status.transferred": ("已转办", "Transferred"),
    "status.rated": ("已评价", "Rated"),
    # ---- worker
    "queue.title": ("我的工单", "My queue"),
    "queue.empty": ("工单已全部处理。", "Nothing in your queue."),
    "queue.deadline": ("时限", "Deadline"),
    "queue.time_left": ("剩余时间", "Time left"),
    "queue.overdue_by": ("已超时 {t}", "{t} overdue"),
    "queue.left": ("剩 {t}", "{t} left"),
    "queue.count": ("共 {n} 件", "{n} items"),
    "post.title": ("我的岗位", "My post"),
    "post.duty": ("在岗状态", "Duty"),
    "post.load": ("当前工作量", "Load"),
    "duty.on": ("在岗", "On duty"),
    "duty.off": ("离岗", "Away"),
    "duty.leave": ("休假", "On leave"),
    "post.leave_until": ("休假至", "On leave until"),
    "post.cover": ("A岗不在时由B岗顶岗。", "When post A is away, post B covers."),
    "work.title": ("工单 {rid}", "Request {rid}"),
    "work.holder": ("岗位", "Post"),
    "work.assignee": ("承办人", "Assignee"),
    "work.due_response": ("响应时限", "Respond by"),
    "work.due_resolution": ("办结时限", "Resolve by"),
    "work.accept": ("接单", "Accept"),
    "work.note": ("备注", "Note"),
    "work.add_note": ("添加备注", "Add a note"),
    "work.volunteers": ("请求志愿者", "Ask for volunteers"),
    "work.needed_from": ("需要时间", "Needed from"),
    "work.needed_hours": ("时长（小时）", "Hours"),
    "work.whistle": ("吹哨（派给职能部门）", "Whistle departments"),
    "work.departments": ("部门", "Departments"),
    "work.report_back_hours": ("报告时限（小时，选填）", "Report back within (hours, optional)"),
    "work.transfer": ("转办到其他网格", "Transfer to another grid"),
    "work.to_grid": ("目标网格代码（15位）", "Grid code (15 digits)"),
    "work.resolve": ("办结", "Resolve"),
    "work.resolution_note": ("办结说明", "What was done"),
    "work.reject": ("不予受理", "Reject"),
    "work.reassign": ("改派", "Reassign"),
    "work.to_staff": ("改派给（人员编号）", "Reassign to (staff id)"),
    "work.notes": ("备注记录", "Notes"),
    "work.dispatches": ("派单（吹哨）", "Dispatches (whistles)"),
    "work.done": ("已完成：{action}", "Done: {action}"),
    "work.resident_said": ("居民描述", "The resident's description"),
    "work.attention": ("注意", "Attention"),
    # ---- department
    "dept.title": ("派给本部门的诉求", "Requests dispatched to my department"),
    "dept.report_by": ("报告时限", "Report back by"),
    "dept.acknowledge": ("签收", "Acknowledge"),
    "dept.report": ("报告结果", "Report back"),
    "dept.outcome": ("处理结果", "Outcome"),
    "dept.state": ("本部门状态", "My department's state"),
    # ---- volunteer
    "vol.title": ("志愿服务", "Volunteering"),
    "vol.offers": ("待确认的服务邀请", "Offers waiting for you"),
    "vol.no_offers": ("暂无邀请。", "No offers right now."),
    "vol.why": ("为什么选我", "Why me"),
    "vol.when": ("服务时间", "When"),
    "vol.distance": ("距离", "Distance"),
    "vol.accept": ("接受", "Accept"),
    "vol.decline": ("婉拒", "Decline"),
    "vol.bookings": ("我的服务", "My bookings"),
    "vol.check_in": ("签到", "Check in"),
    "vol.check_out": ("签退", "Check out"),
    "vol.hours": ("我的服务时长", "My hours"),
    "vol.total_hours": ("累计 {h} 小时", "{h} hours in all"),
    "vol.checked_in": ("签到时间", "Checked in"),
    "vol.checked_out": ("签退时间", "Checked out"),
    "vol.accepted": ("已接受邀请。", "Offer accepted."),
    "vol.declined": ("已婉拒。", "Offer declined."),
    "vol.profile": ("我的资料", "My profile"),
    "vol.skills": ("技能", "Skills"),
    # ---- supervisor
    "sup.title": ("督办一张图", "Supervision at a glance"),
    "sup.map": ("区域地图（按超时和在办数着色）", "Area map (coloured by overdue and open)"),
    "sup.legend_overdue": ("有超时", "Overdue"),
    "sup.legend_open": ("有在办", "Open"),
    "sup.legend_clear": ("无", "Clear"),
    "sup.overdue": ("超时诉求", "Overdue"),
    "sup.escalated": ("已升级诉求", "Escalated"),
    "sup.late_by": ("超时（工作小时）", "Late (working hours)"),
    "sup.clock": ("时限类型", "Clock"),
    "sup.escalations": ("升级次数", "Escalations"),
    "sup.open_counts": ("在办 {open}，超时 {overdue}", "{open} open, {overdue} overdue"),
    "sup.grid_requests": ("网格 {grid} 的诉求", "Requests of grid {grid}"),
    "kpi.title": ("考核指标", "KPIs"),
    "kpi.dimension": ("维度", "Dimension"),
    "kpi.key": ("代码", "Key"),
    "kpi.from": ("起始日期", "From"),
    "kpi.to": ("截止日期", "To"),
    "kpi.show": ("查看", "Show"),
    "kpi.received": ("受理量", "Received"),
    "kpi.resolved": ("办结量", "Resolved"),
    "kpi.overdue": ("超时量", "Overdue"),
    "kpi.escalations": ("升级次数", "Escalations"),
    "kpi.unsatisfied": ("不满意", "Unsatisfied"),
    "kpi.response_rate": ("响应率", "Response rate"),
    "kpi.resolution_rate": ("办结率", "Resolution rate"),
    "kpi.satisfaction_rate": ("满意率", "Satisfaction rate"),
    "kpi.response_on_time_rate": ("按时响应率", "On-time response"),
    "kpi.resolution_on_time_rate": ("按时办结率", "On-time resolution"),
    "kpi.reopen_rate": ("重办率", "Reopen rate"),
    "kpi.median_handling_hours": ("办理时长中位数（小时）", "Median handling (hours)"),
    "kpi.p90_handling_hours": ("办理时长P90（小时）", "Handling p90 (hours)"),
    "kpi.rates_chart": ("各项比率", "Rates"),
    "kpi.counts_chart": ("数量", "Counts"),
    "dim.all": ("全部", "All"),
    "dim.district": ("区", "District"),
    "dim.street": ("街道", "Street"),
    "dim.community": ("社区", "Community"),
    "dim.grid": ("网格", "Grid"),
    "dim.staff": ("人员", "Staff"),
    "dim.property": ("物业公司", "Property company"),
    "dim.service": ("事项", "Service"),
    "dim.department": ("部门", "Department"),
    "eval.title": ("季度考评", "Quarterly evaluation"),
    "eval.quarter": ("季度（如 2026Q4）", "Quarter (e.g. 2026Q4)"),
    "eval.rank": ("排名", "Rank"),
    "eval.csv": ("导出CSV", "Export CSV"),
    "eval.empty": ("该季度暂无数据。", "No figures for this quarter."),
    # ---- auditor
    "audit.title": ("审计", "Audit"),
    "audit.timeline": ("诉求时间线", "Request timeline"),
    "audit.rid": ("诉求编号", "Request id"),
    "audit.as_of": ("截至时间（北京时间）", "As of (office time)"),
    "audit.as_of_note": ("显示截至 {t} 的状态。", "Showing the state as of {t}."),
    "audit.event": ("事件", "Event"),
    "audit.logs": ("审计日志校验", "Log verification"),
    "audit.log": ("日志", "Log"),
    "audit.size": ("记录数", "Records"),
    "audit.verified": ("完整", "Intact"),
    "audit.broken": ("异常", "Broken"),
    "audit.checkpoint": ("最新签名检查点", "Latest signed checkpoint"),
    "audit.proof": ("事件包含证明", "Inclusion proof of an event"),
    "audit.event_id": ("事件编号", "Event id"),
    "audit.state": ("状态", "State"),
    # ---- admin
    "admin.title": ("管理", "Administration"),
    "admin.catalogue": ("服务清单", "Service catalogue"),
    "admin.code": ("代码", "Code"),
    "admin.name_zh": ("中文名称", "Chinese name"),
    "admin.name_en": ("英文名称", "English name"),
    "admin.group": ("分组", "Group"),
    "admin.handled_by": ("承办", "Handled by"),
    "admin.response_hours": ("响应时限（小时）", "Response limit (hours)"),
    "admin.resolution_hours": ("办结时限（小时）", "Resolution limit (hours)"),
    "admin.calendar": ("计时方式", "Clock"),
    "admin.active": ("启用", "Active"),
    "admin.saved": ("已保存。", "Saved."),
    "admin.map": ("网格地图", "Grid map"),
    "admin.map_file": ("GeoJSON 文件", "GeoJSON file"),
    "admin.import": ("校验并导入（暂不启用）", "Validate and import (not activated)"),
    "admin.defects": ("校验发现 {n} 处问题，未做任何改动：", "Validation found {n} defects; nothing was changed:"),
    "admin.defect_map": ("问题所在位置", "Where the defects are"),
    "admin.imported": ("已导入版本 {v}（未启用）。", "Imported version {v} (not active)."),
    "admin.versions": ("地图版本", "Map versions"),
    "admin.version": ("版本", "Version"),
    "admin.current": ("当前", "current"),
    "admin.activate": ("启用此版本", "Activate this version"),
    "admin.activated": ("已启用版本 {v}。", "Version {v} is now active."),
    "admin.departments": ("职能部门", "Departments"),
    "admin.enforces": ("负责事项", "Enforces"),
    "admin.roster": ("人员与A/B岗", "Staff and A/B posts"),
    "admin.staff_id": ("人员编号", "Staff id"),
    "admin.look_up": ("查询", "Look up"),
    "admin.calendar_page": ("工作日历", "Working calendar"),
    "admin.calendar_pending": ("工作日历接口尚在开发中。", "The working calendar's API is not available yet."),
    "defect.structure": ("结构错误", "Structure"),
    "defect.invalid_geometry": ("几何无效", "Invalid geometry"),
    "defect.duplicate_code": ("代码重复", "Duplicate code"),
    "defect.unknown_parent": ("上级不存在", "Unknown parent"),
    "defect.outside_parent": ("超出上级范围", "Outside its parent"),
    "defect.overlap": ("区域重叠", "Overlap"),
    "defect.gap": ("区域缝隙", "Gap"),
    "defect.building_outside_grid": ("楼栋不在网格内", "Building outside any grid"),
    "defect.feature": ("要素 #{n}", "Feature #{n}"),
    # ---- time
    "time.minutes": ("{n}分钟", "{n} min"),
    "time.hours": ("{h}小时{m}分", "{h} h {m} min"),
    "time.days": ("{d}天{h}小时", "{d} d {h} h"),
}


def t(lang: str, key: str, **kw: object) -> str:
    """The message ``key`` in ``lang`` ('zh' or 'en'), with ``{placeholders}`` filled."""
    zh, en = M[key]
    text = en if lang == "en" else zh
    return text.format(**kw) if kw else text


def has(key: str) -> bool:
    return key in M


def status_label(lang: str, status: str | None) -> str:
    return t(lang, f"status.{status}") if status and has(f"status.{status}") else (status or "")


def as_datetime(value: str | datetime | None) -> datetime | None:
    if not value:  # None, "", or a template's undefined field
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def local_time(value: str | datetime | None, tz: ZoneInfo) -> str:
    """A moment as the office reads it: ``2026-12-02 16:40`` in its time zone."""
    dt = as_datetime(value)
    return dt.astimezone(tz).strftime("%Y-%m-%d %H:%M") if dt else ""


def duration(lang: str, seconds: float) -> str:
    minutes = int(abs(seconds) // 60)
    if minutes < 60:
        return t(lang, "time.minutes", n=minutes)
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return t(lang, "time.hours", h=hours, m=minutes)
    days, hours = divmod(hours, 24)
    return t(lang, "time.days", d=days, h=hours)


@cache
def _to_simplified() -> opencc.OpenCC:
    return opencc.OpenCC("t2s")


def simplified(text: str) -> str:
    """Chinese text in Simplified characters: the catalogue's names may be written in Traditional,
    while the console is zh-CN and residents type Simplified (a search for 环境 finds 環境衛生)."""
    return _to_simplified().convert(text) if text else text
