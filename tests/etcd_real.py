"""A real etcd for differential tests: started on loopback, spoken to through its JSON
gateway (etcd v3.4's grpc-gateway), with requests and answers translated to and from
actorkube.etcd's messages.

Only the standard library speaks HTTP here, so the comparison depends on nothing but the
etcd binary (Debian's etcd-server, which .ci/run installs).
"""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

from actorkube.etcd import (
    CompactionRequest,
    Compare,
    DeleteRangeRequest,
    Failure,
    KeyValue,
    LeaseGrantRequest,
    LeaseRevokeRequest,
    LeaseTimeToLiveRequest,
    PutRequest,
    RangeRequest,
    TxnRequest,
)

ETCD = shutil.which("etcd")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def real_etcd() -> Iterator[RealEtcd]:
    """Start etcd on two free loopback ports in a temporary data directory."""
    if ETCD is None:
        raise RuntimeError("the etcd binary is not installed (Debian package etcd-server)")
    client, peer = _free_port(), _free_port()
    with tempfile.TemporaryDirectory() as data:
        c, p = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
        args = {
            "--data-dir": data,
            "--log-level": "error",
            "--listen-client-urls": c,
            "--advertise-client-urls": c,
            "--listen-peer-urls": p,
            "--initial-advertise-peer-urls": p,
            "--initial-cluster": f"default={p}",
        }
        proc = subprocess.Popen(
            [ETCD, *(part for flag in args.items() for part in flag)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            etcd = RealEtcd(f"http://127.0.0.1:{client}")
            etcd.wait_ready(proc)
            yield etcd
        finally:
            proc.terminate()
            proc.wait(10)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str | None) -> bytes:
    return base64.b64decode(text) if text else b""


class RealEtcd:
    def __init__(self, url: str) -> None:
        self.url = url

    def wait_ready(self, proc: subprocess.Popen) -> None:
        # A real process coming up: poll its endpoint (not a test waiting for our state).
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"etcd exited with {proc.returncode}")
            with contextlib.suppress(OSError):
                self.call("/v3/kv/range", {"key": _b64(b"\0")})
                return
            time.sleep(0.05)
        raise RuntimeError("etcd did not start within 30 s")

    def call(self, path: str, body: dict) -> dict:
        """POST ``body``; the JSON answer, or ``{"error": ..., "code": ...}``."""
        req = urllib.request.Request(
            self.url + path, json.dumps(body).encode(), {"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return json.loads(exc.read())

    def revision(self) -> int:
        return int(self.call("/v3/kv/range", {"key": _b64(b"\0")})["header"]["revision"])

    def request(self, req: Any) -> dict:
        """Send one of actorkube.etcd's requests; the answer in canonical form."""
        path, body, kind = _ENDPOINTS[type(req)](req)
        answer = self.call(path, body)
        if "error" in answer and "header" not in answer:
            return {"error": answer["error"], "code": answer["code"]}
        return kind(answer)


# --- requests to JSON --------------------------------------------------------------------


def _range_json(r: RangeRequest) -> dict:
    return {
        "key": _b64(r.key),
        "range_end": _b64(r.range_end),
        "limit": r.limit,
        "revision": r.revision,
        "sort_order": r.sort_order.name,
        "sort_target": r.sort_target.name,
        "serializable": r.serializable,
        "keys_only": r.keys_only,
        "count_only": r.count_only,
        "min_mod_revision": r.min_mod_revision,
        "max_mod_revision": r.max_mod_revision,
        "min_create_revision": r.min_create_revision,
        "max_create_revision": r.max_create_revision,
    }


def _put_json(p: PutRequest) -> dict:
    return {
        "key": _b64(p.key),
        "value": _b64(p.value),
        "lease": p.lease,
        "prev_kv": p.prev_kv,
        "ignore_value": p.ignore_value,
        "ignore_lease": p.ignore_lease,
    }


def _delete_json(d: DeleteRangeRequest) -> dict:
    return {"key": _b64(d.key), "range_end": _b64(d.range_end), "prev_kv": d.prev_kv}


def _compare_json(c: Compare) -> dict:
    body = {
        "key": _b64(c.key),
        "range_end": _b64(c.range_end),
        "target": c.target.name,
        "result": c.result.name,
    }
    field = {
        "VERSION": ("version", c.version),
        "CREATE": ("create_revision", c.create_revision),
        "MOD": ("mod_revision", c.mod_revision),
        "VALUE": ("value", _b64(c.value)),
        "LEASE": ("lease", c.lease),
    }[c.target.name]
    body[field[0]] = field[1]
    return body


def _op_json(op: Any) -> dict:
    if type(op) is RangeRequest:
        return {"request_range": _range_json(op)}
    if type(op) is PutRequest:
        return {"request_put": _put_json(op)}
    if type(op) is DeleteRangeRequest:
        return {"request_delete_range": _delete_json(op)}
    return {"request_txn": _txn_json(op)}


def _txn_json(t: TxnRequest) -> dict:
    return {
        "compare": [_compare_json(c) for c in t.compare],
        "success": [_op_json(op) for op in t.success],
        "failure": [_op_json(op) for op in t.failure],
    }


# --- answers in canonical form -----------------------------------------------------------


def _kv(j: dict | None) -> dict | None:
    if not j:
        return None
    return {
        "key": _unb64(j.get("key")),
        "create_revision": int(j.get("create_revision", 0)),
        "mod_revision": int(j.get("mod_revision", 0)),
        "version": int(j.get("version", 0)),
        "value": _unb64(j.get("value")),
        "lease": int(j.get("lease", 0)),
    }


def _rev(j: dict) -> int:
    return int(j.get("header", {}).get("revision", 0))


def _range_answer(j: dict) -> dict:
    return {
        "revision": _rev(j),
        "kvs": [_kv(kv) for kv in j.get("kvs", [])],
        "more": bool(j.get("more", False)),
        "count": int(j.get("count", 0)),
    }


def _put_answer(j: dict) -> dict:
    return {"revision": _rev(j), "prev_kv": _kv(j.get("prev_kv"))}


def _delete_answer(j: dict) -> dict:
    return {
        "revision": _rev(j),
        "deleted": int(j.get("deleted", 0)),
        "prev_kvs": [_kv(kv) for kv in j.get("prev_kvs", [])],
    }


def _txn_answer(j: dict) -> dict:
    responses = []
    for r in j.get("responses", []):
        ((kind, body),) = r.items()
        responses.append(_OP_ANSWERS[kind](body))
    succeeded = bool(j.get("succeeded", False))
    return {"revision": _rev(j), "succeeded": succeeded, "responses": responses}


_OP_ANSWERS = {
    "response_range": _range_answer,
    "response_put": _put_answer,
    "response_delete_range": _delete_answer,
    "response_txn": _txn_answer,
}


def _revision_only(j: dict) -> dict:
    return {"revision": _rev(j)}


def _grant_answer(j: dict) -> dict:
    return {"revision": _rev(j), "id": int(j.get("ID", 0)), "ttl": int(j.get("TTL", 0))}


def _ttl_answer(j: dict) -> dict:
    # The remaining TTL counts down in real time: only whether the lease exists compares.
    return {
        "revision": _rev(j),
        "id": int(j.get("ID", 0)),
        "exists": int(j.get("TTL", -1)) != -1,
        "granted_ttl": int(j.get("grantedTTL", 0)),
        "keys": sorted(_unb64(k) for k in j.get("keys", [])),
    }


_ENDPOINTS = {
    RangeRequest: lambda r: ("/v3/kv/range", _range_json(r), _range_answer),
    PutRequest: lambda r: ("/v3/kv/put", _put_json(r), _put_answer),
    DeleteRangeRequest: lambda r: ("/v3/kv/deleterange", _delete_json(r), _delete_answer),
    TxnRequest: lambda r: ("/v3/kv/txn", _txn_json(r), _txn_answer),
    CompactionRequest: lambda r: (
        "/v3/kv/compaction",
        {"revision": r.revision, "physical": r.physical},
        _revision_only,
    ),
    LeaseGrantRequest: lambda r: ("/v3/lease/grant", {"TTL": r.ttl, "ID": r.id}, _grant_answer),
    LeaseRevokeRequest: lambda r: ("/v3/lease/revoke", {"ID": r.id}, _revision_only),
    LeaseTimeToLiveRequest: lambda r: (
        "/v3/lease/timetolive",
        {"ID": r.id, "keys": r.keys},
        _ttl_answer,
    ),
}


def canonical(answer: Any) -> dict:
    """One of actorkube.etcd's answers in the same canonical form."""
    if type(answer) is Failure:
        return {"error": answer.error, "code": int(answer.code)}
    return _CANONICAL[type(answer).__name__](answer)


def _our_kv(kv: KeyValue | None) -> dict | None:
    if kv is None:
        return None
    return {
        "key": kv.key,
        "create_revision": kv.create_revision,
        "mod_revision": kv.mod_revision,
        "version": kv.version,
        "value": kv.value,
        "lease": kv.lease,
    }


_CANONICAL = {
    "RangeResponse": lambda r: {
        "revision": r.header.revision,
        "kvs": [_our_kv(kv) for kv in r.kvs],
        "more": r.more,
        "count": r.count,
    },
    "PutResponse": lambda r: {"revision": r.header.revision, "prev_kv": _our_kv(r.prev_kv)},
    "DeleteRangeResponse": lambda r: {
        "revision": r.header.revision,
        "deleted": r.deleted,
        "prev_kvs": [_our_kv(kv) for kv in r.prev_kvs],
    },
    "TxnResponse": lambda r: {
        "revision": r.header.revision,
        "succeeded": r.succeeded,
        "responses": [canonical(x) for x in r.responses],
    },
    "CompactionResponse": lambda r: {"revision": r.header.revision},
    "LeaseRevokeResponse": lambda r: {"revision": r.header.revision},
    "LeaseGrantResponse": lambda r: {"revision": r.header.revision, "id": r.id, "ttl": r.ttl},
    "LeaseTimeToLiveResponse": lambda r: {
        "revision": r.header.revision,
        "id": r.id,
        "exists": r.ttl != -1,
        "granted_ttl": r.granted_ttl,
        "keys": sorted(r.keys),
    },
}
