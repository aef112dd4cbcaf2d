"""The review resources: questions a client asks the API server, answered on the spot
and never stored (``kubectl auth can-i``, ``kubectl auth whoami``, webhooks that
check tokens).

Rules of this file (authorization.k8s.io/v1 and authentication.k8s.io/v1):

- ``SelfSubjectAccessReview``: may I do this? ``SubjectAccessReview``: may this user
  (``spec.user``, ``groups``, ``uid``, ``extra``)? ``LocalSubjectAccessReview``: the
  same, in the namespace of the URL (its spec must name no other). The answer is the
  authorizer's, with RBAC's reason: ``status.allowed`` and, for an explicit denial,
  ``status.denied``.
- ``SelfSubjectRulesReview``: the rules that apply to me in ``spec.namespace``.
- ``SelfSubjectReview``: who am I. ``TokenReview``: whose token is this
  (``status.authenticated``, ``status.user``), for ``spec.audiences`` (default: the
  API server's): a token made for another audience (``kubectl create token
  --audience``) is reviewed for it, and ``status.audiences`` says which it is valid for.
- The answer is the request's object with its ``status`` filled, 201 as for a create.
"""

from __future__ import annotations

from typing import Any

from . import _errors as errors
from ._authn import Authenticator
from ._rbac import Attributes, Authorizer, UserInfo, Verdict
from ._registry import ResourceType


def answer(
    rt: ResourceType,
    namespace: str,
    body: dict,
    user: UserInfo,
    authorizer: Authorizer,
    authenticator: Authenticator,
) -> dict:
    """The reviewed object, its status filled (see the module rules)."""
    spec = body.get("spec") if isinstance(body.get("spec"), dict) else {}
    if rt.kind in ("SelfSubjectAccessReview", "SubjectAccessReview", "LocalSubjectAccessReview"):
        if rt.kind != "SelfSubjectAccessReview":
            user = _user_of(spec)
        if rt.kind == "LocalSubjectAccessReview":
            asked = (spec.get("resourceAttributes") or {}).get("namespace", namespace)
            if asked != namespace:
                raise errors.bad_request(
                    f"spec.resourceAttributes.namespace must match the namespace of the "
                    f"request: {namespace!r}"
                )
        status = _access(spec, user, authorizer)
    elif rt.kind == "SelfSubjectRulesReview":
        status = _rules(spec, user, authorizer)
    elif rt.kind == "SelfSubjectReview":
        status = {"userInfo": _user_info(user)}
    else:  # TokenReview
        status = _token(spec, authenticator)
    meta = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
    return {
        "kind": rt.kind,
        "apiVersion": rt.api_version,
        "metadata": meta,
        "spec": spec,
        "status": status,
    }


def _user_of(spec: dict) -> UserInfo:
    if not spec.get("user") and not spec.get("groups"):
        raise errors.bad_request("spec.user or spec.groups must be given")
    extra = spec.get("extra") if isinstance(spec.get("extra"), dict) else {}
    return UserInfo(
        str(spec.get("user", "")), str(spec.get("uid", "")), tuple(spec.get("groups") or ()), extra
    )


def _access(spec: dict, user: UserInfo, authorizer: Authorizer) -> dict[str, Any]:
    resource = spec.get("resourceAttributes")
    non_resource = spec.get("nonResourceAttributes")
    if isinstance(resource, dict) == isinstance(non_resource, dict):
        raise errors.bad_request(
            "exactly one of spec.resourceAttributes and spec.nonResourceAttributes must be given"
        )
    if isinstance(resource, dict):
        attrs = Attributes(
            user,
            str(resource.get("verb", "")),
            namespace=str(resource.get("namespace", "")),
            api_group=str(resource.get("group", "")),
            api_version=str(resource.get("version", "")),
            resource=str(resource.get("resource", "")),
            subresource=str(resource.get("subresource", "")),
            name=str(resource.get("name", "")),
        )
    else:
        attrs = Attributes(
            user,
            str(non_resource.get("verb", "")),
            resource_request=False,
            path=str(non_resource.get("path", "")),
        )
    decision = authorizer.authorize(attrs)
    status: dict[str, Any] = {"allowed": decision.verdict is Verdict.ALLOW}
    if decision.verdict is Verdict.DENY:
        status["denied"] = True
    if decision.reason:
        status["reason"] = decision.reason
    return status


def _rules(spec: dict, user: UserInfo, authorizer: Authorizer) -> dict[str, Any]:
    namespace = str(spec.get("namespace", ""))
    rules = authorizer.rules_for(user, namespace) if hasattr(authorizer, "rules_for") else []
    resource = [r for r in rules if "nonResourceURLs" not in r]
    non_resource = [
        {"verbs": r["verbs"], "nonResourceURLs": r["nonResourceURLs"]}
        for r in rules
        if "nonResourceURLs" in r
    ]
    return {"resourceRules": resource, "nonResourceRules": non_resource, "incomplete": False}


def _user_info(user: UserInfo) -> dict[str, Any]:
    info: dict[str, Any] = {"username": user.name, "groups": list(user.groups)}
    if user.uid:
        info["uid"] = user.uid
    if user.extra:
        info["extra"] = {k: list(v) for k, v in user.extra}
    return info


def _token(spec: dict, authenticator: Authenticator) -> dict[str, Any]:
    token = spec.get("token")
    if not isinstance(token, str) or not token:
        raise errors.bad_request("spec.token must be given")
    audiences = spec.get("audiences") or []
    if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
        raise errors.bad_request("spec.audiences must be a list of strings")
    try:
        user, matched = authenticator.review(token, audiences)
    except errors.ApiError:
        return {"authenticated": False, "error": "the token is not valid"}
    return {"authenticated": True, "user": _user_info(user), "audiences": matched}
