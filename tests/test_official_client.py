"""The official ``kubernetes`` Python client, unchanged, against the API server's HTTPS
front end with a kubeconfig from ``actorkube.pki``: create, read, list, replace, a
conflict, delete, and a watch. The client is synchronous: it runs in a thread."""

from __future__ import annotations

import pytest
import trio
from http_cluster import serve_cluster
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from actorkube.actor import ActorSystem


def crud_and_watch(config_file: str) -> list[tuple[str, str]]:
    api = client.CoreV1Api(config.new_client_from_config(config_file=config_file))
    made = api.create_namespaced_config_map(
        "default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="c"), data={"k": "1"})
    )
    assert made.metadata.uid and made.data == {"k": "1"}
    assert api.read_namespaced_config_map("c", "default").data == {"k": "1"}
    listed = api.list_namespaced_config_map("default")
    assert [c.metadata.name for c in listed.items] == ["c"]
    start = listed.metadata.resource_version
    made.data = {"k": "2"}
    replaced = api.replace_namespaced_config_map("c", "default", made)
    with pytest.raises(ApiException) as conflict:
        api.replace_namespaced_config_map("c", "default", made)  # made's version is stale
    assert conflict.value.status == 409
    api.delete_namespaced_config_map("c", "default")
    with pytest.raises(ApiException) as missing:
        api.read_namespaced_config_map("c", "default")
    assert missing.value.status == 404
    seen = []
    stream = watch.Watch()
    for event in stream.stream(
        api.list_namespaced_config_map, "default", resource_version=start, timeout_seconds=30
    ):
        seen.append((event["type"], event["object"].metadata.resource_version))
        if event["type"] == "DELETED":
            stream.stop()
    assert seen[0] == ("MODIFIED", replaced.metadata.resource_version)
    return seen


async def test_crud_and_a_watch_through_the_official_client(tmp_path):
    async with ActorSystem() as system, trio.open_nursery() as nursery:
        served = await serve_cluster(system, nursery, pki_dir=tmp_path / "pki")
        config_file = served.kubeconfig(tmp_path / "kubeconfig")
        seen = await trio.to_thread.run_sync(crud_and_watch, str(config_file))
        assert [kind for kind, _ in seen] == ["MODIFIED", "DELETED"]
        nursery.cancel_scope.cancel()
