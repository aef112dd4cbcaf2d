"""One API request, end to end: authenticate, authorize, resolve the resource, then
read from the cache or storage, or write through defaulting, admission and validation;
every request audited.

Rules of this file:

- The order is kube-apiserver's: authentication (401), authorization (403), request
  checks (404 unknown resource, 405 verb, 400 bad body), then for writes: defaulting,
  mutating admission, validation (422), validating admission, storage (404, 409).
- Every outcome is an ``ApiResponse``: errors are Kubernetes ``Status`` objects with
  their HTTP code. Nothing a client sends can raise out of ``handle``: an unexpected
  failure is a 500 with the exception's text, and the server goes on.
- Status and spec are written apart: an update of the main resource keeps the stored
  status, an update of the status subresource keeps everything but the status. A
  namespace's spec.finalizers change only through namespaces/finalize (update only),
  which changes everything but the status.
- A delete reads its DeleteOptions from the body, else from the query parameters
  (``delete_options``); the propagation policy reaches storage, which sets the garbage
  collector's finalizers (see ``_storage``).
- Watches and lists at resourceVersion "0" are served from the watch cache; other reads
  from etcd (linearizable).
- Until every watch cache has its first list, requests (but /healthz, /livez and
  /version) are 503 "starting": RBAC and authentication read those caches, and a
  server that answered from empty ones would refuse what it should allow (a restarted
  server reached over the transport before it is ready; HTTPS waits for it anyway).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

import attrs

from actorkube.actor import ActorRef
from actorkube.etcd import EtcdError

from . import _bodies as bodies
from . import _errors as errors
from . import _metricsapi as metricsapi
from . import _pdb as pdbs
from . import _remotecommand as remotecommand
from ._admission import AdmissionChain, AdmissionRequest
from ._apply import ApplyConflict, Versions, apply, disown_changed
from ._authn import DEFAULT_AUDIENCE, EXTENDED_TOKEN_SECONDS, EXTENSION_SECONDS, Authenticator
from ._builtin import keep_namespace_finalizers
from ._impersonation import impersonate
from ._kubeletclient import (
    LogsReply,
    PlainText,
    ask_kubelet,
    choose_container,
    kubelet_address,
    log_request,
)
from ._messages import ApiRequest, ApiResponse
from ._meta import generate_name, meta, rfc3339, with_meta
from ._metrics import ApiMetrics
from ._openapi import OpenApi
from ._portforward import PortForwardAccepted, PortForwardRequest
from ._printers import table
from ._rbac import Attributes, Authorizer, UserInfo
from ._registry import Registry, ResourceType, UnknownResource
from ._remotecommand import ExecAccepted, exec_request
from ._rest import accepts_aggregated, is_true, non_resource
from ._reviews import answer
from ._schema import TypeDef, builtin_schema
from ._selectors import FieldSelector, InvalidSelector, Selector, check_fields
from ._storage import ORPHAN_BY_DEFAULT, PROPAGATION_POLICIES, ObjectStore, parse_resource_version
from ._storagewatch import StorageWatcher
from ._validation import ErrorType, FieldError, Path
from ._watchcache import BOOKMARK, NOT_OLDER_THAN, Event, Filter, WatchCache, Watcher

log = logging.getLogger("actorkube.apiserver")


MAX_WARNINGS = 100
_ALWAYS = ("/healthz", "/livez", "/version")  # answered even while starting


EVICTION_RETRIES = 20  # Kubernetes' EvictionsRetry steps


class _PodMoved(Exception):
    """An eviction's own precondition failed: the pod changed since it was read."""

    def __init__(self, error: errors.ApiError) -> None:
        super().__init__(str(error))
        self.error = error


