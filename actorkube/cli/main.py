"""``actorkube``: the command line entry point.

Subcommands:
  up     a cluster in one process (etcd, the API server over HTTPS, the scheduler,
         controllers, nodes running pods as processes), for kubectl: see
         actorkube/cli/up.py; with --distributed, one process per component
         (actorkube/cli/distributed.py).
  etcd, apiserver, controller-manager, scheduler, cloud-controller-manager,
  metrics-server, cluster-dns, kubelet, proxy
         one component as its own process (actorkube/cli/process.py).
  demo   a runnable example of the actor runtime: a supervised pipeline of actors that
         survives a crash, with the system's statistics at the end.
"""

from __future__ import annotations

import argparse
import logging
import sys
from functools import partial
from pathlib import Path

import trio

from actorkube.apiserver._storage import EVENT_TTL
from actorkube.cli import demo, distributed, process, up
from actorkube.cli._run import first_error
from actorkube.heap import long_lived_heap_gc
from actorkube.scheduler import ConfigError, load_config


class _OneLine(logging.Formatter):
    """Log records without tracebacks: the error's type and text on the same line."""

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            text += f": {type(exc).__name__}: {exc}"
        return f"{record.levelname} {record.name}: {text}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="actorkube", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_demo = sub.add_parser("demo", help="run a small supervised actor example")
    p_demo.add_argument("--messages", type=int, default=100_000, help="messages to send")
    p_up = sub.add_parser("up", help="run a cluster; Ctrl-C stops it")
    p_up.add_argument("--data-dir", type=Path, default=Path(".actorkube"),
                      help="where etcd's data, the certificates and the kubeconfig live "
                      "(default: .actorkube)")  # fmt: skip
    p_up.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p_up.add_argument("--port", type=int, default=6443, help="HTTPS port (0: any free one)")
    p_up.add_argument("--scheduler-config", type=Path, metavar="FILE",
                      help="the scheduler's KubeSchedulerConfiguration (YAML or JSON)")  # fmt: skip
    p_up.add_argument("--nodes", type=int, default=1, metavar="N",
                      help="worker nodes whose pods run as processes (default: 1)")  # fmt: skip
    p_up.add_argument("--distributed", action="store_true",
                      help="every component in its own process, kept running; HOST:PORT is "
                      "then a load balancer in front of the API servers")  # fmt: skip
    p_up.add_argument("--apiservers", type=int, default=2, metavar="N",
                      help="API servers with --distributed (default: 2)")  # fmt: skip
    p_up.add_argument("--etcd-members", type=int, default=3, choices=(1, 3, 5),
                      help="etcd members with --distributed (default: 3)")  # fmt: skip
    p_up.add_argument("--event-ttl", type=process.event_ttl, default=EVENT_TTL,
                      metavar="DURATION", help="how long Events are kept after their last "
                      "write (kube-apiserver's flag; default: 1h0m0s; 0: for ever)")  # fmt: skip
    process.add_parsers(sub)
    parser.add_argument("-v", "--verbose", action="store_true", help="log tracebacks")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        for handler in logging.getLogger().handlers:
            handler.setFormatter(_OneLine("%(levelname)s %(name)s: %(message)s"))
    if args.command == "demo":
        trio.run(demo.run, args.messages)
    elif args.command == "up":
        if not 0 <= args.nodes <= 12:
            print("actorkube: --nodes must be between 0 and 12 (node i takes 127.(244+i).0.0/16 "
                  "for its pods)", file=sys.stderr)  # fmt: skip
            return 2
        config = None
        if args.scheduler_config is not None:
            try:
                config = load_config(args.scheduler_config.read_text())
            except (OSError, ConfigError) as e:
                print(f"actorkube: --scheduler-config {args.scheduler_config}: {e}",
                      file=sys.stderr)  # fmt: skip
                return 2
        if args.distributed:
            if not 1 <= args.apiservers <= 9:
                print("actorkube: --apiservers must be between 1 and 9", file=sys.stderr)
                return 2
            extra = {"apiserver": ["--event-ttl", f"{args.event_ttl}s"]}
            if args.scheduler_config is not None:  # read above: known to be valid
                extra["scheduler"] = ["--config", str(args.scheduler_config.resolve())]
            failed = first_error(distributed.StartError, lambda: trio.run(partial(
                distributed.run, args.data_dir, args.host, args.port, nodes=args.nodes,
                apiservers=args.apiservers, etcd_members=args.etcd_members,
                extra_args=extra)))  # fmt: skip
            if failed is not None:
                print(f"actorkube: {failed}", file=sys.stderr)
                return 1
        else:
            if args.apiservers != 2 or args.etcd_members != 3:
                print("actorkube: --apiservers and --etcd-members are for --distributed",
                      file=sys.stderr)  # fmt: skip
                return 2
            with long_lived_heap_gc():
                trio.run(partial(up.run, args.data_dir, args.host, args.port,
                                 scheduler_config=config, nodes=args.nodes,
                                 event_ttl=args.event_ttl))  # fmt: skip
        print("actorkube: stopped", flush=True)
    else:
        with long_lived_heap_gc():
            return process.main(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
