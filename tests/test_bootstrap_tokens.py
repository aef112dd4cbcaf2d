"""Bootstrap tokens as Kubernetes has them: the API server's bootstrap token
authenticator (its Secret's rules, each expected value from
plugin/pkg/auth/authenticator/token/bootstrap), the token cleaner deleting expired
token Secrets at their expiration, and the bootstrap signer keeping cluster-info's
detached JWS signatures, checked as a joining node checks them. In virtual time."""

from __future__ import annotations

import base64

import pytest
import trio
from virtual_time import wait_for

from actorkube.actor import ActorSystem, WallClock
from actorkube.apiserver import ApiError, ApiRequest, parse_token_file, start_apiserver
from actorkube.apiserver._authn import Authenticator, bootstrap_token_user
from actorkube.apiserver._meta import rfc3339
from actorkube.client import ApiClient
from actorkube.controllers import BootstrapSigner, TokenCleaner
from actorkube.controllers._jws import detached_signature, signature_is_valid
from actorkube.etcd import start_group
from actorkube.node._bootstrap import (
    DiscoveryError,
    ca_cert_hash,
    cluster_info,
    token_secret,
    verify_cluster_info,
)
from actorkube.pki import new_ca

EPOCH = 1_800_000_000.0
TOKEN = "abcdef.0123456789abcdef"
KUBEADM_GROUP = "system:bootstrappers:kubeadm:default-node-token"
TOKENS = (
    "admin-token,admin,1,system:masters\n"
    "cleaner-token,system:serviceaccount:kube-system:token-cleaner,2,"
    '"system:serviceaccounts,system:serviceaccounts:kube-system"\n'
    "signer-token,system:serviceaccount:kube-system:bootstrap-signer,3,"
    '"system:serviceaccounts,system:serviceaccounts:kube-system"\n'
)


def secret(token: str = TOKEN, **data: str) -> dict:
    """A token Secret holding ``data`` (strings; None drops a key)."""
    token_id, value = token.split(".")
    fields = {"token-id": token_id, "token-secret": value,
              "usage-bootstrap-authentication": "true", **data}  # fmt: skip
    return {"metadata": {"name": f"bootstrap-token-{token_id}", "namespace": "kube-system"},
            "type": "bootstrap.kubernetes.io/token",
            "data": {k: base64.b64encode(v.encode()).decode()
                     for k, v in fields.items() if v is not None}}  # fmt: skip


def user(token: str, obj: dict | None, now: float = EPOCH):
    return bootstrap_token_user(token, obj, now)


def test_a_valid_token_is_its_user_in_the_bootstrappers_group():
    found = user(TOKEN, secret(**{"auth-extra-groups": f"{KUBEADM_GROUP},system:bootstrappers:b"}))
    assert found.name == "system:bootstrap:abcdef"
    # GetGroups: the default group and the extra ones, sorted, deduplicated; then the
    # authenticator's system:authenticated.
    assert found.groups == ("system:bootstrappers", "system:bootstrappers:b", KUBEADM_GROUP,
                            "system:authenticated")  # fmt: skip
    assert user(TOKEN, secret()).groups == ("system:bootstrappers", "system:authenticated")


@pytest.mark.parametrize(
    ("token", "data", "why"),
    [
        ("abcdef.0123456789abcdee", {}, "wrong secret"),
        ("abcdef.0123456789abcdef", {"token-id": "abcdeg"}, "token-id does not match"),
        ("abcdef.0123456789abcdef", {"usage-bootstrap-authentication": None}, "no usage"),
        ("abcdef.0123456789abcdef", {"usage-bootstrap-authentication": "false"}, "usage false"),
        ("abcdef.0123456789abcdef", {"expiration": rfc3339(EPOCH - 1)}, "expired"),
        ("abcdef.0123456789abcdef", {"expiration": rfc3339(EPOCH)}, "expires now"),
        ("abcdef.0123456789abcdef", {"expiration": "tomorrow"}, "unparseable expiry"),
        ("abcdef.0123456789abcdef", {"auth-extra-groups": "system:masters"}, "bad group"),
        ("abcdef.0123456789abcdef", {"auth-extra-groups": "system:bootstrappers:"}, "empty"),
        ("abcdef.0123456789ABCDEF", {}, "not a token's form"),
        ("abcdef0123456789abcdef", {}, "no dot"),
    ],
)
def test_a_token_that_does_not_match_its_secret_is_nobody(token, data, why):
    assert user(token, secret(**data)) is None, why


def test_the_secret_must_be_a_token_secret_that_is_not_being_deleted():
    assert user(TOKEN, secret(expiration=rfc3339(EPOCH + 1))) is not None
    assert user(TOKEN, {**secret(), "type": "Opaque"}) is None
    deleting = secret()
    deleting["metadata"]["deletionTimestamp"] = rfc3339(EPOCH)
    assert user(TOKEN, deleting) is None
    assert user(TOKEN, None) is None