class Handler:
    """Serves ``ApiRequest``s (see the module rules). ``audit`` receives one JSON-ready
    audit event per request (Kubernetes' audit.k8s.io/v1 Event at level Metadata); None:
    no audit log, and no events built."""

    def __init__(
        self,
        *,
        registry: Registry,
        store: ObjectStore,
        caches: dict[tuple[str, str], WatchCache],
        authenticator: Authenticator,
        authorizer: Authorizer,
        admission: AdmissionChain,
        clock: Callable[[], float],
        audit: Callable[[dict], None] | None = None,
        address: str = "127.0.0.1:6443",
    ) -> None:
        self.registry = registry
        self.address = address  # what /api tells clients the server's address is
        self.metrics = ApiMetrics()
        self.store = store
        self.caches = caches
        self.authenticator = authenticator
        self.authorizer = authorizer
        self.admission = admission
        self.clock = clock
        self.audit = audit
        self.schema = builtin_schema()
        self.openapi = OpenApi(registry, self.schema)
        self._audit_ids = 0
        # Resolves a kubelet's server address (pods/log); set by whoever starts the
        # server, which knows the actor system.
        self.kubelets: Callable[[str], Any] | None = None
        # The metrics server, resolved for each request (metrics.k8s.io is served only
        # when it is set; see _metricsapi).
        self.resource_metrics: Callable[[], Any] | None = None
        self._synced = False

    def synced(self) -> bool:
        """Every watch cache has its first list (and so the server may answer)."""
        if not self._synced:
            self._synced = all(cache.ready.is_set() for cache in self.caches.values())
        return self._synced

    async def handle(self, req: ApiRequest) -> tuple[ApiResponse, Watcher | None]:
        """The response, and for a watch the cache watcher to pump events from."""
        received = self.clock()
        user = requester = None
        decision = None
        watcher = None
        warnings: list[str] = []
        try:
            if not self.synced() and req.path not in _ALWAYS:
                raise errors.unavailable("the API server is starting: its caches are not "
                                         "synced yet")  # fmt: skip
            user = requester = self.authenticator.authenticate(req.token, req.client_certificate)
            if req.impersonate:
                user = impersonate(requester, req.impersonate, self.authorizer)
            decision = self._authorize(user, req)
            if req.raw_body:
                # Decoded only now, for a caller who may make the request at all.
                body, twice = bodies.parse(self.schema, req.raw_body, req.content_type)
                kind = "application/json" if req.content_type == bodies.PROTOBUF else None
                req = attrs.evolve(req, body=body, raw_body=b"", duplicate_fields=twice,
                                   content_type=kind or req.content_type)  # fmt: skip
            body, code, watcher = await self._serve(req, user, warnings)
            # Each warning once, and not without end (kube-apiserver bounds them too).
            told = tuple(dict.fromkeys(warnings))[:MAX_WARNINGS]
            if isinstance(body, PlainText):
                response = ApiResponse(code, raw=body.data, warnings=told,
                                       content_type=body.content_type)  # fmt: skip
            elif isinstance(body, bytes):
                response = ApiResponse(code, raw=body, warnings=told)
            else:
                response = ApiResponse(code, body, warnings=told)
        except errors.ApiError as e:
            response = ApiResponse(e.code, e.status)
        except EtcdError as e:  # etcd unavailable or slow: the client may retry
            response = ApiResponse(503, errors.unavailable(f"etcd: {e}").status)
        except Exception as e:  # the server keeps serving; the caller learns what broke
            detail = f"{type(e).__name__}: {e}"
            response = ApiResponse(500, errors.internal(detail).status)
            log.exception("request %s %s/%s failed", req.verb, req.resource, req.name)
        self._audit(req, requester, decision, response, received, user)
        if not req.path:
            self.metrics.observe(req, response.code, self.clock() - received)
        return response, watcher

    # --- authorization ------------------------------------------------------------------

    def _authorize(self, user: UserInfo, req: ApiRequest):
        if req.path:
            return self._authorize_url(user, req)
        name = req.name
        if req.verb in ("list", "watch") and not name:
            name = _name_from_field_selector((req.params or {}).get("fieldSelector", ""))
        namespace = req.namespace
        if req.resource == "namespaces" and not req.group and req.name:
            namespace = req.name  # a namespace is in itself, as request info says
        attrs = Attributes(
            user,
            req.verb,
            namespace=namespace,
            api_group=req.group,
            api_version=req.version,
            resource=req.resource,
            subresource=req.subresource,
            name=name,
        )
        decision = self.authorizer.authorize(attrs)
        if not decision.allowed:
            raise errors.forbidden(
                user.name,
                req.verb,
                req.resource,
                req.group,
                namespace,
                req.name,
                req.subresource,
                decision.reason,
            )
        return decision

    def _authorize_url(self, user: UserInfo, req: ApiRequest):
        attrs = Attributes(user, req.verb, resource_request=False, path=req.path)
        decision = self.authorizer.authorize(attrs)
        if not decision.allowed:
            message = f'forbidden: User "{user.name}" cannot {req.verb} path "{req.path}"'
            raise errors.ApiError(errors.status(403, "Forbidden", message))
        return decision

    # --- dispatch ---------------------------------------------------------------------

    async def _serve(self, req: ApiRequest, user: UserInfo, warnings: list[str]):
        if req.path:
            if req.verb != "get":
                raise errors.method_not_allowed(f"{req.path} answers get only")
            if req.path.rstrip("/") == "/metrics":
                stored = [(errors.qualified(c.rt.plural, c.rt.group), len(c.objects))
                          for c in self.caches.values()]  # fmt: skip
                # What has no watch cache is counted in etcd (events), as Kubernetes
                # counts every resource.
                for rt in self.registry:
                    if rt.stored and not rt.watch_cached:
                        try:
                            count = await self.store.count(rt)
                        except errors.ApiError:
                            count = -1  # etcd cannot say now: as Kubernetes reports it
                        stored.append((errors.qualified(rt.plural, rt.group), count))
                return self.metrics.text(stored), 200, None
            if req.path.startswith("/openapi/v3"):
                document = self.openapi.at(req.path)
                if document is None:
                    raise errors.no_route()
                return document, 200, None
            aggregated = accepts_aggregated(req.accept)
            if self.resource_metrics is not None:  # metrics.k8s.io joins discovery
                return metricsapi.discovery(req.path, lambda: non_resource(
                    self.registry, req.path, self.address, aggregated)), 200, None  # fmt: skip
            return non_resource(self.registry, req.path, self.address, aggregated), 200, None
        if req.group == metricsapi.GROUP:  # metrics-server's API, beside the registry
            return await metricsapi.serve(self, req), 200, None
        try:
            rt = self.registry.resource(req.group, req.resource)
        except UnknownResource as e:
            raise errors.ApiError(errors.status(404, "NotFound", str(e))) from None
        if req.namespace and not rt.namespaced:
            raise errors.no_route()  # authorized as a namespaced read, it would escape RBAC
        view = self.registry.at_version(rt, req.version)  # rt as the request's version has it
        if view is None:
            raise errors.no_route()
        if req.subresource and req.subresource not in rt.subresources:
            raise errors.no_route()
        if rt.namespaced and req.verb not in ("list", "watch") and not req.namespace:
            raise errors.bad_request("the namespace of the object must be given")
        if rt.verbs and (req.verb not in rt.verbs or req.subresource):
            raise errors.method_not_allowed(f"{rt.plural} only accept {', '.join(rt.verbs)}")
        if not rt.stored:
            asked = _body(req)
            _check_kind(rt, asked)
            params = req.params or {}
            twice = req.duplicate_fields
            asked = bodies.decode_body(self.schema, rt, asked, params, warnings, twice)
            reviewed = answer(rt, req.namespace, asked, user, self.authorizer,
                              self.authenticator)  # fmt: skip
            return reviewed, 201, None
        params = req.params or {}
        verb = req.verb
        if req.subresource == "token" and rt.plural == "serviceaccounts":
            return await self._token(rt, req, user)
        if req.subresource in _SUBRESOURCES:
            return await _SUBRESOURCES[req.subresource](self, rt, req)
        if req.subresource == "finalize" and verb != "update":
            raise errors.method_not_allowed(f"{rt.plural}/finalize only accepts update")
        if req.subresource not in ("", "status", "finalize"):
            raise errors.method_not_allowed(
                f"the {req.subresource} subresource of {rt.plural} is not served yet"
            )
        if verb == "get":
            obj = await self.store.get(
                rt, req.namespace, req.name, params.get("resourceVersion", "")
            )
            if req.as_table:  # (printed from the stored object, whatever the version)
                obj = table(rt.group, rt.plural, [obj], self.clock(), meta(obj)["resourceVersion"])
                return obj, 200, None
            return view.from_storage(obj), 200, None
        if verb == "list":
            return await self._list(rt, req.namespace, params, req.as_table, view), 200, None
        if verb == "watch":
            if req.name:  # a watch of one object: as Kubernetes, a field selector on its name
                fields = params.get("fieldSelector", "")
                named = f"metadata.name={req.name}"
                params = {**params, "fieldSelector": f"{fields},{named}" if fields else named}
            return await self._watch(rt, req.namespace, params, req.as_table, view)
        if verb == "create":
            return await self._create(rt, req, _body(req), warnings, view=view), 201, None
        if verb == "update":
            updated = await self._update(rt, req, lambda current: _body(req), warnings, view=view)
            return updated, 200, None
        if verb == "patch" and req.content_type == bodies.APPLY_PATCH:
            return await self._apply(rt, req, warnings, view)
        if verb == "patch":

            def patch(current: dict) -> dict:  # applied to the object at the patch's version
                shown = view.from_storage(current)
                return bodies.patched(self.schema, view, req.content_type, req.body, shown)

            return await self._update(rt, req, patch, warnings, view=view), 200, None
        if verb == "delete":
            obj, code = await self._delete(rt, req, warnings)
            return view.from_storage(obj), code, None
        raise errors.method_not_allowed(f"verb {verb!r} is not supported on {rt.plural}")

    def _filter(self, rt: ResourceType, namespace: str, params: dict) -> Callable[[dict], bool]:
        try:
            labels = Selector.parse(params.get("labelSelector", ""))
            fields = FieldSelector.parse(params.get("fieldSelector", ""))
            check_fields(fields, set(rt.field_labels({})))
        except InvalidSelector as e:
            raise errors.bad_request(str(e)) from None

        def keep(obj: dict) -> bool:
            m = meta(obj)
            if namespace and m.get("namespace") != namespace:
                return False
            if not labels.empty and not labels.matches(m.get("labels") or {}):
                return False
            return fields.empty or fields.matches(rt.field_labels(obj))

        return keep

    async def _list(self, rt: ResourceType, namespace: str, params: dict, as_table: bool,
                    view: ResourceType):  # fmt: skip
        """The list (``view``: at the version asked for; a Table is the same at any)."""
        keep = self._filter(rt, namespace, params)
        rv = params.get("resourceVersion", "")
        limit = _int_param(params, "limit")
        cache = self.caches.get((rt.group, rt.plural))
        if (
            cache is not None
            and not params.get("continue")
            and await self._cache_serves(cache, rt, rv, limit)
        ):
            if as_table:
                objects = cache.snapshot(keep, rt.prefix(namespace))
                return table(rt.group, rt.plural, objects, self.clock(), str(cache.revision))
            if view.is_view:
                objects = cache.snapshot(keep, rt.prefix(namespace))
                return _list_at(view, objects, {"resourceVersion": str(cache.revision)})
            # The list as JSON, spliced from the cache's JSON of each object.
            head = {"kind": rt.list_kind, "apiVersion": rt.api_version,
                    "metadata": {"resourceVersion": str(cache.revision)}}  # fmt: skip
            items = cache.snapshot_json(keep, rt.prefix(namespace))
            opening = json.dumps(head, separators=(",", ":"))[:-1].encode()
            return b"".join((opening, b',"items":[', b",".join(items), b"]}"))
        listed = await self.store.list(
            rt,
            namespace,
            keep=keep,
            limit=limit,
            continue_token=params.get("continue", ""),
            resource_version=rv,
        )
        if not as_table:
            return _list_at(view, listed["items"], listed["metadata"]) if view.is_view else listed
        rows = table(rt.group, rt.plural, listed["items"], self.clock())
        rows["metadata"] = listed["metadata"]  # resourceVersion and continue, for paging
        return rows

    async def _cache_serves(self, cache: WatchCache, rt: ResourceType, rv: str, limit: int):
        """Whether the cache answers this list, as Kubernetes decides: a list at "any
        version" ("0") comes whole from the cache; a consistent one ("", no limit) too,
        once the cache has caught up with etcd's current revision (Kubernetes 1.31's
        consistent reads from the cache), else from etcd, as are limited and exact ones."""
        if rv == "0":
            await cache.ready.wait()
            return True
        if rv or limit:
            return False
        return await cache.wait_fresh(await self.store.current_revision(rt))

    async def _watch(self, rt: ResourceType, namespace: str, params: dict, as_table: bool,
                     view: ResourceType):  # fmt: skip
        cache = self.caches.get((rt.group, rt.plural))
        if cache is None and rt.watch_cached:
            raise errors.method_not_allowed(f"watch is not supported on {rt.plural}")
        keep = self._filter(rt, namespace, params)
        if cache is None:
            watcher = await self._watch_storage(rt, namespace, params, keep)
        else:
            watcher = await self._watch_cache(cache, rt, namespace, params, keep)
        if as_table:
            watcher.present = self._as_table_event(rt)
        elif view.is_view:
            watcher.present = _converted_event(view)
        return {"kind": "Status", "apiVersion": "v1", "status": "Success"}, 200, watcher

    async def _watch_cache(self, cache: WatchCache, rt: ResourceType, namespace: str,
                           params: dict, keep: Filter) -> Watcher:  # fmt: skip
        await cache.ready.wait()
        bookmarks = is_true(params.get("allowWatchBookmarks"))
        rv = params.get("resourceVersion", "")
        initial = _send_initial_events(params, bookmarks)
        if initial is not None:
            # A streaming list (Kubernetes' WatchList): the state at least as new as
            # ``rv`` ("": a consistent read, as new as etcd now) as ADDED events, ended
            # by a bookmark that says so; or, asked for none, the watch from that state.
            if rv in ("", "0"):
                wanted = 0 if rv == "0" else await self.store.current_revision(rt)
            else:
                wanted = parse_resource_version(rv)
            if not await cache.wait_fresh(wanted):
                raise errors.ApiError(errors.status(
                    504, "Timeout", f"Too large resource version: {rv}"))  # fmt: skip
            rv = "" if initial else str(cache.revision)
        trigger = None
        if cache.trigger_field is not None:
            # The selector parsed without error in _filter.
            fields = FieldSelector.parse(params.get("fieldSelector", ""))
            trigger = fields.requires_exact_match(cache.trigger_field)
        return cache.watch(rv, keep, bookmarks=bookmarks, prefix=rt.prefix(namespace),
                           trigger=trigger, initial_events_end=bool(initial))  # fmt: skip

    async def _watch_storage(self, rt: ResourceType, namespace: str, params: dict,
                             keep: Filter) -> Watcher:  # fmt: skip
        """A watch of a resource without a watch cache, served from etcd (see
        ``_storagewatch``): from "" or "0" (or a streaming list), the objects listed
        first; from a version, what changed after it (410 if etcd no longer has it)."""
        initial = _send_initial_events(params, is_true(params.get("allowWatchBookmarks")))
        rv = params.get("resourceVersion", "")
        listed = rv in ("", "0") if initial is None else initial
        start = 0
        if not listed:
            if rv in ("", "0"):
                start = await self.store.current_revision(rt) + 1
            else:
                after = parse_resource_version(rv)
                await self.store.check_history(rt, after)
                start = after + 1
        return StorageWatcher(self.store.etcd, rt, namespace, keep, start=start,
                              initial_events_end=bool(initial))  # fmt: skip

    def _as_table_event(self, rt: ResourceType) -> Callable[[Event], Event]:
        """Watch events as kube-apiserver sends them to a client that asked for Tables:
        each object a Table of one row (bookmarks as they are)."""

        def present(event: Event) -> Event:
            if event["type"] == BOOKMARK:
                return event
            obj = event["object"]
            rows = table(rt.group, rt.plural, [obj], self.clock(), meta(obj)["resourceVersion"])
            return Event(type=event["type"], object=rows)

        return present

    # --- writes -------------------------------------------------------------------------

    async def _create(self, rt: ResourceType, req: ApiRequest, obj: dict, warnings: list[str],
                      *, view: ResourceType, applied: bool = False) -> dict:  # fmt: skip
        """Create ``obj`` (the body, at ``view``'s version; or what an apply made of it:
        ``applied``, at the storage version, its managedFields already set); the object
        made, at ``view``'s version."""
        obj = _with_kind(rt if applied else view, obj)
        params = req.params or {}
        bodies.check_manager(params, apply=False)
        if not applied:
            obj = bodies.decode_body(self.schema, view, obj, params, warnings, req.duplicate_fields)
            obj = view.to_storage(obj)
        m = dict(meta(obj))
        if rt.namespaced:
            if m.get("namespace") and m["namespace"] != req.namespace:
                raise errors.bad_request(
                    "the namespace of the provided object does not match "
                    "the namespace sent on the request"
                )
            m["namespace"] = req.namespace
        else:
            m.pop("namespace", None)
        obj = {**obj, "metadata": m}
        if rt.has_status and not rt.create_keeps_status:
            # The status is the controllers' to write, through the subresource: what a
            # create sends is dropped, and defaulting sets the initial one (a pod's
            # phase Pending, a namespace's Active), as Kubernetes' PrepareForCreate.
            # A Node keeps it, as Kubernetes' node strategy does.
            obj = {k: v for k, v in obj.items() if k != "status"}
        obj = rt.default(obj)
        # Admission sees the generateName prefix (a refusal names it, the same on every
        # retry); the name is generated after, as Kubernetes' BeforeCreate does.
        name = m.get("name") or m.get("generateName", "")
        obj = await self.admission.run(
            AdmissionRequest("CREATE", rt, req.namespace, name, obj, None)
        )
        generated = meta(obj)
        if not generated.get("name") and generated.get("generateName"):
            new_name = generate_name(generated["generateName"], self.store.rng)
            obj = {**obj, "metadata": {**generated, "name": new_name}}
        # The uid now, before validation, as Kubernetes' BeforeCreate: what a strategy
        # prepares may depend on it (a Job's generated selector).
        uid = self.store.new_uid()
        obj = rt.prepare_create({**obj, "metadata": {**meta(obj), "uid": uid}})
        self._validate(rt, obj, None)
        if not applied:
            obj = self._track(rt, view, None, obj, params, "")
        made = await self.store.create(rt, obj, uid=uid, dry_run=bodies.dry_run(params))
        return view.from_storage(made)

    async def _update(self, rt: ResourceType, req: ApiRequest, make: Callable[[dict], dict],
                      warnings: list[str], *, view: ResourceType,
                      applied: bool = False):  # fmt: skip
        """Update the object to what ``make`` makes of the current one (stored): at
        ``view``'s version, or (``applied``: an apply did, managedFields and all) at the
        storage version; the object written, at ``view``'s version."""
        params = req.params or {}
        bodies.check_manager(params, apply=False)

        def change(current: dict) -> dict:
            new = _with_kind(rt if applied else view, make(current))
            if req.verb == "patch" and not applied:
                # A patch that sets resourceVersion (a JSON patch can) makes it a
                # precondition, as in Kubernetes: the object must still be at it.
                version = meta(new).get("resourceVersion")
                if version and version != meta(current).get("resourceVersion"):
                    raise errors.conflict(rt.plural, rt.group, req.name, errors.MODIFIED)
            if not applied:
                twice = req.duplicate_fields
                new = bodies.decode_body(self.schema, view, new, params, warnings, twice)
                new = view.to_storage(new)
            m = meta(new)
            if m.get("name", req.name) != req.name:
                raise errors.bad_request(
                    "the name of the object does not match the name on the URL"
                )
            new = {
                **new,
                "metadata": {
                    **m,
                    "name": req.name,
                    **({"namespace": req.namespace} if rt.namespaced else {}),
                },
            }
            if req.subresource == "status":
                kept = {**current, "status": new.get("status")}
                if applied:  # the apply recorded who owns what: that stays too
                    managed = meta(new).get("managedFields")
                    kept["metadata"] = {**meta(current), "managedFields": managed}
                new = kept
            elif rt.has_status:
                # (namespaces/finalize too: it changes metadata and spec, never status.)
                new = (
                    {**new, "status": current.get("status")}
                    if "status" in current
                    else {k: v for k, v in new.items() if k != "status"}
                )
            new = rt.default(new) if not req.subresource else new
            if rt.plural == "namespaces" and not rt.group and not req.subresource:
                new = keep_namespace_finalizers(new, current)
            self._validate(rt, new, current)
            if not applied:
                new = self._track(rt, view, current, new, params, req.subresource)
            return new

        # An update names the version it was based on (a patch applies to the current
        # object, unless its body names one, as Kubernetes does for both).
        expect = meta(req.body).get("resourceVersion", "") if isinstance(req.body, dict) else ""
        dry_run = bodies.dry_run(params)
        # The watch cache's copy is tried first, as Kubernetes does (its
        # cachedExistingObject): most updates then need no read from etcd.
        guess = self._cached(rt, req.namespace, req.name)
        updated = await self.store.update(rt, req.namespace, req.name, change, expect=expect,
                                          dry_run=dry_run, guess=guess)  # fmt: skip
        return view.from_storage(updated)

    def _track(self, rt: ResourceType, view: ResourceType, old: dict | None, new: dict,
               params: dict, subresource: str) -> dict:  # fmt: skip
        """``new`` (stored form) with the managedFields this write leaves: the write's
        own recorded at its version (``view``'s), as Kubernetes records them; the
        managers of a resource's other versions disowning what changed at theirs."""
        now = rfc3339(self.clock())
        if not view.is_view:
            new = bodies.track(self.schema, rt, old, new, params=params,
                               subresource=subresource, now=now)  # fmt: skip
        else:
            shown = bodies.track(self.schema, view, None if old is None else view.from_storage(old),
                                 view.from_storage(new), params=params, subresource=subresource,
                                 now=now)  # fmt: skip
            new = with_meta(new, managedFields=meta(shown).get("managedFields"))
        if not rt.conversions:
            return new
        return disown_changed(self.schema, old, new, api_version=view.api_version,
                              subresource=subresource, versions=self._versions(rt))

    def _versions(self, rt: ResourceType, shown: ResourceType | None = None) -> Versions:
        """How an object (stored, or as ``shown`` has it) looks at each version ``rt``
        is served at: the type there and the conversion (for managers of any version)."""

        def at(api_version: str) -> tuple[TypeDef | None, Callable[[dict], dict]] | None:
            version = api_version.rpartition("/")[2]
            target = self.registry.at_version(rt, version)
            if target is None or target.api_version != api_version:
                return None
            if shown is None:
                return bodies.type_of(self.schema, target), target.from_storage
            return (bodies.type_of(self.schema, target),
                    lambda obj: target.from_storage(shown.to_storage(obj)))  # fmt: skip

        return at

    async def _apply(self, rt: ResourceType, req: ApiRequest, warnings: list[str],
                     view: ResourceType):  # fmt: skip
        """PATCH with an apply configuration (server-side apply) at ``view``'s version:
        merged into the object as that version has it, which is created if it does not
        exist (201)."""
        params = req.params or {}
        manager = bodies.check_manager(params, apply=True)
        config = _body(req)
        _check_kind(view, config)
        if config.get("kind") is None or config.get("apiVersion") is None:
            raise errors.bad_request("an apply configuration must give apiVersion and kind")
        if "managedFields" in meta(config):
            raise errors.bad_request("metadata.managedFields must be nil in an apply configuration")
        config = bodies.decode_body(self.schema, view, config, params, warnings,
                                    req.duplicate_fields)  # fmt: skip
        if meta(config).get("name", req.name) != req.name:
            raise errors.bad_request("the name of the object does not match the name on the URL")
        t = bodies.type_of(self.schema, view)
        force = is_true(params.get("force"))
        options = {"manager": manager, "api_version": view.api_version,
                   "subresource": req.subresource, "force": force}  # fmt: skip
        if rt.conversions:
            options["versions"] = self._versions(rt, view)

        def merged(current: dict | None) -> dict:
            live = None if current is None else view.from_storage(current)
            try:
                new = apply(self.schema, t, live, config, now=rfc3339(self.clock()), **options)
            except ApplyConflict as e:
                raise bodies.conflict(rt, req.name, e) from None
            return view.to_storage(new)

        try:
            return await self._update(rt, req, merged, warnings, view=view, applied=True), 200, None
        except errors.ApiError as e:
            if e.code != 404 or req.subresource:
                raise
        new = merged(None)
        new = {**new, "metadata": {**meta(new), "name": req.name}}
        return await self._create(rt, req, new, warnings, view=view, applied=True), 201, None

    async def _delete(self, rt: ResourceType, req: ApiRequest,
                      warnings: list[str]) -> tuple[dict, int]:  # fmt: skip
        """DELETE with its DeleteOptions (the body's, else the query parameters', as
        kube-apiserver reads them). 202 for an object that stays while the legacy
        ``orphanDependents: false`` asked for its dependents to go (Kubernetes' code).
        A batch/v1 Job deleted without a policy orphans its pods, with Kubernetes'
        warning (its strategy's default; kubectl always asks for one)."""
        params = req.params or {}
        options = delete_options(req.body, params)
        if ((rt.group, rt.plural) in ORPHAN_BY_DEFAULT and not options.get("propagationPolicy")
                and options.get("orphanDependents") is None):  # fmt: skip
            # (The orphaning itself is the store's: a cascade finalizer already on the
            # Job wins over the default, as Kubernetes' shouldOrphanDependents.)
            warnings.append("child pods are preserved by default when jobs are deleted; set "
                            "propagationPolicy=Background to remove them or set "
                            "propagationPolicy=Orphan to suppress this warning")  # fmt: skip
        grace = options.get("gracePeriodSeconds")
        pre = options.get("preconditions") or {}
        await self.admission.run(AdmissionRequest("DELETE", rt, req.namespace, req.name, None, {}))
        obj, gone = await self.store.delete(
            rt,
            req.namespace,
            req.name,
            grace_period=int(grace) if grace is not None else None,
            uid=pre.get("uid", ""),
            resource_version=pre.get("resourceVersion", ""),
            dry_run=bodies.dry_run(params) or options.get("dryRun") == ["All"],
            propagation_policy=options.get("propagationPolicy") or "",
            orphan_dependents=options.get("orphanDependents"),
        )
        return obj, 202 if not gone and options.get("orphanDependents") is False else 200

    def _validate(self, rt: ResourceType, obj: dict, old: dict | None) -> None:
        problems = rt.validate(obj, old)
        if problems:
            raise errors.invalid(rt.kind, rt.group, meta(obj).get("name", ""), problems)

    # --- subresources ------------------------------------------------------------------

    async def _binding(self, rt: ResourceType, req: ApiRequest):
        """POST pods/binding: set the pod's node, once (as the scheduler binds)."""
        if req.verb != "create":
            raise errors.method_not_allowed("pods/binding only accepts create")
        body = _body(req)
        target = body.get("target") if isinstance(body.get("target"), dict) else {}
        node = target.get("name")
        if not node or target.get("kind", "Node") != "Node":
            raise errors.ApiError(
                errors.status(422, "Invalid", "Binding.target must name a Node", {"name": req.name})
            )

        wanted_uid = (body.get("metadata") or {}).get("uid") or ""

        def bind(current: dict) -> dict:
            spec = current.get("spec") or {}
            if wanted_uid and meta(current).get("uid") != wanted_uid:
                raise errors.conflict(
                    "pods/binding",
                    "",
                    req.name,
                    f"Precondition failed: UID in precondition: {wanted_uid}, "
                    f"UID in object meta: {meta(current).get('uid')}",
                )
            if spec.get("nodeName"):
                raise errors.conflict(
                    "pods/binding",
                    "",
                    req.name,
                    f'pod {req.name} is already assigned to node "{spec["nodeName"]}"',
                )
            if meta(current).get("deletionTimestamp"):
                raise errors.conflict(
                    "pods/binding",
                    "",
                    req.name,
                    f"pod {req.name} is being deleted, cannot be assigned to a host",
                )
            # As Kubernetes' binding storage: the node, the binding's annotations, and
            # the PodScheduled condition, true from now on.
            status = current.get("status") or {}
            conditions = [c for c in status.get("conditions") or ()
                          if c.get("type") != "PodScheduled"]  # fmt: skip
            # (No null lastProbeTime: a stored object has no nulls, as one decoded has
            # none, so that its readers compare what they write with what they read.)
            conditions.append({"type": "PodScheduled", "status": "True",
                               "lastTransitionTime": rfc3339(self.clock())})  # fmt: skip
            annotations = {**(meta(current).get("annotations") or {}),
                           **((body.get("metadata") or {}).get("annotations") or {})}  # fmt: skip
            m = {**meta(current), **({"annotations": annotations} if annotations else {})}
            return {**current, "metadata": m, "spec": {**spec, "nodeName": node},
                    "status": {**status, "conditions": conditions}}  # fmt: skip

        dry_run = bodies.dry_run(req.params or {})
        await self.store.update(rt, req.namespace, req.name, bind, dry_run=dry_run,
                                guess=self._cached(rt, req.namespace, req.name))  # fmt: skip
        return {**errors.success_status(), "code": 201}, 201, None

    def _cached(self, rt: ResourceType, namespace: str, name: str) -> dict | None:
        """The watch cache's copy of an object (for ``ObjectStore.update``'s guess)."""
        cache = self.caches.get((rt.group, rt.plural))
        return None if cache is None else cache.objects.get(rt.key(namespace, name))

    async def _scale(self, rt: ResourceType, req: ApiRequest):
        """GET / PUT / PATCH <workload>/scale: an autoscaling/v1 Scale of spec.replicas."""
        if req.verb == "get":
            return _scale_of(await self.store.get(rt, req.namespace, req.name)), 200, None
        if req.verb not in ("update", "patch"):
            raise errors.method_not_allowed(f"{rt.plural}/scale accepts get, update and patch")

        scale = self.schema.kind("autoscaling/v1", "Scale")

        def rescale(current: dict) -> dict:
            if req.verb == "update":
                wanted = _body(req)
            else:
                shown = _scale_of(current)
                wanted = bodies.patched(self.schema, rt, req.content_type, req.body, shown, scale)
            replicas = (wanted.get("spec") or {}).get("replicas")
            if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
                raise errors.invalid(
                    "Scale",
                    "autoscaling",
                    req.name,
                    [
                        FieldError.invalid(
                            Path("spec").child("replicas"),
                            replicas,
                            "must be greater than or equal to 0",
                        )
                    ],
                )
            return {**current, "spec": {**(current.get("spec") or {}), "replicas": replicas}}

        expect = meta(req.body).get("resourceVersion", "") if req.verb == "update" else ""
        dry_run = bodies.dry_run(req.params or {})
        updated = await self.store.update(rt, req.namespace, req.name, rescale, expect=expect,
                                          dry_run=dry_run)  # fmt: skip
        return _scale_of(updated), 200, None

    async def _eviction(self, rt: ResourceType, req: ApiRequest):
        """POST pods/eviction (Kubernetes' EvictionREST): delete the pod with the
        eviction's delete options, if its PodDisruptionBudget allows (see ``_pdb``): a
        pod that disrupts nothing (terminal, pending, being deleted) goes at once, a
        pending one on condition that it has not changed (if it has, the eviction looks
        again, up to ``EVICTION_RETRIES`` times); one covered by two budgets is refused
        (500, as Kubernetes); an unready pod goes without taking a disruption if its
        budget's policy or health allows, on condition that it has not become ready
        meanwhile (429 if it has); otherwise the budget gives up a disruption (429 if it
        has none). The pod then gets the DisruptionTarget condition and is deleted."""
        if req.verb != "create":
            raise errors.method_not_allowed("pods/eviction only accepts create")
        body = _body(req)
        if (body.get("metadata") or {}).get("name") != req.name:
            raise errors.bad_request("name in URL does not match name in Eviction object")
        options = body.get("deleteOptions") or {}
        dry_run = bodies.dry_run(req.params or {}) or options.get("dryRun") == ["All"]
        preconditions = options.get("preconditions") or {}
        uid, version = preconditions.get("uid") or "", preconditions.get("resourceVersion") or ""
        tries = 0
        while True:
            try:
                await self._evict(rt, req, options, uid, version, dry_run)
                return {**errors.success_status(), "code": 201}, 201, None
            except _PodMoved as moved:
                tries += 1
                if tries == EVICTION_RETRIES:
                    raise moved.error from None

    async def _evict(self, rt: ResourceType, req: ApiRequest, options: dict, uid: str,
                     version: str, dry_run: bool) -> None:  # fmt: skip
        """One try of an eviction (see ``_eviction``); ``_PodMoved`` if a version this
        try conditioned the delete on is no longer the pod's."""
        pod = await self.store.get(rt, req.namespace, req.name)
        own_version, budget_name = "", ""  # a precondition set here, and for which budget
        if pdbs.can_ignore(pod):
            if (pod.get("status") or {}).get("phase") == "Pending" and not meta(pod).get(
                "deletionTimestamp"
            ):
                own_version = meta(pod)["resourceVersion"]  # it must not start meanwhile
        else:
            budget_rt = self.registry.resource("policy", "poddisruptionbudgets")
            listed = await self.store.list(budget_rt, req.namespace)
            budgets = [b for b in listed["items"] if pdbs.selects(b, pod)]
            if len(budgets) > 1:
                raise errors.ApiError(errors.status(500, "", "This pod has more than one "
                                                    "PodDisruptionBudget, which the eviction "
                                                    "subresource does not support."))  # fmt: skip
            if budgets:
                budget = budgets[0]
                spec, held = budget.get("spec") or {}, budget.get("status") or {}
                desired = int(held.get("desiredHealthy") or 0)
                if not pdbs.is_ready(pod) and (
                    spec.get("unhealthyPodEvictionPolicy") == pdbs.ALWAYS_ALLOW
                    or (int(held.get("currentHealthy") or 0) >= desired and desired > 0)
                ):
                    # It must not have become ready meanwhile.
                    own_version, budget_name = meta(pod)["resourceVersion"], meta(budget)["name"]
                else:
                    await self.store.update(
                        budget_rt, req.namespace, meta(budget)["name"],
                        lambda b: pdbs.take_disruption(b, req.name, self.clock(),
                                                       dry_run=dry_run),
                        dry_run=dry_run,
                    )  # fmt: skip
        condition = version or own_version
        grace = options.get("gracePeriodSeconds")
        grace = int(grace) if grace is not None else None
        try:
            if not dry_run:
                condition = await self._mark_disruption_target(rt, req, uid, condition)
            await self.store.delete(rt, req.namespace, req.name, dry_run=dry_run, uid=uid,
                                    resource_version=condition, grace_period=grace)  # fmt: skip
        except errors.ApiError as e:
            if e.code != 409 or version or not own_version:
                raise  # the caller's own precondition, or no precondition of ours
            if budget_name:  # the unready pod changed: maybe it is ready now
                raise pdbs.still_processing(budget_name) from None
            raise _PodMoved(e) from None

    async def _mark_disruption_target(self, rt: ResourceType, req: ApiRequest, uid: str,
                                      version: str) -> str:  # fmt: skip
        """The DisruptionTarget condition (EvictionByEvictionAPI) on the pod about to be
        evicted, under the delete's preconditions; the version precondition the delete
        then needs (the pod's new one, if one was given)."""

        def mark(pod: dict) -> dict:
            m = meta(pod)
            if uid and m.get("uid") != uid:
                raise errors.conflict("Pod", "", req.name,
                                      f"the UID in the precondition ({uid}) does not match the "
                                      f"UID in record ({m.get('uid')}). The object might have "
                                      "been deleted and then recreated")  # fmt: skip
            if version and m.get("resourceVersion") != version:
                raise errors.conflict("Pod", "", req.name,
                                      f"the ResourceVersion in the precondition ({version}) "
                                      "does not match the ResourceVersion in record "
                                      f"({m.get('resourceVersion')}). The object might have "
                                      "been modified")  # fmt: skip
            status = pod.get("status") or {}
            conditions = [c for c in status.get("conditions") or ()
                          if c.get("type") != "DisruptionTarget"]  # fmt: skip
            was = next((c for c in status.get("conditions") or ()
                        if c.get("type") == "DisruptionTarget"), {})  # fmt: skip
            since = was.get("lastTransitionTime") if was.get("status") == "True" else None
            conditions.append({"type": "DisruptionTarget", "status": "True",
                               "lastTransitionTime": since or rfc3339(self.clock()),
                               "reason": "EvictionByEvictionAPI",
                               "message": "Eviction API: evicting"})  # fmt: skip
            return {**pod, "status": {**status, "conditions": conditions}}

        updated = await self.store.update(rt, req.namespace, req.name, mark)
        return meta(updated)["resourceVersion"] if version else ""

    async def _token(self, rt: ResourceType, req: ApiRequest, user: UserInfo):
        """POST serviceaccounts/token (TokenRequest, what ``kubectl create token`` sends):
        a signed token of the account for ``spec.audiences`` (the API server's by
        default), ``spec.expirationSeconds`` (3600 by default; 10 minutes at least, 2^32
        s at most), bound to ``spec.boundObjectRef`` if given (a Pod, Secret or Node that
        must exist, whose deletion ends the token; a pod must run as this account). A
        node may only ask for tokens bound to a pod on itself (Kubernetes' NodeRestriction:
        without it any kubelet could act as any account)."""
        if req.verb != "create":
            raise errors.method_not_allowed("serviceaccounts/token only accepts create")
        tokens = self.authenticator.service_accounts
        if tokens is None:
            raise errors.ApiError(errors.status(503, "ServiceUnavailable",
                                                "this API server has no service-account "
                                                "signing key"))  # fmt: skip
        # The account from etcd, as Kubernetes reads it: a cached copy may be of an
        # account deleted and made again, whose uid the token would carry.
        account = await self.store.get(rt, req.namespace, req.name)
        body = _body(req)
        spec = body.get("spec") if isinstance(body.get("spec"), dict) else {}
        path = Path("spec")
        seconds = spec.get("expirationSeconds", 3600)
        failures = []
        if not isinstance(seconds, int) or isinstance(seconds, bool):
            failures.append(FieldError.invalid(path.child("expirationSeconds"), seconds,
                                               "must be an integer"))  # fmt: skip
        elif seconds < 600:
            failures.append(FieldError.invalid(path.child("expirationSeconds"), seconds,
                                               "may not specify a duration less than 10 "
                                               "minutes"))  # fmt: skip
        elif seconds > 2**32:
            failures.append(FieldError.invalid(path.child("expirationSeconds"), seconds,
                                               "may not specify a duration larger than 2^32 "
                                               "seconds"))  # fmt: skip
        audiences = spec.get("audiences") or [DEFAULT_AUDIENCE]
        if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
            failures.append(FieldError.invalid(path.child("audiences"), audiences,
                                               "must be a list of strings"))  # fmt: skip
        ref = spec.get("boundObjectRef")
        node = _node_name(user)
        if node is not None:
            _restrict_node_token(ref, req.name)
        bound = None
        if ref is not None:
            kind = ref.get("kind") if isinstance(ref, dict) else None
            plural = {"Pod": "pods", "Secret": "secrets", "Node": "nodes"}.get(kind)
            if not isinstance(ref, dict):
                raise errors.bad_request("spec.boundObjectRef must be an object")
            version = ref.get("apiVersion", "v1")
            if plural is None or version not in ("", "v1"):  # core Pods, Nodes, Secrets only
                raise errors.bad_request(f"cannot bind token for object of type "
                                         f"{version}, Kind={kind}")  # fmt: skip
            if not ref.get("name"):
                failures.append(FieldError.required(path.child("boundObjectRef", "name")))
        if failures:
            raise errors.invalid("TokenRequest", "authentication.k8s.io", req.name, failures)
        if ref is not None:
            target_rt = self.registry.resource("", plural)
            target_ns = req.namespace if target_rt.namespaced else ""
            # The bound object from the watch cache when its copy agrees with the request
            # (the uid asked for; the asking node's), else from etcd: kubelets ask a
            # token for every pod they start, and uid and nodeName never change once
            # set, so an agreeing copy is the object (a deleted one's token is refused
            # at use). Without a uid to compare, etcd answers.
            target = self._cached(target_rt, target_ns, ref.get("name", ""))
            if target is None or not ref.get("uid") or meta(target).get("uid") != ref["uid"] or (
                node is not None and (target.get("spec") or {}).get("nodeName") != node
            ):
                target = await self.store.get(target_rt, target_ns, ref.get("name", ""))
            target_uid = meta(target).get("uid", "")
            if kind == "Pod":
                running_as = (target.get("spec") or {}).get("serviceAccountName", "default")
                if running_as != req.name:
                    raise errors.bad_request(f'cannot bind token for serviceaccount "{req.name}" '
                                             "to pod running with different serviceaccount "
                                             "name.")  # fmt: skip
                if node is not None and (target.get("spec") or {}).get("nodeName") != node:
                    raise errors.namespace_forbidden("serviceaccounts", "", req.name,
                                                     "node requested token bound to a pod "
                                                     "scheduled on a different node")  # fmt: skip
            if ref.get("uid") and ref["uid"] != target_uid:
                why = (f"the UID in the bound object reference ({ref['uid']}) does not match "
                       f"the UID in record ({target_uid})")  # fmt: skip
                raise errors.conflict(plural, "", ref.get("name", ""), why)
            bound = (kind, ref.get("name", ""), target_uid)
            ref = {**ref, "uid": target_uid}
        now = self.clock()
        uid = meta(account).get("uid", "")
        lifetime, warn_after = seconds, None
        if seconds == EXTENDED_TOKEN_SECONDS and bound is not None and bound[0] == "Pod" and all(
            a == DEFAULT_AUDIENCE for a in audiences
        ):
            # Kubernetes' --service-account-extend-token-expiration (on by default): the
            # token of a pod's projected volume lives a year, for clients that read the
            # file once; the answer still says an hour, so the kubelet renews it hourly.
            lifetime, warn_after = EXTENSION_SECONDS, seconds
        token = tokens.issue(req.namespace, req.name, uid, now=now, expires_in=lifetime,
                             audiences=tuple(audiences), bound=bound, warn_after=warn_after)
        answer = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                  "metadata": {"name": req.name, "namespace": req.namespace,
                               "creationTimestamp": rfc3339(now)},
                  "spec": {"audiences": list(audiences), "expirationSeconds": seconds,
                           **({"boundObjectRef": ref} if ref is not None else {})},
                  "status": {"token": token,
                             "expirationTimestamp": rfc3339(int(now) + seconds)}}  # fmt: skip
        return answer, 201, None

    async def _log(self, rt: ResourceType, req: ApiRequest):
        """GET pods/log: the container's log from the pod's kubelet (see
        ``_kubeletclient``); with follow, streamed by the kubelet to the watcher."""
        if req.verb != "get":
            raise errors.method_not_allowed("pods/log only accepts get")
        pod = await self.store.get(rt, req.namespace, req.name)
        msg = log_request(pod, req.params or {}, self.clock())
        kubelet = await self._kubelet_of(pod)
        if msg.follow:
            if req.watcher is None:
                raise errors.bad_request("follow needs a streaming connection")
            msg = attrs.evolve(msg, receiver=req.watcher, stream_id=req.watch_id)
        return PlainText((await ask_kubelet(kubelet, msg, LogsReply)).data), 200, None

    async def _exec(self, rt: ResourceType, req: ApiRequest):
        """pods/exec (see ``_remotecommand``): checked here, run by the pod's kubelet,
        streamed to the watcher. 200 with a Success Status once the command runs, or
        with the kubelet's Failure Status if it would not run it (the front end has
        upgraded the connection by then, and writes it on the error channel); an
        error before that."""
        if req.verb != "create":
            raise errors.method_not_allowed("pods/exec only accepts create")
        pod = await self.store.get(rt, req.namespace, req.name)
        params = req.params or {}
        msg = exec_request(pod, params, choose_container(pod, str(params.get("container", ""))))
        kubelet = await self._kubelet_of(pod)
        if req.watcher is None:
            raise errors.bad_request("Upgrade request required")
        msg = attrs.evolve(msg, receiver=req.watcher, stream_id=req.watch_id)
        try:
            await ask_kubelet(kubelet, msg, ExecAccepted)
        except errors.ApiError as e:
            return remotecommand.failure(e.status["message"]), 200, None
        return {"kind": "Status", "apiVersion": "v1", **remotecommand.success()}, 200, None

    async def _portforward(self, rt: ResourceType, req: ApiRequest):
        """pods/portforward (see ``_portforward``): checked here, the session started by
        the pod's kubelet, which streams to the watcher; 200 with a Success Status once
        it runs, an error before that."""
        if req.verb != "create":
            raise errors.method_not_allowed("pods/portforward only accepts create")
        pod = await self.store.get(rt, req.namespace, req.name)
        kubelet = await self._kubelet_of(pod)
        if req.watcher is None:
            raise errors.bad_request("Upgrade request required")
        meta = pod["metadata"]
        msg = PortForwardRequest(meta.get("namespace", ""), meta["name"], meta.get("uid", ""),
                                 receiver=req.watcher)  # fmt: skip
        await ask_kubelet(kubelet, msg, PortForwardAccepted)
        return {"kind": "Status", "apiVersion": "v1", **remotecommand.success()}, 200, None

    async def _kubelet_of(self, pod: dict) -> ActorRef:
        """The server of the kubelet that runs ``pod``. Raises ``ApiError``."""
        node = None
        node_name = (pod.get("spec") or {}).get("nodeName")
        if node_name:
            with contextlib.suppress(errors.ApiError):
                node = await self.store.get(self.registry.resource("", "nodes"), "", node_name)
        address = kubelet_address(pod, node)
        if self.kubelets is None:
            raise errors.ApiError(errors.status(503, "ServiceUnavailable",
                                                "this API server reaches no kubelet"))  # fmt: skip
        return self.kubelets(address)

    # --- audit --------------------------------------------------------------------------

    def _audit(self, req, user, decision, response: ApiResponse, received: float,
               acting=None) -> None:  # fmt: skip
        if self.audit is None:
            return
        self._audit_ids += 1
        event: dict[str, Any] = {
            "kind": "Event",
            "apiVersion": "audit.k8s.io/v1",
            "level": "Metadata",
            "auditID": str(self._audit_ids),
            "stage": "ResponseComplete",
            "verb": req.verb,
            "user": {"username": user.name, "groups": list(user.groups)} if user else {},
            "objectRef": {
                k: v
                for k, v in (
                    ("resource", req.resource),
                    ("namespace", req.namespace),
                    ("name", req.name),
                    ("apiGroup", req.group),
                    ("apiVersion", req.version),
                    ("subresource", req.subresource),
                )
                if v
            },
            "responseStatus": {"code": response.code},
            "requestReceivedTimestamp": rfc3339(received),
            "stageTimestamp": rfc3339(self.clock()),
        }
        if acting is not None and acting is not user:
            event["impersonatedUser"] = {"username": acting.name, "groups": list(acting.groups)}
        if req.path:  # a URL, not an object
            del event["objectRef"]
            event["requestURI"] = req.path
        if decision is not None:
            event["annotations"] = {
                "authorization.k8s.io/decision": "allow",
                "authorization.k8s.io/reason": decision.reason,
            }
        elif response.code == 403:
            event["annotations"] = {"authorization.k8s.io/decision": "forbid"}
        self.audit(event)


