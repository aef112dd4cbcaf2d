"""The cluster's DNS records, from Services and EndpointSlices (Kubernetes' DNS
specification, as CoreDNS's kubernetes plugin serves it).

Rules of this file:

- Pure: Services and EndpointSlices in (``set_service``, ``set_slice`` and their
  removals), answers out (``answer``: a DNS query message in, its response out).
- ``<service>.<namespace>.svc.<zone>``: A records of the Service's cluster IP; for a
  headless Service (``clusterIP: None``) the addresses of its ready endpoints. An
  ExternalName Service is a CNAME to its external name.
- ``_<port>._<proto>.<service>.<namespace>.svc.<zone>``: SRV records of a named port
  (priority 0, weight 100, the port, the Service's name as target).
- ``<a-b-c-d>.<namespace>.pod.<zone>``: the A record of that address.
- A name inside the zone that matches nothing is NXDOMAIN; one that exists without
  records of the asked type is an empty answer (NODATA). Both carry the zone's SOA in
  the authority section, as CoreDNS does. TTLs are 5 s. A query for a name outside
  the zone is not answered here (``answer`` returns None: the server forwards it).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

TTL = 5


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


class ClusterZone:
    """The records of one cluster domain (``zone``, e.g. ``cluster.local``)."""

    def __init__(self, zone: str = "cluster.local") -> None:
        self.zone = dns.name.from_text(zone)
        self._services: dict[tuple[str, str], Mapping[str, Any]] = {}
        # (namespace, service) -> slice name -> ready addresses
        self._endpoints: dict[tuple[str, str], dict[str, list[str]]] = {}

    # --- fed by informers ----------------------------------------------------------------

    def set_service(self, svc: Mapping[str, Any]) -> None:
        m = _meta(svc)
        self._services[(m.get("namespace", ""), m.get("name", ""))] = svc

    def remove_service(self, svc: Mapping[str, Any]) -> None:
        m = _meta(svc)
        self._services.pop((m.get("namespace", ""), m.get("name", "")), None)

    def set_slice(self, endpoint_slice: Mapping[str, Any]) -> None:
        m = _meta(endpoint_slice)
        service = (m.get("labels") or {}).get("kubernetes.io/service-name")
        if not service:
            return
        ready = [
            address
            for endpoint in endpoint_slice.get("endpoints") or ()
            if (endpoint.get("conditions") or {}).get("ready", True) is not False
            for address in endpoint.get("addresses") or ()
        ]
        self._endpoints.setdefault((m.get("namespace", ""), service), {})[m.get("name", "")] = ready

    def remove_slice(self, endpoint_slice: Mapping[str, Any]) -> None:
        m = _meta(endpoint_slice)
        service = (m.get("labels") or {}).get("kubernetes.io/service-name")
        slices = self._endpoints.get((m.get("namespace", ""), service or ""))
        if slices is not None:
            slices.pop(m.get("name", ""), None)

    # --- answering ---------------------------------------------------------------------

    def answer(self, query: dns.message.Message) -> dns.message.Message | None:
        """The response to ``query``, or None when its name is outside the zone."""
        if len(query.question) != 1:
            response = dns.message.make_response(query)
            response.set_rcode(dns.rcode.FORMERR)
            return response
        question = query.question[0]
        if not question.name.is_subdomain(self.zone):
            return None
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        found, records = self._lookup(question.name, question.rdtype)
        if records:
            response.answer.append(records)
        else:
            if not found:
                response.set_rcode(dns.rcode.NXDOMAIN)
            response.authority.append(self._soa())
        return response

    def _soa(self) -> dns.rrset.RRset:
        text = f"ns.dns.{self.zone} hostmaster.{self.zone} 1 7200 1800 86400 {TTL}"
        return dns.rrset.from_text(self.zone, TTL, "IN", "SOA", text)

    def _lookup(self, name: dns.name.Name, rdtype: int) -> tuple[bool, dns.rrset.RRset | None]:
        """(the name exists, its records of ``rdtype``)."""
        labels = [label.decode().lower() for label in name.relativize(self.zone).labels]
        if len(labels) == 3 and labels[2] == "pod":
            return self._pod(name, labels, rdtype)
        if len(labels) < 3 or labels[-1] != "svc":
            # The zone itself, svc.<zone>, <ns>.svc.<zone>: names without records.
            return len(labels) <= 2 and (not labels or labels[-1] in ("svc", "pod")), None
        if len(labels) == 5 and labels[0].startswith("_") and labels[1].startswith("_"):
            return self._srv(name, labels, rdtype)
        if len(labels) != 3:
            return False, None
        service, namespace = labels[0], labels[1]
        svc = self._services.get((namespace, service))
        if svc is None:
            return False, None
        spec = svc.get("spec") or {}
        if spec.get("type") == "ExternalName":
            if rdtype not in (dns.rdatatype.CNAME, dns.rdatatype.A):
                return True, None
            target = str(spec.get("externalName", "")).rstrip(".") + "."
            return True, dns.rrset.from_text(name, TTL, "IN", "CNAME", target)
        if rdtype != dns.rdatatype.A:
            return True, None
        ip = spec.get("clusterIP")
        addresses = self._ready(namespace, service) if ip in (None, "", "None") else [ip]
        if not addresses:
            return True, None
        return True, dns.rrset.from_text_list(name, TTL, "IN", "A", sorted(set(addresses)))

    def _ready(self, namespace: str, service: str) -> list[str]:
        slices = self._endpoints.get((namespace, service)) or {}
        return [address for addresses in slices.values() for address in addresses]

    def _srv(self, name, labels, rdtype) -> tuple[bool, dns.rrset.RRset | None]:
        port_name, proto = labels[0][1:], labels[1][1:]
        service, namespace = labels[2], labels[3]
        svc = self._services.get((namespace, service))
        if svc is None:
            return False, None
        for port in (svc.get("spec") or {}).get("ports") or ():
            if (port.get("name") == port_name
                    and str(port.get("protocol", "TCP")).lower() == proto):  # fmt: skip
                if rdtype != dns.rdatatype.SRV:
                    return True, None
                target = f"{service}.{namespace}.svc.{self.zone}"
                return True, dns.rrset.from_text(name, TTL, "IN", "SRV",
                                                 f"0 100 {port.get('port')} {target}")  # fmt: skip
        return False, None

    def _pod(self, name, labels, rdtype) -> tuple[bool, dns.rrset.RRset | None]:
        try:
            ip = ipaddress.IPv4Address(labels[0].replace("-", "."))
        except ValueError:
            return False, None
        if rdtype != dns.rdatatype.A:
            return True, None
        return True, dns.rrset.from_text(name, TTL, "IN", "A", str(ip))
