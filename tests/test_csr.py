"""CertificateSigningRequests as Kubernetes has them: validation and the strategies of
the object, status and approval (each expected message from
pkg/apis/certificates/validation and pkg/registry/certificates), the requester the API
server writes, the certificate admission plugins; the approver and the signer; a whole
kubeadm-style join in process ending with a client certificate the API server accepts;
and the real kubectl's ``get csr`` and ``certificate approve|deny``."""

from __future__ import annotations

import base64
import datetime
import ipaddress

import pytest
import trio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from http_cluster import serve_cluster
from kubectl_run import kubectl
from virtual_time import wait_for

from actorkube.actor import ActorSystem, WallClock
from actorkube.apiserver import ApiError, ApiRequest, parse_token_file, start_apiserver
from actorkube.apiserver._csr import validate_csr
from actorkube.client import ApiClient
from actorkube.controllers import BootstrapSigner, CSRApprovingController, CSRSigningController
from actorkube.controllers import _certificates as certificates
from actorkube.etcd import start_group
from actorkube.node._bootstrap import (
    ClusterInfo,
    ca_cert_hash,
    cluster_info,
    create_token,
    csr_object,
    join,
    make_node_csr,
    token_secret,
)
from actorkube.pki import new_ca

EPOCH = 1_800_000_000.0
G = "certificates.k8s.io"
CSRS = "certificatesigningrequests"
KUBELET = "kubernetes.io/kube-apiserver-client-kubelet"
CLIENT = "kubernetes.io/kube-apiserver-client"
ACCOUNT = '"system:serviceaccounts,system:serviceaccounts:kube-system"'
TOKENS = (
    "admin-token,admin,1,system:masters\n"
    "alice-token,alice,2\n"
    "n1-token,system:node:n1,3,system:nodes\n"
    f"csr-token,system:serviceaccount:kube-system:certificate-controller,4,{ACCOUNT}\n"
    f"signer-token,system:serviceaccount:kube-system:bootstrap-signer,5,{ACCOUNT}\n"
)
NODE_TOKEN = "abcdef.0123456789abcdef"
KUBEADM_GROUP = "system:bootstrappers:kubeadm:default-node-token"
OTHER_TOKEN = "ghijkl.0123456789abcdef"