_SUBRESOURCES = {
    "log": Handler._log,
    "exec": Handler._exec,
    "portforward": Handler._portforward,
    "binding": Handler._binding,
    "scale": Handler._scale,
    "eviction": Handler._eviction,
}


def _scale_of(obj: dict) -> dict:
    m = meta(obj)
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    scale = {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            k: m[k]
            for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            if k in m
        },
        "spec": {"replicas": spec.get("replicas", 0)},
        "status": {"replicas": status.get("replicas", 0)},
    }
    selector = spec.get("selector")
    if isinstance(selector, dict):
        with contextlib.suppress(InvalidSelector):
            scale["status"]["selector"] = str(Selector.from_label_selector(selector))
    return scale


def _list_at(view: ResourceType, objects: list[dict], list_meta: dict) -> dict:
    """A list of stored objects as ``view``'s version has them."""
    return {"kind": view.list_kind, "apiVersion": view.api_version, "metadata": list_meta,
            "items": [view.from_storage(obj) for obj in objects]}  # fmt: skip


def _converted_event(view: ResourceType) -> Callable[[Event], Event]:
    """Watch events (the cache's, of stored objects) at ``view``'s version."""

    def present(event: Event) -> Event:
        obj = event["object"]
        if event["type"] == BOOKMARK:
            return Event(type=BOOKMARK, object={**obj, "apiVersion": view.api_version})
        return Event(type=event["type"], object=view.from_storage(obj))

    return present


