"""Actors and messages of the TCP tests, and a peer system to run as a second process.

``python tests/tcp_peer.py PORT TOKEN`` runs a system named ``127.0.0.1:PORT`` that
listens there with an actor called ``echo`` (``EchoActor``), prints the port on stdout
once it serves, and runs until it is killed. ``tests/test_tcp.py`` imports the message
classes and actors from here, so both processes agree on the wire tags.
"""

from __future__ import annotations

import sys

import trio

from actorkube.actor import Actor, ActorRef, ActorSystem, handler, message
from actorkube.actor._tcp import serve_tcp


@message(tag="tcp_test.Echo")
class Echo:
    text: str


@message(tag="tcp_test.Boom")
class Boom:
    text: str


@message(tag="tcp_test.Hang")
class Hang:
    """Tell ``notify`` ``Hanging()`` and never reply."""

    notify: ActorRef


@message(tag="tcp_test.Hanging")
class Hanging:
    pass


@message(tag="tcp_test.Forward")
class Forward:
    """Tell ``Echo(text)`` to ``to``."""

    to: ActorRef
    text: str


class EchoActor(Actor):
    @handler
    def echo(self, msg: Echo) -> str:
        return msg.text

    @handler
    def boom(self, msg: Boom) -> None:
        raise ValueError(msg.text)

    @handler
    def hang(self, msg: Hang) -> None:
        self.defer_reply()
        msg.notify.tell(Hanging())

    @handler
    def forward(self, msg: Forward) -> None:
        msg.to.tell(Echo(msg.text))


async def main(port: int, token: str) -> None:
    async with ActorSystem(name=f"127.0.0.1:{port}") as system:
        transport = await serve_tcp(system, token=token, port=port)
        system.spawn(EchoActor, name="echo")
        print(transport.port, flush=True)
        await trio.sleep_forever()


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]), sys.argv[2])