def request(cn: str, orgs: tuple[str, ...] = (), dns: tuple[str, ...] = (),
            ips: tuple[str, ...] = ()) -> bytes:  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([*(x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])  # fmt: skip
    builder = x509.CertificateSigningRequestBuilder().subject_name(name)
    sans = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def csr(name: str, pem: bytes | None = None, signer: str = KUBELET,
        usages: tuple[str, ...] = ("digital signature", "client auth"),
        **spec) -> dict:  # fmt: skip
    pem = pem if pem is not None else request("system:node:n1", ("system:nodes",))
    return {"apiVersion": f"{G}/v1", "kind": "CertificateSigningRequest",
            "metadata": {"name": name},
            "spec": {"request": base64.b64encode(pem).decode(), "signerName": signer,
                     "usages": list(usages), **spec}}  # fmt: skip


def causes(e: ApiError) -> list[tuple[str, str]]:
    return [(c["field"], c["message"]) for c in e.status["details"]["causes"]]


# --- validation, pure ---------------------------------------------------------------------


def test_validation_of_a_new_request():
    assert validate_csr(csr("ok"), None) == []
    bad = csr("bad", b"not a pem", signer="", usages=())
    bad["spec"]["expirationSeconds"] = 599
    found = {(e.field, e.message()) for e in validate_csr(bad, None)}
    assert found == {
        ("spec.request", 'spec.request: Invalid value: "bm90IGEgcGVt": PEM block type must be '
                         "CERTIFICATE REQUEST"),
        ("spec.usages", "spec.usages: Required value"),
        ("spec.signerName", "spec.signerName: Required value"),
        ("spec.expirationSeconds", "spec.expirationSeconds: Invalid value: 599: may not "
                                   "specify a duration less than 600 seconds (10 minutes)"),
    }  # fmt: skip
    odd = csr("odd", usages=("client auth", "client auth", "flying"), signer="example/x")
    found = {e.message() for e in validate_csr(odd, None)}
    assert "spec.usages[1]: Duplicate value: \"client auth\"" in found
    assert any(m.startswith('spec.usages[2]: Unsupported value: "flying": supported values: ')
               for m in found)  # fmt: skip
    assert ('spec.signerName: Invalid value: "example": should be a domain with at least two '
            "segments separated by dots") in found
    legacy = csr("legacy", signer="kubernetes.io/legacy-unknown")
    assert [e.message() for e in validate_csr(legacy, None)] == [
        'spec.signerName: Invalid value: "kubernetes.io/legacy-unknown": the legacy signerName '
        "is not allowed via this API version"]  # fmt: skip


def test_conditions_are_one_of_each_and_never_approved_and_denied():
    both = csr("both")
    both["status"] = {"conditions": [{"type": "Approved", "status": "True"},
                                     {"type": "Denied", "status": "True"},
                                     {"type": "Failed", "status": "False"},
                                     {"type": "Custom", "status": "Maybe"},
                                     {"type": "Custom", "status": "True"}]}  # fmt: skip
    found = [e.message() for e in validate_csr(both, None)]
    assert found == [
        'status.conditions[1].type: Invalid value: "Denied": Approved and Denied conditions are '
        "mutually exclusive",
        'status.conditions[2].status: Unsupported value: "False": supported values: "True"',
        'status.conditions[3].status: Unsupported value: "Maybe": supported values: "False", '
        '"True", "Unknown"',
        'status.conditions[4].type: Duplicate value: "Custom"',
    ]  # fmt: skip


# --- through the API server ------------------------------------------------------------------


async def start(system: ActorSystem, ca=None):
    group = start_group(system, 3)
    api = await start_apiserver(system, group.client(name="apiserver", timeout=30),
                                tokens=parse_token_file(TOKENS), anonymous=True, seed=4,
                                client_ca=ca.cert if ca is not None else None)  # fmt: skip
    await api.ready()
    return api


async def bootstrap_token(admin: ApiClient, token: str, groups: tuple[str, ...], now: float):
    await admin.create("secrets", token_secret(token, now=now, groups=groups),
                       namespace="kube-system")  # fmt: skip


async def authenticated(client: ApiClient) -> bool:
    try:
        await client.list(CSRS, group=G)
    except ApiError as e:
        assert e.code in (401, 403)
        return e.code == 403
    return True


async def test_the_server_says_who_asked_and_what_it_may_change(autojump_clock):
    async with ActorSystem(clock=WallClock(epoch=EPOCH)) as system:
        api = await start(system)
        admin = ApiClient(system, api.ref, token="admin-token")
        await bootstrap_token(admin, NODE_TOKEN, (KUBEADM_GROUP,), EPOCH)
        node = ApiClient(system, api.ref, token=NODE_TOKEN)
        await wait_for(lambda: authenticated(node))
        spoofed = csr("spoof", username="admin", groups=["system:masters"],
                      extra={"a": ["b"]}, uid="0")  # fmt: skip
        spoofed["status"] = {"conditions": [{"type": "Approved", "status": "True"}]}
        made = await node.create(CSRS, spoofed, group=G)
        assert made["spec"]["username"] == "system:bootstrap:abcdef"
        assert made["spec"]["groups"] == ["system:bootstrappers", KUBEADM_GROUP,
                                          "system:authenticated"]  # fmt: skip
        assert "extra" not in made["spec"] and "uid" not in made["spec"]
        assert not made.get("status")  # nobody creates a pre-approved request
        alice = ApiClient(system, api.ref, token="alice-token")
        with pytest.raises(ApiError) as e:
            await alice.create(CSRS, csr("alices"), group=G)
        assert e.value.code == 403

        # The object itself: the spec and status stay, metadata changes.
        changed = {**made, "spec": {**made["spec"], "signerName": "example.com/x"},
                   "status": {"certificate": "Zm9v"},
                   "metadata": {**made["metadata"], "labels": {"a": "b"}}}  # fmt: skip
        updated = await admin.update(CSRS, changed, group=G)
        assert updated["spec"] == made["spec"] and not updated.get("status")
        assert updated["metadata"]["labels"] == {"a": "b"}

        # status cannot approve; approval can, with timestamps; not approved and denied.
        approved = {**updated, "status": {"conditions": [{"type": "Approved", "status": "True",
                                                          "reason": "Because"}]}}  # fmt: skip
        with pytest.raises(ApiError) as e:
            await admin.update_status(CSRS, approved, group=G)
        assert causes(e.value) == [("status.conditions", 'Forbidden: updates may not add a '
                                                         'condition of type "Approved"')]
        approved["status"]["certificate"] = "Zm9v"  # approval keeps the stored certificate
        done = await admin.update(CSRS, approved, group=G, subresource="approval")
        [condition] = done["status"]["conditions"]
        assert condition["lastUpdateTime"] == condition["lastTransitionTime"]
        assert "certificate" not in done["status"]
        denied = {**done, "status": {"conditions": [*done["status"]["conditions"],
                                                    {"type": "Denied", "status": "True"}]}}
        with pytest.raises(ApiError) as e:
            await admin.update(CSRS, denied, group=G, subresource="approval")
        assert causes(e.value) == [("status.conditions[1].type", 'Invalid value: "Denied": '
                                    "Approved and Denied conditions are mutually exclusive")]
        with pytest.raises(ApiError) as e:
            await admin.update(CSRS, {**done, "status": {}}, group=G, subresource="approval")
        assert causes(e.value) == [("status.conditions", 'Forbidden: updates may not remove a '
                                                         'condition of type "Approved"')]

        # The certificate: through status only, well-formed, once.
        with pytest.raises(ApiError) as e:
            await admin.update_status(CSRS, {**done, "status": {**done["status"],
                                                                 "certificate": "Zm9v"}},
                                      group=G)  # fmt: skip
        assert causes(e.value) == [("status.certificate", 'Invalid value: "<certificate data>": '
                                    "must contain at least one CERTIFICATE PEM block")]
        ca = new_ca()
        pem = base64.b64encode(ca.cert).decode()
        issued = await admin.update_status(CSRS, {**done, "status": {**done["status"],
                                                                      "certificate": pem}},
                                           group=G)  # fmt: skip
        assert issued["status"]["certificate"] == pem
        again = base64.b64encode(new_ca().cert).decode()
        with pytest.raises(ApiError) as e:
            await admin.update_status(CSRS, {**issued, "status": {**issued["status"],
                                                                   "certificate": again}},
                                      group=G)  # fmt: skip
        assert causes(e.value) == [("status.certificate", "Forbidden: updates may not modify "
                                                          "existing certificate content")]
        pending = await node.create(CSRS, csr("pending"), group=G)
        with pytest.raises(ApiError) as e:
            await admin.update_status(CSRS, {**pending, "status": {"certificate": pem}}, group=G)
        assert causes(e.value) == [("status.certificate", "Forbidden: a certificate may only be "
                                                          "set on an approved request")]
        with pytest.raises(ApiError) as e:
            await admin.patch(CSRS, "pending", {"spec": {"usages": ["any"]}}, group=G,
                              content_type="application/apply-patch+yaml")  # fmt: skip
        assert e.value.code == 405


async def test_certificate_admission(autojump_clock):
    async with ActorSystem(clock=WallClock(epoch=EPOCH)) as system:
        api = await start(system)
        admin = ApiClient(system, api.ref, token="admin-token")
        # Alice may update approvals and statuses, but approve and sign for example.com only.
        role = {"metadata": {"name": "approver"}, "rules": [
            {"apiGroups": [G], "resources": [CSRS], "verbs": ["get", "create"]},
            {"apiGroups": [G], "resources": [f"{CSRS}/approval", f"{CSRS}/status"],
             "verbs": ["update"]},
            {"apiGroups": [G], "resources": ["signers"], "verbs": ["approve", "sign"],
             "resourceNames": ["example.com/*"]}]}  # fmt: skip
        await admin.create("clusterroles", role, group="rbac.authorization.k8s.io")
        binding = {"metadata": {"name": "approver"},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                               "name": "approver"},
                   "subjects": [{"kind": "User", "name": "alice"}]}  # fmt: skip
        await admin.create("clusterrolebindings", binding, group="rbac.authorization.k8s.io")
        alice = ApiClient(system, api.ref, token="alice-token")

        async def allowed() -> bool:
            try:
                await alice.get(CSRS, "nothing", group=G)
            except ApiError as e:
                return e.code == 404
            return True

        await wait_for(allowed)
        ours = await admin.create(CSRS, csr("ours", signer="example.com/ours"), group=G)
        kubelet = await admin.create(CSRS, csr("kubelet"), group=G)
        approve = {"conditions": [{"type": "Approved", "status": "True"}]}
        with pytest.raises(ApiError) as e:
            await alice.update(CSRS, {**kubelet, "status": approve}, group=G,
                               subresource="approval")  # fmt: skip
        assert e.value.status["message"] == (
            f'{CSRS}.{G} "kubelet" is forbidden: user not permitted to approve requests with '
            f'signerName "{KUBELET}"')  # fmt: skip
        approved = await alice.update(CSRS, {**ours, "status": approve}, group=G,
                                      subresource="approval")  # fmt: skip
        pem = base64.b64encode(new_ca().cert).decode()
        await alice.update_status(CSRS, {**approved, "status": {**approved["status"],
                                                                "certificate": pem}},
                                  group=G)  # fmt: skip
        kubelet = await admin.update(CSRS, {**kubelet, "status": approve}, group=G,
                                     subresource="approval")  # fmt: skip
        with pytest.raises(ApiError) as e:
            await alice.update_status(CSRS, {**kubelet, "status": {**kubelet["status"],
                                                                   "certificate": pem}},
                                      group=G)  # fmt: skip
        assert "user not permitted to sign requests with signerName" in e.value.status["message"]
        # A Failed condition is a signer's to set too: without sign, no condition either.
        failed = {"type": "Failed", "status": "True", "reason": "Nope", "message": "no"}
        with pytest.raises(ApiError) as e:
            await alice.update_status(CSRS, {**kubelet, "status": {
                **kubelet["status"], "conditions": [*kubelet["status"]["conditions"],
                                                    failed]}}, group=G)  # fmt: skip
        assert "user not permitted to sign requests with signerName" in e.value.status["message"]
        # Bodies of the wrong shape are refused as bad requests, not 500s.
        for body in ({**csr("shapeless"), "spec": [1]}, {**csr("shapeless"), "spec": "x"}):
            with pytest.raises(ApiError) as e:
                await admin.create(CSRS, body, group=G)
            assert e.value.code in (400, 422), e.value.status
        with pytest.raises(ApiError) as e:
            await admin.update(CSRS, {**kubelet, "status": {"conditions": {}}}, group=G,
                               subresource="approval")  # fmt: skip
        assert e.value.code == 400
        # CertificateSubjectRestriction.
        masters = csr("masters", request("eve", ("system:masters",)), signer=CLIENT)
        with pytest.raises(ApiError) as e:
            await admin.create(CSRS, masters, group=G)
        assert e.value.status["message"] == (
            f'{CSRS}.{G} "masters" is forbidden: use of {CLIENT} signer with system:masters '
            "group is not allowed")  # fmt: skip