def _body(req: ApiRequest) -> dict:
    if not isinstance(req.body, dict):
        raise errors.bad_request("the request body must be an object")
    return req.body


def _with_kind(rt: ResourceType, obj: dict) -> dict:
    """``obj`` checked (``_check_kind``), with the apiVersion and kind of the request's
    URL where it gives none: Kubernetes' decoder defaults them from the URL, so what is
    stored and served always names its kind."""
    obj = {**obj, "apiVersion": obj.get("apiVersion") or rt.api_version,
           "kind": obj.get("kind") or rt.kind}  # fmt: skip
    _check_kind(rt, obj)
    return obj


def _check_kind(rt: ResourceType, obj: dict) -> None:
    kind, version = obj.get("kind"), obj.get("apiVersion")
    if kind is not None and (kind != rt.kind or version != rt.api_version):
        raise errors.bad_request(
            f"the API version in the data ({version}) does not match the "
            f"expected API version ({rt.api_version})"
            if kind == rt.kind
            else f"the kind in the data ({kind}) does not match {rt.kind}"
        )
    if not isinstance(obj.get("metadata", {}), dict):
        raise errors.bad_request("metadata must be an object")


_BOOLS = {**dict.fromkeys(("1", "t", "T", "TRUE", "true", "True"), True),
          **dict.fromkeys(("0", "f", "F", "FALSE", "false", "False"), False)}  # fmt: skip


