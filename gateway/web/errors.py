"""Error pages: what a page request that fails is answered, in Chinese.

Every problem the app answers (`gateway.http.problems.problem`) is, for a page's path, this
page instead of problem+json: the same status; a 401 (no session, an ended or expired one) is a
303 to `/signin` (the refusal was recorded by `current_actor` first); a 403 for a missing CSRF
token says to reload the page; a 422 names the fields (their Chinese labels, never a submitted
value, nor the code's own name). Proven by tests/web/test_pages_guarantees.py and
tests/web/test_web_review.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from fastapi import FastAPI, Request, Response
from fastapi.responses import RedirectResponse

from gateway.web.templating import render

SIGNIN_URL: Final = "/signin"

_TITLES: Final = {
    400: "请求无法读取",
    403: "无权进行此操作",
    404: "未找到，或您无权查看",
    405: "此页面不接受该操作",
    408: "提交超时，没有保存任何内容，请重试",
    409: "操作与当前状态冲突",
    410: "档案已依保存期限删除",  # issue 19: erased (crypto-shredding)
    413: "提交的内容过大",
    422: "填写有误",
    429: "操作过于频繁，请稍后再试",
    431: "请求头过大，请清除本站的浏览器数据后重试",
    503: "服务暂不可用，请稍后再试",
}
# The fields a page's path or query may hold, as the page names them: the error page names a
# field in Chinese (never by its code, never by what was submitted).
FIELD_LABELS: Final = {
    "case_id": "案件编号",
    "assignment_id": "任务编号",
    "investigation_id": "调查编号",
    "purpose": "查阅目的",
    "format": "报告格式",
    "as_of": "回看时刻",
    "csrf_token": "表单令牌",
    "X-CSRF-Token": "表单令牌",
}
_DETAILS: Final = {
    "csrf-failed": "页面已过期（缺少或不匹配的表单令牌）。请刷新页面后重新提交。",
    "not-permitted": "您的角色或单位不能进行此操作。",
    "purpose-not-allowed": "您的角色不能以此目的查阅。",
    "erased": "该档案已按保存期限规则删除，内容已无法读取；本次查阅已记录。",
}


def page_problem(
    request: Request,
    *,
    status: int,
    code: str,
    errors: Sequence[dict[str, str]] = (),
    headers: dict[str, str] | None = None,
) -> Response:
    """The page answering a problem on a page's path (see the module's docstring)."""
    if status == 401:
        return RedirectResponse(SIGNIN_URL, status_code=303)
    response = render(
        request,
        "error.html",
        {
            "status": status,
            "code": code,
            "heading": _TITLES.get(status, "出错了" if status < 500 else "服务出错"),
            "detail": _DETAILS.get(code, ""),
            "fields": list(dict.fromkeys(_field_label(e["field"]) for e in errors))[:20],
        },
        status=status,
        title=_TITLES.get(status, "出错了"),
    )
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _field_label(field: str) -> str:
    return (
        FIELD_LABELS.get(field) or FIELD_LABELS.get(field.split(".", maxsplit=1)[0]) or "提交的内容"
    )


def install_error_pages(app: FastAPI) -> None:
    app.state.page_problem = page_problem