# --- the controllers -----------------------------------------------------------------------


def controllers(system: ActorSystem, api, ca):
    approver = CSRApprovingController(api.ref, token="csr-token")
    signer = CSRSigningController(api.ref, token="csr-token", ca=ca)
    system.spawn(lambda: approver, name="csrapproving")
    system.spawn(lambda: signer, name="csrsigning")
    return approver, signer


def conditions(obj: dict) -> dict[str, dict]:
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or ()}


async def who(api, certificate_pem: bytes) -> dict | None:
    der = x509.load_pem_x509_certificate(certificate_pem).public_bytes(serialization.Encoding.DER)
    answer = await api.ref.ask(ApiRequest("create", "selfsubjectreviews",
                                          group="authentication.k8s.io", body={},
                                          client_certificate=der))  # fmt: skip
    return answer.body["status"]["userInfo"] if answer.code == 201 else None


async def test_the_approver_approves_node_clients_and_the_signer_issues(autojump_clock):
    ca = new_ca()
    async with ActorSystem(clock=WallClock(epoch=EPOCH)) as system:
        api = await start(system, ca)
        admin = ApiClient(system, api.ref, token="admin-token")
        await bootstrap_token(admin, NODE_TOKEN, (KUBEADM_GROUP,), EPOCH)
        await bootstrap_token(admin, OTHER_TOKEN, ("system:bootstrappers:other",), EPOCH)
        # Other bootstrappers may ask for certificates, not have node ones approved.
        binding = {"metadata": {"name": "other-bootstrappers"},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                               "name": "system:node-bootstrapper"},
                   "subjects": [{"kind": "Group", "name": "system:bootstrappers:other"}]}
        await admin.create("clusterrolebindings", binding, group="rbac.authorization.k8s.io")
        node, other = (ApiClient(system, api.ref, token=t) for t in (NODE_TOKEN, OTHER_TOKEN))
        n1 = ApiClient(system, api.ref, token="n1-token")
        await wait_for(lambda: authenticated(node))
        await wait_for(lambda: authenticated(other))
        approver, signer = controllers(system, api, ca)

        await node.create(CSRS, csr("bootstrap", request("system:node:n1", ("system:nodes",)),
                                    expirationSeconds=3600), group=G)  # fmt: skip
        await n1.create(CSRS, csr("renewal", request("system:node:n1", ("system:nodes",)),
                                  usages=("digital signature", "key encipherment",
                                          "client auth")), group=G)  # fmt: skip
        await n1.create(CSRS, csr("neighbour", request("system:node:n2", ("system:nodes",))),
                        group=G)  # fmt: skip
        await other.create(CSRS, csr("stranger"), group=G)
        served = request("system:node:n1", ("system:nodes",), dns=("n1",))
        await admin.create(CSRS, csr("served", served), group=G)
        await admin.create(CSRS, csr("user", request("bob", ("devs",)), signer=CLIENT,
                                     usages=("client auth",)), group=G)  # fmt: skip

        async def issued(name: str) -> dict | None:
            got = await admin.get(CSRS, name, group=G)
            return got if got.get("status", {}).get("certificate") else None

        bootstrap = await wait_for(lambda: issued("bootstrap"))
        approval = conditions(bootstrap)["Approved"]
        assert (approval["status"], approval["reason"], approval["message"]) == (
            "True", "AutoApproved",
            "Auto approving kubelet client certificate after SubjectAccessReview.")
        renewal = await wait_for(lambda: issued("renewal"))
        assert conditions(renewal)["Approved"]["message"] == (
            "Auto approving self kubelet client certificate after SubjectAccessReview.")
        pem = base64.b64decode(bootstrap["status"]["certificate"])
        assert await who(api, pem) == {"username": "system:node:n1",
                                       "groups": ["system:nodes", "system:authenticated"]}
        cert = x509.load_pem_x509_certificate(pem)
        lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
        assert lifetime == datetime.timedelta(seconds=3600 + 300)  # short: not backdated at the end
        year = x509.load_pem_x509_certificate(base64.b64decode(renewal["status"]["certificate"]))
        assert year.not_valid_after_utc - year.not_valid_before_utc == datetime.timedelta(days=365)

        # Not recognized or not allowed: left pending.
        await trio.sleep(60)
        for name in ("neighbour", "stranger", "served", "user"):
            left = await admin.get(CSRS, name, group=G)
            assert not conditions(left) and not left.get("status", {}).get("certificate"), name
        assert approver.errors > 0  # neighbour and stranger: recognized, not allowed

        # A person approves: kube-apiserver-client is signed; a kubelet-client request
        # that is not a node client's fails.
        for name in ("user", "served"):
            left = await admin.get(CSRS, name, group=G)
            left["status"] = {"conditions": [{"type": "Approved", "status": "True"}]}
            await admin.update(CSRS, left, group=G, subresource="approval")
        user = await wait_for(lambda: issued("user"))
        assert await who(api, base64.b64decode(user["status"]["certificate"])) == {
            "username": "bob", "groups": ["devs", "system:authenticated"]}

        async def failed() -> dict | None:
            got = await admin.get(CSRS, "served", group=G)
            return conditions(got).get("Failed")

        failure = await wait_for(failed)
        assert (failure["reason"], failure["message"]) == ("SignerValidationFailure",
                                                           "DNS subjectAltNames are not allowed")
        assert signer.errors == 0