def delete_options(body: Any, params: dict) -> dict:
    """A delete's DeleteOptions: the body if there is one, else the query parameters
    (gracePeriodSeconds, propagationPolicy, orphanDependents, dryRun), as kube-apiserver
    reads them; checked as its ValidateDeleteOptions (422 for a policy it does not know,
    or one given together with orphanDependents)."""
    if isinstance(body, dict):
        options = body
    else:
        options = {}
        grace = params.get("gracePeriodSeconds")
        if grace not in (None, ""):
            try:
                options["gracePeriodSeconds"] = int(grace)
            except (TypeError, ValueError):
                raise errors.bad_request(f"gracePeriodSeconds: invalid integer {grace!r}") from None
        if params.get("propagationPolicy") not in (None, ""):
            options["propagationPolicy"] = params["propagationPolicy"]
        if params.get("orphanDependents") not in (None, ""):
            if params["orphanDependents"] not in _BOOLS:
                raise errors.bad_request(f"orphanDependents: invalid boolean "
                                         f"{params['orphanDependents']!r}")  # fmt: skip
            options["orphanDependents"] = _BOOLS[params["orphanDependents"]]
    _check_option_types(options)
    orphan, policy = options.get("orphanDependents"), options.get("propagationPolicy")
    problems = []
    if orphan is not None and policy is not None:
        problems.append(FieldError.invalid(Path("propagationPolicy"), policy,
                                           "orphanDependents and deletionPropagation cannot "
                                           "be both set"))  # fmt: skip
    if policy is not None and policy not in PROPAGATION_POLICIES:
        supported = ", ".join(f'"{p}"' for p in (*PROPAGATION_POLICIES, "nil"))
        problems.append(FieldError(ErrorType.NOT_SUPPORTED, "propagationPolicy", policy,
                                   f"supported values: {supported}"))  # fmt: skip
    if problems:
        raise errors.invalid("DeleteOptions", "meta.k8s.io", "", problems)
    return options


