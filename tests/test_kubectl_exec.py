"""``kubectl exec`` and ``kubectl cp`` with the real kubectl (found on PATH; the tests fail
loudly without it), and the WebSocket they speak, against an HTTPS API server with one
node whose pods are real processes: output and exit codes, stdin to its end, a file
copied both ways, a terminal (sized, with job control), the errors kubectl shows, the
official Python client (v4.channel.k8s.io), and what happens to the command when the
client breaks the protocol or goes away."""

from __future__ import annotations

import fcntl
import http.client
import json
import os
import shutil
import ssl
import struct
import termios

import pytest
import trio
import websocket
from kubectl_node import WAIT, node_cluster
from pids import wait_exited

from actorkube.pki import ClusterPki

POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "default"},
       "spec": {"nodeName": "n1", "containers": [
           {"name": "app", "image": "python:3.11", "command": ["sleep", "100000"]},
           {"name": "side", "image": "python:3.11", "command": ["sleep", "100000"]}]}}  # fmt: skip


@pytest.fixture
async def cluster(tmp_path, nursery):
    """The cluster with the pod running (see ``kubectl_node.node_cluster``)."""
    return await node_cluster(tmp_path, nursery, POD)


async def test_output_exit_codes_stdin_and_errors(cluster):
    run, alice, _, _ = cluster
    code, out, err = await run("exec", "web", "-c", "app", "--", "sh", "-c",
                               "echo out; echo err >&2; exit 3")  # fmt: skip
    assert (code, out) == (3, "out\n")
    assert "err\n" in err and "command terminated with exit code 3" in err
    data = os.urandom(1 << 20)
    code, out, err = await run("exec", "-i", "web", "-c", "app", "--", "sh", "-c",
                               "wc -c; echo bye", stdin=data)  # fmt: skip
    assert (code, out.split()) == (0, [str(len(data)), "bye"]), err
    code, out, err = await run("exec", "web", "-c", "app", "--", "sh", "-c",
                               'echo "$# [$1] [$2]"', "_", "", "b")  # fmt: skip
    assert (code, out) == (0, "2 [] [b]\n"), err  # an empty word is a word
    code, out, err = await run("exec", "web", "-c", "side", "--", "no-such-command")
    assert code == 127 and "not found" in err
    # kubectl's own wording for a pod of several containers with none named
    code, out, err = await run("exec", "web", "--", "true")
    assert code == 0 and 'Defaulted container "app" out of: app, side' in err
    code, _, err = await run("exec", "web", "-c", "nope", "--", "true")
    assert code == 1 and "container nope is not valid for pod web" in err
    code, _, err = await run("exec", "nopod", "--", "true")
    assert code == 1 and 'pods "nopod" not found' in err
    # alice may read pods but not exec into them: the refusal names the subresource
    for args in (("role", "reader", "--verb=get", "--resource=pods"),
                 ("rolebinding", "reader", "--role=reader", "--user=alice")):  # fmt: skip
        assert (await run("create", *args))[0] == 0
    code, _, err = await run("exec", "web", "--", "true", config=alice)
    assert code == 1 and 'User "alice" cannot create resource "pods/exec"' in err, err


async def test_kubectl_cp_both_ways(cluster, tmp_path):
    run, _, _, _ = cluster
    here = tmp_path / "here"
    here.mkdir()
    (here / "big.bin").write_bytes(os.urandom(3_000_000))
    (here / "small.txt").write_text("hello\n")
    code, _, err = await run("cp", str(here), "web:/tmp/copied", "-c", "app")
    assert code == 0, err
    code, out, err = await run("exec", "web", "-c", "app", "--", "ls", "/tmp/copied")
    assert out.split() == ["big.bin", "small.txt"], err
    back = tmp_path / "back"
    code, _, err = await run("cp", "web:/tmp/copied", str(back), "-c", "app")
    assert code == 0, err
    assert (back / "big.bin").read_bytes() == (here / "big.bin").read_bytes()
    assert (back / "small.txt").read_text() == "hello\n"


