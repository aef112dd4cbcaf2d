"""Kubernetes' remote command protocol, the pure part: what an exec request asks, what
a client's WebSocket message says, and the Status that ends a session."""

from __future__ import annotations

import pytest

from actorkube.apiserver import _errors as errors
from actorkube.apiserver._remotecommand import (
    V4,
    V5,
    ExecEnded,
    choose_protocol,
    ended_status,
    exec_request,
    exit_status,
    frame,
    parse_frame,
)

POD = {"metadata": {"name": "web", "namespace": "default"}}


def test_an_exec_request_needs_a_command_and_a_stream():
    asked = exec_request(POD, {"command": ["sh", "-c", "x"], "stdout": "true",
                               "stderr": "1", "stdin": "false"}, "app")  # fmt: skip
    assert (asked.namespace, asked.pod, asked.container, asked.command) == (
        "default", "web", "app", ("sh", "-c", "x"))  # fmt: skip
    assert (asked.stdin, asked.stdout, asked.stderr, asked.tty) == (False, True, True, False)
    assert exec_request(POD, {"command": "ls", "stdin": "1"}, "app").command == ("ls",)
    # a terminal carries stderr too
    tty = exec_request(POD, {"command": ["sh"], "tty": "1", "stdout": "1", "stderr": "1"}, "app")
    assert (tty.tty, tty.stderr) == (True, False)
    for params, says in (({"stdout": "true"}, "at least one command"),
                         ({"command": [], "stdout": "true"}, "at least one command"),
                         ({"command": [1], "stdout": "true"}, "at least one command"),
                         ({"command": ["ls"]}, "at least 1 of stdin, stdout, stderr"),
                         ({"command": ["ls"], "tty": "true", "stderr": "true"},
                          "at least 1 of stdin, stdout, stderr")):  # fmt: skip
        with pytest.raises(errors.ApiError) as caught:
            exec_request(POD, params, "app")
        assert caught.value.code == 400 and says in caught.value.status["message"]


def test_client_messages():
    assert parse_frame(b"\x00hello", V5) == ("stdin", b"hello")
    assert parse_frame(b'\x04{"Width": 80, "Height": 24}', V4) == ("resize", (80, 24))
    assert parse_frame(b"\xff\x00", V5) == ("close", 0)
    assert parse_frame(b"\xff\x00", V4)[0] == "ignore"  # v4 has no close signal
    assert parse_frame(b"\xff\x00\x01", V5)[0] == "error"
    assert parse_frame(b"\x04{}", V5)[0] == "error"
    assert parse_frame(b"\x04[1", V5)[0] == "error"
    assert parse_frame(b"", V5)[0] == "ignore"
    assert parse_frame(b"\x01from a client", V5)[0] == "ignore"
    assert frame(1, b"x") == b"\x01x" and frame(3) == b"\x03"


def test_protocols_in_order_of_preference():
    assert choose_protocol([V4, V5]) == V5
    assert choose_protocol(["channel.k8s.io", V4]) == V4
    assert choose_protocol(["base64.channel.k8s.io"]) is None


def test_the_status_that_ends_a_session():
    assert exit_status(["true"], 0) == {"metadata": {}, "status": "Success"}
    failed = exit_status(["sh", "-c", "exit 3"], 3)
    assert failed["reason"] == "NonZeroExitCode" and failed["status"] == "Failure"
    assert failed["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]
    assert failed["message"] == ("command terminated with non-zero exit code: error "
                                 "executing command [sh -c exit 3], exit code 3")  # fmt: skip
    broken = ended_status(["ls"], ExecEnded(1, error="the kubelet went away"))
    assert broken["reason"] == "InternalError" and "the kubelet went away" in broken["message"]