def _check_option_types(options: dict) -> None:
    """A body whose fields have the wrong types is a 400, as Go's decoder refuses it
    (not a 500 further in)."""

    def wrong(field: str, go_type: str) -> errors.ApiError:
        return errors.bad_request(f"json: cannot unmarshal into Go struct field "
                                  f"DeleteOptions.{field} of type {go_type}")  # fmt: skip

    grace = options.get("gracePeriodSeconds")
    if grace is not None and (isinstance(grace, bool) or not isinstance(grace, int)):
        raise wrong("gracePeriodSeconds", "int64")
    orphan = options.get("orphanDependents")
    if orphan is not None and not isinstance(orphan, bool):
        raise wrong("orphanDependents", "bool")
    policy = options.get("propagationPolicy")
    if policy is not None and not isinstance(policy, str):
        raise wrong("propagationPolicy", "v1.DeletionPropagation")
    pre = options.get("preconditions")
    if pre is not None and (not isinstance(pre, dict) or not all(
            isinstance(pre.get(k, ""), str) for k in ("uid", "resourceVersion"))):  # fmt: skip
        raise wrong("preconditions", "v1.Preconditions")
    dry = options.get("dryRun")
    if dry is not None and (not isinstance(dry, list) or not all(isinstance(d, str) for d in dry)):
        raise wrong("dryRun", "[]string")


