"""Converge MLflow's auth database to the people list: accounts, passwords, kit roles.

Run by the image's entrypoint before the server starts (under the migration lock, so replicas
starting together converge one after the other). Accounts outside the kit's roles (made by
hand by an admin) are left alone; accounts holding a kit role that are no longer listed are
deleted: their runs and models stay, their login does not.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore

from .roles import ROLE_GRANTS, WORKSPACE, Account, mlflow_role_name

Grant = tuple[str, str, str]  # resource type, pattern, permission


@dataclass
class Report:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        parts = [f"{what} {', '.join(names)}" for what, names in vars(self).items() if names]
        return "; ".join(parts) or "no change"


def storable_grants(role: str) -> set[Grant]:
    """The role's grants that this MLflow can store. MLflow before 3.17 (an older release
    during an upgrade) knows fewer resource types, and there a grant on an experiment covers
    its runs, traces and logged models, one on a registered model its versions; it has no
    DENY either. The next start on a newer MLflow adds the rest."""
    from mlflow.server.auth import permissions

    return {
        (kind, "*", permission)
        for kind, permission in ROLE_GRANTS[role]
        if kind in permissions.VALID_RESOURCE_TYPES
        and permission in permissions.RESOURCE_GRANTABLE_PERMISSIONS
    }


def expressible(role: str) -> bool:
    """False when this MLflow can store none of a role's grants (the metrics role's DENYs
    before 3.17): its accounts would get the default permission, so they are not made."""
    return bool(storable_grants(role)) or not ROLE_GRANTS[role]


def _ensure_roles(store: SqlAlchemyStore) -> dict[str, int]:
    """Create the kit's roles with exactly their grants; return role name -> id."""
    existing = {role.name: role for role in store.list_roles([WORKSPACE])}
    ids: dict[str, int] = {}
    for role in ROLE_GRANTS:
        name = mlflow_role_name(role)
        found = existing.get(name) or store.create_role(name, WORKSPACE, "managed by mlops-kit")
        ids[role] = found.id
        have = {
            (p.resource_type, p.resource_pattern, p.permission): p.id
            for p in store.list_role_permissions(found.id)
        }
        want = storable_grants(role)
        for kind, pattern, permission in want - have.keys():
            store.add_role_permission(found.id, kind, pattern, permission)
        for key in have.keys() - want:
            store.remove_role_permission(have[key])
    return ids


def converge_admin(store: SqlAlchemyStore, name: str, password: str, report: Report) -> None:
    """The bootstrap admin exists, is an admin and has the mounted password. So a rotated
    admin secret takes effect at the next start, and an auth database restored from another
    environment (other secrets) opens with this one's."""
    if not store.has_user(name, use_primary=True):
        store.create_user(name, password, is_admin=True)
        report.created.append(name)
        return
    changed = False
    if not store.authenticate_user(name, password, use_primary=True):
        store.update_user(name, password=password)
        changed = True
    if not store.get_user(name).is_admin:
        store.update_user(name, is_admin=True)
        changed = True
    if changed:
        report.updated.append(name)


def converge(
    db_uri: str,
    accounts: list[Account],
    managed_roles: set[str],
    protected: set[str],
    admin: tuple[str, str] | None = None,
) -> Report:
    """Make the auth DB hold exactly ``accounts`` among the users of ``managed_roles``.

    A user holding one of the kit roles in ``managed_roles`` and not in ``accounts`` is
    deleted; ``protected`` names accounts that never are (the bootstrap admin). ``admin``
    (name, password): the bootstrap admin, converged first.
    """
    store = SqlAlchemyStore()
    store.init_db(db_uri)
    report = Report()
    if admin is not None:
        converge_admin(store, *admin, report)
    role_ids = _ensure_roles(store)
    kit_role_ids = set(role_ids.values())
    managed_ids = {role_ids[role] for role in managed_roles}
    report.skipped = [account.name for account in accounts if not expressible(account.role)]
    accounts = [account for account in accounts if account.name not in report.skipped]
    wanted = {account.name for account in accounts}
    for account in accounts:
        is_admin = account.role == "admin"
        if not store.has_user(account.name, use_primary=True):
            store.create_user(account.name, account.password, is_admin=is_admin)
            report.created.append(account.name)
        else:
            changed = False
            if not store.authenticate_user(account.name, account.password, use_primary=True):
                store.update_user(account.name, password=account.password)
                changed = True
            if store.get_user(account.name).is_admin != is_admin:
                store.update_user(account.name, is_admin=is_admin)
                changed = True
            if changed:
                report.updated.append(account.name)
        user_id = store.get_user(account.name).id
        held = {role.id for role in store.list_user_roles(user_id)} & kit_role_ids
        target = role_ids[account.role]
        if target not in held:
            store.assign_role_to_user(user_id, target)
            if account.name not in report.created:
                report.updated.append(account.name)
        for stale in held - {target}:
            store.unassign_role_from_user(user_id, stale)
    for user, roles in store.list_users_with_roles():
        managed = any(role.id in managed_ids for role in roles)
        if managed and user.username not in wanted and user.username not in protected:
            store.delete_user(user.username)
            report.removed.append(user.username)
    return report