def test_the_signers_rules():
    node = x509.load_pem_x509_csr(request("system:node:n1", ("system:nodes",)))
    both = {"digital signature", "client auth"}
    assert certificates.kubelet_client_problem(node, both) == ""
    assert certificates.kubelet_client_problem(node, both | {"key encipherment"}) == ""
    assert certificates.kubelet_client_problem(node, both | {"server auth"}) == (
        "usages did not match [client auth digital signature key encipherment]")
    outsider = x509.load_pem_x509_csr(request("system:node:n1", ("system:nodes", "x")))
    assert certificates.kubelet_client_problem(outsider, both) == (
        "subject organization is not system:nodes")
    named = x509.load_pem_x509_csr(request("n1", ("system:nodes",)))
    assert certificates.kubelet_client_problem(named, both) == (
        "subject common name does not begin with system:node:")
    serving = x509.load_pem_x509_csr(request("system:node:n1", ("system:nodes",),
                                             ips=("10.0.0.1",)))  # fmt: skip
    assert certificates.kubelet_serving_problem(serving, {"digital signature", "server auth"}) == ""
    assert certificates.kubelet_serving_problem(node, {"digital signature", "server auth"}) == (
        "DNS or IP subjectAltName is required")
    assert certificates.api_client_usages_problem(["client auth", "server auth"]) == (
        "invalid usage for client certificate: server auth")
    assert certificates.api_client_usages_problem(["digital signature"]) == (
        "missing required usage for client certificate: client auth")
    assert certificates.duration(None, certificates.YEAR) == certificates.YEAR
    assert certificates.duration(60, certificates.YEAR) == 600
    assert certificates.duration(10 * certificates.YEAR, certificates.YEAR) == certificates.YEAR