def _send_initial_events(params: dict, bookmarks: bool) -> bool | None:
    """A watch's ``sendInitialEvents`` (None: not given), its companions checked as
    Kubernetes' ValidateListOptions checks them: it asks for ``resourceVersionMatch``
    NotOlderThan (which is refused without it) and for bookmarks."""
    given = params.get("sendInitialEvents")
    match = params.get("resourceVersionMatch", "")
    where = Path("resourceVersionMatch")
    problems = []
    if given is not None and match != NOT_OLDER_THAN:
        problems.append(FieldError.forbidden(
            where, f"sendInitialEvents requires setting resourceVersionMatch to {NOT_OLDER_THAN}"))
    if match:
        if given is None:
            problems.append(FieldError.forbidden(
                where, "resourceVersionMatch is forbidden for watch unless sendInitialEvents "
                "is provided"))
        if match != NOT_OLDER_THAN:
            problems.append(FieldError.not_supported(where, match, (NOT_OLDER_THAN,)))
        if not bookmarks:
            problems.append(FieldError.forbidden(
                Path("allowWatchBookmarks"),
                "allowWatchBookmarks must be set to true when resourceVersionMatch is provided"))
    if problems:
        raise errors.invalid("ListOptions", "meta.k8s.io", "", problems)
    return None if given is None else is_true(given)


