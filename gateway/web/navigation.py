"""What each role finds in the pages' menu: (label, path) in the order shown. The one place
a page is linked from; a page a role may not use is not offered (and refused if asked)."""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

from domain.taxonomy import Role

Link = tuple[str, str]

_HOME: Final[Link] = ("我的工作", "/")
_LEDGER: Final[Link] = ("线索台账", "/ledger")

NAVIGATION: Final[MappingProxyType[Role, tuple[Link, ...]]] = MappingProxyType(
    {
        Role.REPORTER: (_HOME, ("报告线索", "/clues/new"), _LEDGER),
        Role.COORDINATOR: (_HOME, ("报告线索", "/clues/new"), _LEDGER),
        Role.SUPERVISOR: (_HOME, _LEDGER),
        Role.UNIT_MEMBER: (_HOME, ("本单位任务", "/inbox")),
        Role.INVESTIGATOR: (_HOME, ("倒查工作台", "/investigations")),
        Role.COMPLIANCE_AUDITOR: (
            _HOME,
            ("合规发现", "/compliance"),
            ("紧急查阅复核", "/compliance/break-glass"),
            ("查阅记录查询", "/compliance/disclosures"),
            ("查阅记录报表", "/compliance/accesses"),
            ("年度审计报告", "/compliance/annual"),
        ),
        Role.ADMIN: (_HOME, ("用户管理", "/admin/users")),
        Role.COUNTY_LEAD: (_HOME, ("倒查工作台", "/investigations")),
    }
)


def navigation_for(role: Role) -> tuple[Link, ...]:
    return NAVIGATION.get(role, (_HOME,))
