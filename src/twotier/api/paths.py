"""Where a request goes, as the app sees it: its path below the app's mount point.

Behind a proxy or API Gateway stage that mounts the app under a prefix, ASGI servers give
that prefix as ``root_path`` and keep it in ``path`` (as Starlette's routing expects). The hot
path and the access rules match the same path the routes do.
"""

from __future__ import annotations

from starlette.types import Scope


def app_path(scope: Scope) -> str:
    """The request's path without the app's ``root_path``, as Starlette's routing takes it:
    the root path is a prefix only where a ``/`` (or nothing) follows it (with a root path
    ``/a``, ``/admin/keys`` is ``/admin/keys``, not ``dmin/keys``)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if not root or not path.startswith(root):
        return path
    rest = path[len(root) :]
    if not rest:
        return "/"
    return rest if rest[0] == "/" else path