def _int_param(params: dict, name: str) -> int:
    text = params.get(name, "")
    if text in ("", None):
        return 0
    try:
        value = int(text)
    except (TypeError, ValueError):
        raise errors.bad_request(f"{name} must be an integer, not {text!r}") from None
    return max(value, 0)


def _name_from_field_selector(text: str) -> str:
    try:
        return FieldSelector.parse(text).requires_exact_match("metadata.name") or ""
    except InvalidSelector:
        return ""


def _node_name(user: UserInfo) -> str | None:
    """The node a kubelet's user is (``system:node:<name>`` in ``system:nodes``)."""
    if "system:nodes" in user.groups and user.name.startswith("system:node:"):
        return user.name[len("system:node:"):]
    return None


def _restrict_node_token(ref: Any, account: str) -> None:
    """NodeRestriction's rule for a node's TokenRequest: bound to a pod, with its uid
    (the pod's node is checked once the pod is read)."""
    why = ""
    pod = isinstance(ref, dict) and ref.get("kind") == "Pod"
    if not pod or ref.get("apiVersion", "v1") not in ("", "v1"):
        why = "node requested token not bound to a pod"
    elif not ref.get("uid"):
        why = "node requested token with a pod binding without a uid"
    if why:
        raise errors.namespace_forbidden("serviceaccounts", "", account, why)
