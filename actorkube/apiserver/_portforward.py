"""``pods/portforward``: what the API server, the HTTP front end and a kubelet say to
each other to carry TCP connections to a pod's ports (the front end speaks SPDY to
``kubectl port-forward``: ``_portforwardws``; the kubelet connects: its
``actorkube.node._portforward``).

Rules of this file:

- One ``PortForwardRequest`` per client session (one WebSocket): the kubelet starts a
  session actor, which first asks the receiver to take ``ForwardSession`` (where the
  connections' messages go) and only then answers ``PortForwardAccepted``; or it
  answers a ``LogsError`` (no such pod on the node, not running).
- Each of the client's connections is a ``request_id`` (kubectl's ``requestID``):
  ``ForwardOpen`` (the port), then ``ForwardData`` in order, then ``ForwardClose``
  (the client will send nothing more), each asked: the answer comes once the kubelet
  has written the data to the pod's socket, which is how a fast client is held back.
  ``ForwardReset`` (told) drops the connection at once.
- The session asks the receiver to take ``ForwardOutput`` (what the pod sent, in
  order) and one ``ForwardEnded`` per connection: the pod closed it, or ``error``
  says why it could not connect or broke (the message kubectl prints).
- The session ends, closing every connection, when its receiver goes away.
"""

from __future__ import annotations

from actorkube.actor import ActorRef, message

SUBPROTOCOL = "SPDY/3.1+portforward.k8s.io"  # kubectl 1.31+: SPDY inside a WebSocket
V4 = "v4.channel.k8s.io"  # the channel protocol (the official Python client)


@message(tag="kubelet.PortForward")
class PortForwardRequest:
    """Start a port-forward session for the pod; it streams to ``receiver``."""

    namespace: str
    pod: str
    uid: str
    receiver: ActorRef | None = None


@message(tag="kubelet.PortForwardAccepted")
class PortForwardAccepted:
    pass


@message(tag="kubelet.ForwardSession")
class ForwardSession:
    """The connections' messages go to ``session``."""

    session: ActorRef


@message(tag="kubelet.ForwardOpen")
class ForwardOpen:
    request_id: int
    port: int


@message(tag="kubelet.ForwardData")
class ForwardData:
    request_id: int
    data: bytes


@message(tag="kubelet.ForwardClose")
class ForwardClose:
    request_id: int


@message(tag="kubelet.ForwardReset")
class ForwardReset:
    request_id: int


@message(tag="kubelet.ForwardTaken")
class ForwardTaken:
    pass


@message(tag="kubelet.ForwardOutput")
class ForwardOutput:
    request_id: int
    data: bytes


@message(tag="kubelet.ForwardEnded")
class ForwardEnded:
    request_id: int
    error: str = ""
