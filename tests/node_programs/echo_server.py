"""A small HTTP server for the end-to-end tests, run as a pod's container.

``echo_server.py PORT``: serves on $POD_IP:PORT. ``GET /healthz`` answers 200, or
500 when the environment has ``SICK=1``; any other path answers the pod's name
($POD_NAME) and logs ``served <path>``. On SIGTERM it logs ``terminating``, writes
``$MARKER_DIR/<pod name>`` (when set) and exits 0 a second later, as a server that
drains its connections would.
"""

import http.server
import os
import signal
import sys
import threading
import time

NAME = os.environ.get("POD_NAME", "unknown")
SICK = os.environ.get("SICK") == "1"


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/healthz":
            code, body = (500, b"sick\n") if SICK else (200, b"ok\n")
        else:
            code, body = 200, NAME.encode()
            print(f"served {self.path}", flush=True)
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):  # the lines above are the log
        pass


def terminate(signum, frame):
    print("terminating", flush=True)
    marker = os.environ.get("MARKER_DIR")
    if marker:
        with open(os.path.join(marker, NAME), "w") as f:
            f.write("SIGTERM\n")
    time.sleep(1)
    os._exit(0)


def main():
    signal.signal(signal.SIGTERM, terminate)
    server = http.server.ThreadingHTTPServer((os.environ["POD_IP"], int(sys.argv[1])), Handler)
    print(f"listening on {os.environ['POD_IP']}:{sys.argv[1]}", flush=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    while True:
        signal.pause()


if __name__ == "__main__":
    main()
