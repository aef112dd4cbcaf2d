"""A pod's /etc/resolv.conf, as the kubelet makes it (pkg/kubelet/network/dns).

Rules of this file:

- ``dnsPolicy: ClusterFirst`` (the default) and ``ClusterFirstWithHostNet``: the
  cluster DNS as nameserver, searched in ``<namespace>.svc.<domain>``, ``svc.<domain>``,
  ``<domain>`` then the host's search domains, ``options ndots:5``; when the kubelet
  knows no cluster DNS, the host's file (Kubernetes' fallback to Default).
- ``Default``: the host's file as it is (``None`` here: nothing to write).
- ``None``: only what ``dnsConfig`` says.
- ``dnsConfig`` adds nameservers (at most 3 in all), search domains (at most 32) and
  options (one of the same name replaces the policy's).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

MAX_NAMESERVERS = 3
MAX_SEARCHES = 32


def _host(text: str) -> tuple[list[str], list[str], list[str]]:
    servers, searches, options = [], [], []
    for line in text.splitlines():
        fields = line.split()
        if not fields or fields[0].startswith(("#", ";")):
            continue
        if fields[0] == "nameserver" and len(fields) > 1:
            servers.append(fields[1])
        elif fields[0] in ("search", "domain"):
            searches = fields[1:]
        elif fields[0] == "options":
            options += fields[1:]
    return servers, searches, options


def resolv_conf(pod: Mapping[str, Any], cluster_dns: Sequence[str], domain: str,
                host: str) -> str | None:  # fmt: skip
    """The pod's resolv.conf (``host``: the host's), or None for the host's own."""
    spec = pod.get("spec") or {}
    policy = spec.get("dnsPolicy") or "ClusterFirst"
    config = spec.get("dnsConfig") or {}
    host_servers, host_searches, host_options = _host(host)
    if policy in ("ClusterFirst", "ClusterFirstWithHostNet") and cluster_dns:
        namespace = (pod.get("metadata") or {}).get("namespace", "default")
        servers = list(cluster_dns)
        searches = [f"{namespace}.svc.{domain}", f"svc.{domain}", domain, *host_searches]
        options = ["ndots:5"]
    elif policy == "None":
        servers, searches, options = [], [], []
    elif not config:
        return None  # Default, or ClusterFirst without a cluster DNS: the host's file
    else:
        servers, searches, options = host_servers, host_searches, host_options
    servers = (servers + [str(s) for s in config.get("nameservers") or ()])[:MAX_NAMESERVERS]
    searches = list(dict.fromkeys(searches + [str(s) for s in config.get("searches") or ()]))
    by_name = {o.split(":")[0]: o for o in options}
    for option in config.get("options") or ():
        name = str(option.get("name", ""))
        by_name[name] = f"{name}:{option['value']}" if option.get("value") else name
    lines = [f"nameserver {s}" for s in servers]
    if searches:
        lines.append("search " + " ".join(searches[:MAX_SEARCHES]))
    if by_name:
        lines.append("options " + " ".join(by_name.values()))
    return "\n".join(lines) + "\n"