def test_the_authenticator_looks_the_secret_up_by_the_token_id():
    asked = []

    def lookup(name: str) -> dict | None:
        asked.append(name)
        return secret() if name == "bootstrap-token-abcdef" else None

    authn = Authenticator(bootstrap_secret=lookup, clock=lambda: EPOCH)
    assert authn.authenticate(TOKEN).name == "system:bootstrap:abcdef"
    assert asked == ["bootstrap-token-abcdef"]
    with pytest.raises(ApiError) as e:
        authn.authenticate("zzzzzz.0123456789abcdef")
    assert e.value.code == 401
    # Audience-agnostic, like a static token: the API server's audience only.
    with pytest.raises(ApiError):
        authn.review(TOKEN, ["vault"])


async def start(system: ActorSystem, **options):
    group = start_group(system, 3)
    api = await start_apiserver(system, group.client(name="apiserver", timeout=30),
                                tokens=parse_token_file(TOKENS), seed=3, **options)  # fmt: skip
    await api.ready()
    return api


async def whoami(api, token: str):
    answer = await api.ref.ask(ApiRequest("create", "selfsubjectreviews",
                                          group="authentication.k8s.io", token=token,
                                          body={}))  # fmt: skip
    return answer.code, answer.body


async def test_a_token_authenticates_through_the_api_server_until_it_expires(autojump_clock):
    async with ActorSystem(clock=WallClock(epoch=EPOCH)) as system:
        api = await start(system)
        admin = ApiClient(system, api.ref, token="admin-token")
        await admin.create("secrets", token_secret(TOKEN, now=EPOCH, ttl=600),
                           namespace="kube-system")  # fmt: skip
        code, review = await wait_for(lambda: _known(api))
        assert code == 201
        assert review["status"]["userInfo"] == {
            "username": "system:bootstrap:abcdef",
            "groups": ["system:bootstrappers", KUBEADM_GROUP, "system:authenticated"],
        }
        node = ApiClient(system, api.ref, token=TOKEN)
        # kubeadm's binding of its token group to system:node-bootstrapper.
        await node.list("certificatesigningrequests", group="certificates.k8s.io")
        with pytest.raises(ApiError) as e:
            await node.list("pods", namespace="default")
        assert e.value.code == 403
        assert (await whoami(api, "abcdef.0000000000000000"))[0] == 401
        await trio.sleep(601)
        assert (await whoami(api, TOKEN))[0] == 401


async def _known(api):
    code, body = await whoami(api, TOKEN)
    return (code, body) if code == 201 else None


async def test_the_token_cleaner_deletes_each_token_at_its_expiration(autojump_clock):
    async with ActorSystem(clock=WallClock(epoch=EPOCH)) as system:
        api = await start(system)
        admin = ApiClient(system, api.ref, token="admin-token")
        tokens = {"soon": "aaaaaa.0123456789abcdef", "later": "bbbbbb.0123456789abcdef",
                  "never": "cccccc.0123456789abcdef", "garbled": "dddddd.0123456789abcdef"}
        for what, token in tokens.items():
            ttl = {"soon": 100, "later": 1000, "never": None, "garbled": None}[what]
            obj = token_secret(token, now=EPOCH, ttl=ttl)
            if what == "garbled":
                obj["data"]["expiration"] = base64.b64encode(b"next week").decode()
            await admin.create("secrets", obj, namespace="kube-system")
        opaque = {"metadata": {"name": "bootstrap-token-eeeeee"}, "type": "Opaque",
                  "stringData": {"expiration": rfc3339(EPOCH - 10)}}  # fmt: skip
        await admin.create("secrets", opaque, namespace="kube-system")
        cleaner = TokenCleaner(api.ref, token="cleaner-token")
        system.spawn(lambda: cleaner, name="token-cleaner")

        async def left() -> set[str]:
            listed = await admin.list("secrets", namespace="kube-system")
            return {s["metadata"]["name"][len("bootstrap-token-"):] for s in listed["items"]
                    if s["metadata"]["name"].startswith("bootstrap-token-")}  # fmt: skip

        await wait_for(lambda: _when(left, lambda names: "dddddd" not in names))
        assert await left() == {"aaaaaa", "bbbbbb", "cccccc", "eeeeee"}  # not an Opaque one
        await trio.sleep(EPOCH + 99 - system.clock.now())
        assert "aaaaaa" in await left()
        await trio.sleep(2)
        assert await left() == {"bbbbbb", "cccccc", "eeeeee"}
        await trio.sleep(EPOCH + 999 - system.clock.now())
        assert "bbbbbb" in await left()
        await trio.sleep(2)
        assert await left() == {"cccccc", "eeeeee"}
        assert cleaner.errors == 0


async def _when(read, test) -> bool:
    return test(await read())


