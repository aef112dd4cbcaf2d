"""A container program for the process runtime's tests: ``behave.py <mode> [args]``.

Every line is written at once with one write(2) (the runtime reads the program
through a pipe, and a SIGTERM handler may write while a line is being written). Modes:

- ``serve NAME PORT``: listens on $POD_IP:PORT, prints ``listening``, answers each
  connection with NAME; on SIGTERM prints ``terminating`` and exits 0.
- ``handle-term``: prints ``ready``; on SIGTERM prints ``got SIGTERM`` and exits 0.
- ``ignore-term``: ignores SIGTERM, starts a child that sleeps (in its process group),
  prints ``ready pid=<pid> child=<child pid>`` and waits forever.
- ``wait-connection PORT``: prints ``ready``, accepts one connection on $POD_IP:PORT,
  prints ``connected`` and exits 0.
- ``allocate MIB``: allocates and touches MIB mebibytes, then prints ``allocated``.
- ``spin MS [MIB]``: holds MIB mebibytes (touched), prints ``holding``, then burns
  CPU, printing ``spun`` after each MS milliseconds of CPU time.
"""

import os
import signal
import socket
import subprocess
import sys
import time


def say(line):
    os.write(1, f"{line}\n".encode())


def listener(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((os.environ["POD_IP"], int(port)))
    s.listen()
    return s


def serve(name, port):
    s = listener(port)

    def terminate(*_):
        say("terminating")
        sys.exit(0)

    signal.signal(signal.SIGTERM, terminate)
    say("listening")
    while True:
        conn, _ = s.accept()
        conn.sendall(name.encode())
        conn.close()


def handle_term():
    def terminate(*_):
        say("got SIGTERM")
        sys.exit(0)

    signal.signal(signal.SIGTERM, terminate)
    say("ready")
    while True:
        signal.pause()


def ignore_term():
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    child = subprocess.Popen(["sleep", "1000"])
    say(f"ready pid={os.getpid()} child={child.pid}")
    while True:
        signal.pause()


def wait_connection(port):
    s = listener(port)
    say("ready")
    conn, _ = s.accept()
    conn.close()
    say("connected")


def allocate(mib):
    block = bytearray(int(mib) * 1024 * 1024)
    for i in range(0, len(block), 4096):
        block[i] = 1
    say("allocated")


def spin(ms, mib="0"):
    block = bytearray(int(mib) * 1024 * 1024)
    for i in range(0, len(block), 4096):
        block[i] = 1
    say("holding")
    step = int(ms) / 1000
    mark = time.process_time() + step
    while True:
        if time.process_time() >= mark:
            say("spun")
            mark += step


MODES = {
    "serve": serve,
    "handle-term": handle_term,
    "ignore-term": ignore_term,
    "wait-connection": wait_connection,
    "allocate": allocate,
    "spin": spin,
}

if __name__ == "__main__":
    MODES[sys.argv[1]](*sys.argv[2:])