# --- a whole join ---------------------------------------------------------------------------


async def test_a_node_joins_with_a_token_and_ends_with_a_client_certificate(autojump_clock):
    ca = new_ca()
    async with ActorSystem(clock=WallClock(epoch=EPOCH)) as system:
        api = await start(system, ca)
        admin = ApiClient(system, api.ref, token="admin-token")
        # kubeadm init: cluster-info, the controllers; kubeadm token create.
        await admin.create("configmaps", cluster_info("https://127.0.0.1:6443", ca.cert),
                           namespace="kube-public")  # fmt: skip
        system.spawn(lambda: BootstrapSigner(api.ref, token="signer-token"),
                     name="bootstrap-signer")  # fmt: skip
        controllers(system, api, ca)
        token = await create_token(admin, now=system.clock.now())
        anonymous = ApiClient(system, api.ref)

        def as_token(cluster: ClusterInfo, bearer: str) -> ApiClient:
            assert cluster.server == "https://127.0.0.1:6443" and cluster.ca == ca.cert
            return ApiClient(system, api.ref, token=bearer)

        async def signed() -> bool:
            got = await anonymous.get("configmaps", "cluster-info", namespace="kube-public")
            return f"jws-kubeconfig-{token.split('.')[0]}" in got["data"]

        await wait_for(signed)  # (kubeadm join retries discovery until then)
        await wait_for(lambda: authenticated(ApiClient(system, api.ref, token=token)))
        credentials = await join(anonymous, as_token, token, ca_cert_hash(ca.cert), "n1")
        assert await who(api, credentials.client.cert) == {
            "username": "system:node:n1", "groups": ["system:nodes", "system:authenticated"]}
        key = serialization.load_pem_private_key(credentials.client.key, password=None)
        cert = x509.load_pem_x509_certificate(credentials.client.cert)
        assert cert.public_key().public_numbers() == key.public_key().public_numbers()
        # The node, now itself, may act as a node.
        nodes = await admin.list(CSRS, group=G)
        assert [c["spec"]["username"] for c in nodes["items"]] == [
            f"system:bootstrap:{token.split('.')[0]}"]