def test_the_detached_signature_is_go_joses_hs256_without_its_payload():
    signature = detached_signature("content", "abcdef", "0123456789abcdef")
    header, payload, mac = signature.split(".")
    assert payload == ""
    assert base64.urlsafe_b64decode(header + "==") == b'{"alg":"HS256","kid":"abcdef"}'
    assert len(mac) == 43  # 32 bytes, base64url without padding
    assert signature_is_valid(signature, "content", "abcdef", "0123456789abcdef")
    assert not signature_is_valid(signature, "content!", "abcdef", "0123456789abcdef")
    assert not signature_is_valid(signature, "content", "abcdef", "0123456789abcdeg")


async def test_the_bootstrap_signer_signs_cluster_info_with_each_signing_token(autojump_clock):
    ca = new_ca()
    pin = ca_cert_hash(ca.cert)
    async with ActorSystem(clock=WallClock(epoch=EPOCH)) as system:
        api = await start(system)
        admin = ApiClient(system, api.ref, token="admin-token")
        info = cluster_info("https://127.0.0.1:6443", ca.cert)
        info["data"]["jws-kubeconfig-zzzzzz"] = "stale..signature"
        await admin.create("configmaps", info, namespace="kube-public")
        signing = "aaaaaa.0123456789abcdef"
        short = "bbbbbb.0123456789abcdef"
        auth_only = "cccccc.0123456789abcdef"
        await admin.create("secrets", token_secret(signing, now=EPOCH, ttl=None),
                           namespace="kube-system")  # fmt: skip
        await admin.create("secrets", token_secret(short, now=EPOCH, ttl=300),
                           namespace="kube-system")  # fmt: skip
        await admin.create("secrets", token_secret(auth_only, now=EPOCH, ttl=None,
                                                   usages=("authentication",)),
                           namespace="kube-system")  # fmt: skip
        signer = BootstrapSigner(api.ref, token="signer-token")
        system.spawn(lambda: signer, name="bootstrap-signer")

        async def signatures() -> set[str]:
            data = (await admin.get("configmaps", "cluster-info", namespace="kube-public"))["data"]
            return {k.removeprefix("jws-kubeconfig-") for k in data if k.startswith("jws-")}

        await wait_for(lambda: _when(signatures, lambda ids: ids == {"aaaaaa", "bbbbbb"}))
        read = await admin.get("configmaps", "cluster-info", namespace="kube-public")
        assert verify_cluster_info(read, signing, pin).server == "https://127.0.0.1:6443"
        assert verify_cluster_info(read, short, pin).ca == ca.cert
        with pytest.raises(DiscoveryError, match='token id "cccccc" is invalid for this cluster'):
            verify_cluster_info(read, auth_only, pin)
        with pytest.raises(DiscoveryError, match="failed to verify JWS signature"):
            verify_cluster_info(read, "aaaaaa.0123456789abcdee", pin)
        with pytest.raises(DiscoveryError, match="none of the public keys"):
            verify_cluster_info(read, signing, ca_cert_hash(new_ca().cert))

        # The short token expires: its signature goes (before any cleaner deletes it).
        await trio.sleep(301)
        assert await signatures() == {"aaaaaa"}
        # A deleted token's signature goes too; a changed kubeconfig is signed again.
        await admin.delete("secrets", "bootstrap-token-aaaaaa", namespace="kube-system")
        await wait_for(lambda: _when(signatures, lambda ids: not ids))
        await admin.create("secrets", token_secret(signing, now=system.clock.now(), ttl=None),
                           namespace="kube-system")  # fmt: skip
        await wait_for(lambda: _when(signatures, lambda ids: ids == {"aaaaaa"}))
        moved = cluster_info("https://10.0.0.1:6443", ca.cert)["data"]["kubeconfig"]
        current = await admin.get("configmaps", "cluster-info", namespace="kube-public")
        await admin.update("configmaps", {**current, "data": {**current["data"],
                                                              "kubeconfig": moved}},
                           namespace="kube-public")  # fmt: skip

        async def moved_server() -> str | None:
            got = await admin.get("configmaps", "cluster-info", namespace="kube-public")
            try:
                return verify_cluster_info(got, signing, pin).server
            except DiscoveryError:
                return None

        assert await wait_for(moved_server) == "https://10.0.0.1:6443"
        assert signer.errors == 0


def test_the_signature_matches_kubernetes_own_test_vector():
    """The vector of Kubernetes' bootstrap JWS tests: a signature kubeadm checks."""
    content = "Hello from the other side. I must have called a thousand times."
    assert detached_signature(content, "joshua", "my voice is my passcode") == (
        "eyJhbGciOiJIUzI1NiIsImtpZCI6Impvc2h1YSJ9..VShe2taLd-YTrmWuRkcL_8QTNDHYxQIEBsAYYiIj1_8")
