"""Authentication: the static token file and service-account JWTs, as kube-apiserver
authenticates them (--token-auth-file format; TokenRequest claims; anonymous only when
enabled; an unknown token is 401, not anonymous)."""

from __future__ import annotations

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from actorkube.apiserver._authn import (
    Authenticator,
    InvalidTokenFile,
    ServiceAccountTokens,
    new_signing_key,
    parse_token_file,
)
from actorkube.apiserver._errors import ApiError

KEY = new_signing_key()


def test_the_token_file_names_users_and_their_groups() -> None:
    users = parse_token_file('t1,alice,1\nt2,bob,2,"dev,ops"\n\n')
    assert users["t1"].name == "alice" and users["t1"].groups == ("system:authenticated",)
    assert users["t2"].groups == ("dev", "ops", "system:authenticated")
    with pytest.raises(InvalidTokenFile, match="line 1"):
        parse_token_file("only-a-token\n")


def test_tokens_authenticate_and_unknown_ones_are_401() -> None:
    auth = Authenticator(tokens=parse_token_file("t1,alice,1\n"), clock=lambda: 0)
    assert auth.authenticate("t1").name == "alice"
    for token in ("t2", "", "t1 "):
        with pytest.raises(ApiError) as denied:
            auth.authenticate(token)
        assert denied.value.code == 401
    anonymous = Authenticator(anonymous=True, clock=lambda: 0)
    assert anonymous.authenticate("").name == "system:anonymous"
    assert anonymous.authenticate("").groups == ("system:unauthenticated",)
    with pytest.raises(ApiError):
        anonymous.authenticate("forged")  # a bad token is never anonymous


def test_service_account_tokens_verify_within_their_lifetime_only() -> None:
    tokens = ServiceAccountTokens(KEY)
    token = tokens.issue("team", "builder", "uid-1", now=1000, expires_in=600)
    auth = Authenticator(service_accounts=tokens, clock=lambda: 1100)
    user = auth.authenticate(token)
    assert user.name == "system:serviceaccount:team:builder" and user.uid == "uid-1"
    assert set(user.groups) == {
        "system:serviceaccounts",
        "system:serviceaccounts:team",
        "system:authenticated",
    }
    for now in (999, 1600, 5000):  # before nbf, at exp, long after
        late = Authenticator(service_accounts=tokens, clock=lambda now=now: now)
        with pytest.raises(ApiError):
            late.authenticate(token)


def test_a_token_signed_by_another_key_or_for_a_gone_account_fails() -> None:
    ours = ServiceAccountTokens(KEY)
    theirs = ServiceAccountTokens(new_signing_key())
    forged = theirs.issue("team", "builder", "uid-1", now=1000)
    auth = Authenticator(service_accounts=ours, clock=lambda: 1100)
    with pytest.raises(ApiError):
        auth.authenticate(forged)
    token = ours.issue("team", "builder", "uid-1", now=1000)
    recreated = Authenticator(
        service_accounts=ours,
        account_exists=lambda ns, name, uid: uid == "uid-2",  # deleted and made again
        clock=lambda: 1100,
    )
    with pytest.raises(ApiError):
        recreated.authenticate(token)
    other_issuer = ServiceAccountTokens(KEY, issuer="https://elsewhere")
    with pytest.raises(ApiError):
        auth.authenticate(other_issuer.issue("team", "builder", "uid-1", now=1000))


def test_client_certificates_of_the_client_ca_authenticate_and_others_are_401() -> None:
    import time

    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    from actorkube.apiserver._authn import Authenticator
    from actorkube.apiserver._rbac import UserInfo
    from actorkube.pki import issue, new_ca

    def der(pair) -> bytes:
        return x509.load_pem_x509_certificate(pair.cert).public_bytes(Encoding.DER)

    ca = new_ca()
    now = time.time()
    authn = Authenticator(
        client_ca=ca.cert, tokens={"t": UserInfo("token-user")}, clock=lambda: now
    )
    user = authn.authenticate("t", der(issue(ca, "dana", organizations=("devs", "oncall"))))
    assert (user.name, user.groups) == ("dana", ("devs", "oncall", "system:authenticated"))
    refused = [
        issue(new_ca("other"), "admin", organizations=("system:masters",)),  # another CA
        issue(ca, "web", hosts=("localhost",), server=True),  # a server's certificate
    ]
    for pair in refused:
        with pytest.raises(ApiError) as e:
            authn.authenticate("t", der(pair))  # a good token does not rescue a bad cert
        assert e.value.code == 401
    later = Authenticator(client_ca=ca.cert, clock=lambda: now + 400 * 86400)
    with pytest.raises(ApiError):  # expired (a year's certificate, 400 days on)
        later.authenticate("", der(issue(ca, "dana")))
    with pytest.raises(ApiError):
        authn.authenticate("", b"not a certificate")
    # Without a client CA, certificates are not looked at: the token decides.
    assert (
        Authenticator(tokens={"t": UserInfo("token-user")}, clock=lambda: now)
        .authenticate("t", der(refused[0]))
        .name
        == "token-user"
    )


def _pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())  # fmt: skip


def test_tokens_are_es256_with_new_keys_and_rs256_with_an_rsa_key():
    rsa_key = _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    for pem, alg in ((new_signing_key(), "ES256"), (rsa_key, "RS256")):
        tokens = ServiceAccountTokens(pem)
        token = tokens.issue("default", "default", "u1", now=1000.0)
        assert jwt.get_unverified_header(token)["alg"] == alg
        assert tokens.verify(token, now=1001.0)["sub"] == "system:serviceaccount:default:default"
    # A token signed with the other kind of key does not verify.
    assert ServiceAccountTokens(rsa_key).verify(
        ServiceAccountTokens(new_signing_key()).issue("d", "d", "u", now=1000.0), now=1001.0
    ) is None
    with pytest.raises(ValueError, match="RSA or ECDSA P-256"):
        ServiceAccountTokens(_pem(ec.generate_private_key(ec.SECP384R1())))
