"""Impersonation: a request made as another user (``kubectl --as=bob --as-group=devs``,
the ``Impersonate-User``, ``Impersonate-Group``, ``Impersonate-Uid`` and
``Impersonate-Extra-<key>`` headers).

Rules of this file (Kubernetes' impersonation filter):

- The requester must be allowed the ``impersonate`` verb on each thing it takes on:
  ``users`` (or ``serviceaccounts`` in their namespace, for a
  ``system:serviceaccount:<ns>:<name>`` user) by name, ``groups`` by name,
  ``authentication.k8s.io`` ``uids`` and ``userextras/<key>`` by value. Any refusal
  is the 403 of that check, and the request goes no further.
- Groups or extras without a user is a 400.
- The impersonated user is in the groups asked for, plus ``system:authenticated``
  (``system:unauthenticated`` for ``system:anonymous``; for a service account, if no
  groups were asked for, ``system:serviceaccounts`` and its namespace's group), as if
  it had authenticated.
"""

from __future__ import annotations

from typing import Any

from . import _errors as errors
from ._rbac import ALL_AUTHENTICATED, Attributes, Authorizer, UserInfo, Verdict

AUTHN = "authentication.k8s.io"
SERVICE_ACCOUNT = "system:serviceaccount:"


def impersonate(requester: UserInfo, asked: dict[str, Any], authorizer: Authorizer) -> UserInfo:
    """The user the request is made as (see the module rules)."""
    name = str(asked.get("user") or "")
    groups = [str(g) for g in asked.get("groups") or ()]
    uid = str(asked.get("uid") or "")
    extra = {str(k): [str(v) for v in vs] for k, vs in (asked.get("extra") or {}).items()}
    if not name:
        if groups or extra or uid:
            raise errors.bad_request(
                "requested impersonation of groups, a uid or extras without impersonating a user"
            )
        return requester
    namespace, _, account = name.removeprefix(SERVICE_ACCOUNT).partition(":")
    if name.startswith(SERVICE_ACCOUNT) and namespace and account and ":" not in account:
        _check(requester, authorizer, "", "serviceaccounts", account, namespace=namespace)
        # A service account's groups, unless the caller named the groups itself.
        implied = (
            [] if groups else ["system:serviceaccounts", f"system:serviceaccounts:{namespace}"]
        )
    else:  # a name that is no valid service account's is a user's
        _check(requester, authorizer, "", "users", name)
        implied = []
    for group in groups:
        _check(requester, authorizer, "", "groups", group)
    if uid:
        _check(requester, authorizer, AUTHN, "uids", uid)
    for key, values in extra.items():
        for value in values:
            _check(requester, authorizer, AUTHN, "userextras", value, subresource=key)
    implied.append(ALL_AUTHENTICATED if name != "system:anonymous" else "system:unauthenticated")
    all_groups = list(dict.fromkeys([*groups, *implied]))
    return UserInfo(name, uid, tuple(all_groups), extra)


def _check(requester: UserInfo, authorizer: Authorizer, group: str, resource: str, name: str,
           *, namespace: str = "", subresource: str = "") -> None:  # fmt: skip
    attrs = Attributes(requester, "impersonate", namespace=namespace, api_group=group,
                       resource=resource, subresource=subresource, name=name)  # fmt: skip
    decision = authorizer.authorize(attrs)
    if decision.verdict is not Verdict.ALLOW:
        raise errors.forbidden(requester.name, "impersonate", resource, group, namespace, name,
                               subresource, decision.reason)  # fmt: skip