async def test_a_terminal_is_sized_and_the_shell_has_job_control(cluster, tmp_path):
    """kubectl exec -it, run on a pseudo-terminal of the test's own (kubectl asks for a
    terminal only when its stdin is one)."""
    binary = shutil.which("kubectl")
    assert binary
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 111, 0, 0))
    process = await trio.lowlevel.open_process(
        [binary, f"--kubeconfig={tmp_path / 'admin.kubeconfig'}",
         f"--cache-dir={tmp_path / 'cache'}", "exec", "-it", "web", "-c", "app", "--", "sh"],
        stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
    )  # fmt: skip
    os.close(slave)
    terminal = trio.lowlevel.FdStream(master)
    seen = b""

    async def until(text: bytes) -> None:
        nonlocal seen
        while text not in seen:
            try:
                chunk = await terminal.receive_some(4096)
            except trio.BrokenResourceError:  # EIO: kubectl has exited
                chunk = b""
            assert chunk, f"kubectl ended before {text!r}: {seen!r}"
            seen += chunk

    with trio.fail_after(WAIT):
        await until(b"# ")  # the shell's prompt: it runs on a terminal
        await terminal.send_all(b"stty size; ps -o tty= -p $$; echo $((6 * 7)); exit 4\r")
        await until(b"42")
        assert await process.wait() == 4
    await terminal.aclose()
    text = seen.decode(errors="replace").replace("\r", "")
    assert "\n33 111\n" in text  # the size kubectl gave it, from its own terminal
    assert "\npts/" in text  # the command's controlling terminal


def _connect(url: str, pki: ClusterPki, path: str, protocols=("v5.channel.k8s.io",),
             token: str = "admin-token") -> websocket.WebSocket:  # fmt: skip
    return websocket.create_connection(
        url.replace("https://", "wss://") + path,
        header=[f"Authorization: Bearer {token}"],
        subprotocols=list(protocols),
        sslopt={"cert_reqs": ssl.CERT_REQUIRED, "ca_certs": str(pki.ca_file)},
        timeout=WAIT,
    )  # fmt: skip


EXEC = "/api/v1/namespaces/default/pods/web/exec?container=app&stdout=true&stderr=true"


def _frames(ws: websocket.WebSocket) -> tuple[list[bytes], int]:
    """Every message until the server closes the socket, and the close's code."""
    got = []
    while True:
        opcode, frame = ws.recv_data_frame(control_frame=True)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            return got, struct.unpack("!H", frame.data[:2])[0]
        if opcode in (websocket.ABNF.OPCODE_BINARY, websocket.ABNF.OPCODE_TEXT):
            got.append(frame.data)




