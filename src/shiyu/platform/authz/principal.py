"""The Principal: who is acting, in which role, over which jurisdiction 辖区."""

from __future__ import annotations

from dataclasses import dataclass, field

from shiyu.platform.authz.rules import role_can


@dataclass(frozen=True)
class GrantScope:
    role: str
    jurisdiction_code: str
    path: str


@dataclass(frozen=True)
class Principal:
    user_id: int | None
    username: str
    role: str
    unit_code: str | None
    grants: tuple[GrantScope, ...]
    request_id: str | None = None
    is_system: bool = False
    token_id: int | None = field(default=None, compare=False)

    def paths_for(self, action: str) -> tuple[str, ...]:
        """Subtree roots (materialised paths) where this principal may take ``action``."""
        return tuple(g.path for g in self.grants if role_can(g.role, action))

    def can(self, action: str) -> bool:
        return bool(self.paths_for(action))

    def can_at(self, action: str, path: str | None) -> bool:
        if path is None:
            return False
        return any(path.startswith(p) for p in self.paths_for(action))

    def overlaps(self, action: str, path: str) -> bool:
        """Whether the subtree at ``path`` shares anything with the jurisdiction: it lies
        inside a grant, or a grant lies inside it (a district filter for a town user)."""
        return any(path.startswith(p) or p.startswith(path) for p in self.paths_for(action))

    @classmethod
    def system(cls, name: str = "system", request_id: str | None = None) -> Principal:
        """The principal of CLI commands and jobs: every action over the whole tree."""
        return cls(
            user_id=None,
            username=name,
            role="admin",
            unit_code=None,
            grants=(GrantScope("admin", "*", "/"),),
            request_id=request_id,
            is_system=True,
        )