def test_a_node_request_is_what_the_approver_recognizes():
    key_pem, csr_pem = make_node_csr("n7")
    obj = csr_object(csr_pem)
    assert obj["metadata"]["name"].startswith("node-csr-")
    parsed = x509.load_pem_x509_csr(csr_pem)
    assert parsed.subject.rfc4514_string() == "CN=system:node:n7,O=system:nodes"
    obj["spec"]["username"] = "system:bootstrap:abcdef"
    assert [w for w, _ in certificates.recognized(obj, parsed)] == ["nodeclient"]
    assert serialization.load_pem_private_key(key_pem, password=None)


# --- the real kubectl --------------------------------------------------------------------------


async def test_kubectl_gets_approves_and_denies_csrs(tmp_path):
    async with ActorSystem() as system, trio.open_nursery() as nursery:
        served = await serve_cluster(system, nursery, pki_dir=tmp_path / "pki")
        admin = served.kubeconfig(tmp_path / "admin.kubeconfig")
        cache = tmp_path / "cache"
        client = ApiClient(system, served.api.ref, token="admin-token")
        await client.create(CSRS, csr("node-csr-one"), group=G)
        await client.create(CSRS, csr("node-csr-two", expirationSeconds=3600), group=G)

        code, out, err = await kubectl(admin, cache, "get", "csr")
        assert code == 0, err
        header, *rows = out.strip().split("\n")
        assert header.split() == ["NAME", "AGE", "SIGNERNAME", "REQUESTOR", "REQUESTEDDURATION",
                                  "CONDITION"]  # fmt: skip
        assert [r.split()[0] for r in rows] == ["node-csr-one", "node-csr-two"]
        assert rows[0].split()[2:] == [KUBELET, "admin", "<none>", "Pending"]
        assert rows[1].split()[2:] == [KUBELET, "admin", "60m", "Pending"]

        code, out, err = await kubectl(admin, cache, "certificate", "approve", "node-csr-one")
        assert code == 0, err
        assert out.strip() == f"certificatesigningrequest.{G}/node-csr-one approved"
        code, out, err = await kubectl(admin, cache, "certificate", "deny", "node-csr-two")
        assert code == 0, err
        assert out.strip() == f"certificatesigningrequest.{G}/node-csr-two denied"
        code, out, err = await kubectl(admin, cache, "get", "csr", "--no-headers")
        assert code == 0, err
        assert [r.split()[-1] for r in out.strip().split("\n")] == ["Approved", "Denied"]
        one = await client.get(CSRS, "node-csr-one", group=G)
        approved = conditions(one)["Approved"]
        assert (approved["reason"], approved["message"]) == (
            "KubectlApprove", "This CSR was approved by kubectl certificate approve.")
        # Denied and approved are exclusive: kubectl checks it first (the server would too).
        code, out, err = await kubectl(admin, cache, "certificate", "approve", "node-csr-two")
        assert (code, err.strip()) == (
            1, 'error: certificate signing request "node-csr-two" is already Denied')
        nursery.cancel_scope.cancel()