async def test_the_websocket_protocol_and_a_client_that_breaks_it_or_goes_away(cluster):
    _, _, url, pki = cluster

    def exchange() -> tuple[str, list[bytes], int]:
        ws = _connect(url, pki, EXEC + "&command=sh&command=-c&command=echo+a+b%3B+exit+2")
        try:
            return ws.subprotocol, *_frames(ws)
        finally:
            ws.close()

    protocol, frames, closed = await trio.to_thread.run_sync(exchange)
    assert (protocol, closed) == ("v5.channel.k8s.io", 1000)
    assert frames[0] == b"\x01"  # the session is open
    assert b"".join(f[1:] for f in frames if f[:1] == b"\x01") == b"a b\n"
    status = json.loads(frames[-1][1:])
    assert frames[-1][:1] == b"\x03" and status["reason"] == "NonZeroExitCode"
    assert status["details"]["causes"] == [{"reason": "ExitCode", "message": "2"}]

    def typed() -> tuple[list[bytes], int]:
        """stdin asked for as "t" (any of Go's true values), fed, then ended (v5)."""
        ws = _connect(url, pki, EXEC + "&stdin=t&command=sh&command=-c&command=cat%3Becho+end")
        try:
            ws.send_binary(b"\x00to cat ")
            ws.send_binary(b"\xff\x00")
            return _frames(ws)
        finally:
            ws.close()

    frames, closed = await trio.to_thread.run_sync(typed)
    assert b"".join(f[1:] for f in frames if f[:1] == b"\x01") == b"to cat end\n"
    assert closed == 1000 and json.loads(frames[-1][1:])["status"] == "Success"

    def refused(path: str, protocols=("v5.channel.k8s.io",), token="admin-token") -> int:
        with pytest.raises(websocket.WebSocketBadStatusException) as caught:
            _connect(url, pki, path, protocols, token)
        return caught.value.status_code

    assert await trio.to_thread.run_sync(refused, EXEC + "&command=true", ("base64.x",)) == 400
    assert await trio.to_thread.run_sync(refused, EXEC) == 400  # no command
    assert await trio.to_thread.run_sync(refused, EXEC + "&command=true", ("v5.channel.k8s.io",),
                                         "alice-token") == 403  # fmt: skip
    assert await trio.to_thread.run_sync(refused, "/api/v1/namespaces/default/pods/web") == 400

    def post(path: str) -> tuple[int, dict]:
        """A request without an upgrade (what a client that speaks only SPDY sends)."""
        host, port = url.removeprefix("https://").rsplit(":", 1)
        context = ssl.create_default_context(cafile=str(pki.ca_file))
        connection = http.client.HTTPSConnection(host, int(port), context=context)
        try:
            connection.request("POST", path, headers={"Authorization": "Bearer admin-token"})
            response = connection.getresponse()
            return response.status, json.loads(response.read())
        finally:
            connection.close()

    code, status = await trio.to_thread.run_sync(post, EXEC + "&command=true")
    assert (code, status["message"]) == (400, "Upgrade request required")
    code, status = await trio.to_thread.run_sync(post, EXEC.replace("web", "nope") + "&command=x")
    assert code == 404  # checked before the upgrade is asked for

    def start(command: str) -> tuple[websocket.WebSocket, int]:
        """A session running ``command`` after it prints its pid."""
        ws = _connect(url, pki, EXEC + "&stdin=true&command=sh&command=-c&command="
                      + command.replace(" ", "+").replace(";", "%3B").replace("$", "%24"))
        assert ws.recv() == b"\x01"
        return ws, int(ws.recv()[1:])

    # A resize that is not JSON breaks the protocol: the socket closes, the command dies.
    ws, pid = await trio.to_thread.run_sync(start, "echo $$; exec sleep 100000")
    ws.send_binary(b"\x04not json")
    assert await trio.to_thread.run_sync(_frames, ws) == ([], 1007)
    await wait_exited(pid)
    # A client that goes away takes its command with it, also one whose command is
    # not reading what it sent (it waits in the session and the front end).
    for stdin in (b"", b"\x00" + bytes(600_000)):
        ws, pid = await trio.to_thread.run_sync(start, "echo $$; exec sleep 100000")
        if stdin:
            await trio.to_thread.run_sync(ws.send_binary, stdin)
        ws.sock.close()
        await wait_exited(pid)


async def test_the_official_python_client_speaks_v4(cluster, tmp_path):
    from kubernetes import client, config
    from kubernetes.stream import stream

    def run() -> tuple[str, int]:
        api = client.CoreV1Api(config.new_client_from_config(str(tmp_path / "admin.kubeconfig")))
        response = stream(api.connect_get_namespaced_pod_exec, "web", "default",
                          container="app", command=["sh", "-c", "echo from-python; exit 5"],
                          stderr=True, stdin=False, stdout=True, tty=False,
                          _preload_content=False)  # fmt: skip
        response.run_forever(timeout=WAIT)
        return response.read_stdout(), response.returncode

    assert await trio.to_thread.run_sync(run) == ("from-python\n", 5)
