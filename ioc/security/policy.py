"""Who may do what: roles grant permissions; a user's area bounds where they apply.

This table is the whole policy. Routes name the permission they need
(:func:`ioc.api.auth.need`); the matrix test in ``tests/integration/test_access_matrix.py``
checks every route against it for every role, inside and outside the user's area.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    SUPERVISOR = "supervisor"
    OPERATOR = "operator"
    LEADER = "leader"  # read-only


class Perm(StrEnum):
    VIEW = "view"  # devices, alerts, statistics, the map and the wall (without pictures)
    ACT = "act"  # acknowledge, resolve, assign, add notes
    MAINTAIN = "maintain"  # start and end maintenance windows (they silence alerts)
    PICTURES = "pictures"  # camera thumbnails: personal data
    ADMIN = "admin"  # users, the audit log, reports of picture views


GRANTS: dict[Role, frozenset[Perm]] = {
    Role.ADMIN: frozenset(Perm),
    Role.SUPERVISOR: frozenset({Perm.VIEW, Perm.ACT, Perm.MAINTAIN, Perm.PICTURES}),
    Role.OPERATOR: frozenset({Perm.VIEW, Perm.ACT, Perm.PICTURES}),
    Role.LEADER: frozenset({Perm.VIEW}),
}


def allows(role: str, perm: Perm) -> bool:
    try:
        return perm in GRANTS[Role(role)]
    except ValueError:
        return False
