"""The public surface of actorkube.actor: small, explicit, documented."""

import actorkube.actor as actor

EXPECTED = {
    "Actor",
    "ActorError",
    "ActorRef",
    "ActorStats",
    "ActorSystem",
    "Address",
    "AskTimeout",
    "AuthenticationError",
    "Backoff",
    "CodecError",
    "DeadLetter",
    "DeadLetters",
    "DecodeError",
    "GuestSystem",
    "HandlerFailed",
    "MailboxFull",
    "OneForAll",
    "OneForOne",
    "Overflow",
    "ProtocolError",
    "Reply",
    "Restart",
    "RestForOne",
    "RestartIntensityExceeded",
    "SERVER_TIMER_SLACK",
    "Strategy",
    "SystemStats",
    "Terminated",
    "Timers",
    "Undeliverable",
    "WallClock",
    "asyncio_actor_system",
    "decode_message",
    "encode_message",
    "handler",
    "is_message",
    "message",
    "message_tag",
    "registered_tags",
    "serve_tcp",
    "TcpTransport",
}


def public_names(module) -> set[str]:
    return {name for name in vars(module) if not name.startswith("_")}


def test_public_surface_is_what_we_document() -> None:
    assert public_names(actor) == EXPECTED


def test_every_public_name_has_a_docstring() -> None:
    for name in public_names(actor):
        obj = getattr(actor, name)
        assert getattr(obj, "__doc__", None), f"actorkube.actor.{name} has no docstring"


def test_the_api_server_and_client_packages_document_what_they_export() -> None:
    from actorkube import apiserver, client

    for package in (apiserver, client):
        names = public_names(package)
        assert names, package
        for name in names:
            assert getattr(getattr(package, name), "__doc__", None), f"{package}.{name}"
