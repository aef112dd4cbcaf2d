"""The cluster's DNS records, from Services and EndpointSlices (Kubernetes' DNS
specification, as CoreDNS's kubernetes plugin serves it).

Rules of this file:

- Pure: Services and EndpointSlices in (``set_service``, ``set_slice`` and their
  removals), answers out (``answer``: a DNS query message in, its response out).
- ``<service>.<namespace>.svc.<zone>``: A records of the Service's cluster IP; for a
  headless Service (``clusterIP: None``) the addresses of its ready endpoints (IPv4
  slices only), and ``<hostname>.<service>.<namespace>.svc.<zone>`` for each ready
  endpoint with a hostname. An ExternalName Service is a CNAME to its external name,
  whatever the type asked (the server adds the target's records).
- ``_<port>._<proto>.<service>.<namespace>.svc.<zone>``: SRV records of a named port
  (priority 0, weight 100, the port; the Service's name as target, or for a headless
  Service one record per ready endpoint, named by its hostname or its address).
- Names are compared case-insensitively; a label that is not text matches nothing.
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

import dns.exception
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
        # (namespace, service) -> slice name -> ready (address, hostname) pairs
        self._endpoints: dict[tuple[str, str], dict[str, list[tuple[str, str]]]] = {}

    # --- fed by informers ----------------------------------------------------------------

    def set_service(self, svc: Mapping[str, Any]) -> None:
        m = _meta(svc)
        self._services[(m.get("namespace", ""), m.get("name", ""))] = svc

    def has_service(self, namespace: str, name: str) -> bool:
        return (namespace, name) in self._services

    def remove_service(self, svc: Mapping[str, Any]) -> None:
        m = _meta(svc)
        self._services.pop((m.get("namespace", ""), m.get("name", "")), None)

    def set_slice(self, endpoint_slice: Mapping[str, Any]) -> None:
        m = _meta(endpoint_slice)
        service = (m.get("labels") or {}).get("kubernetes.io/service-name")
        if not service or endpoint_slice.get("addressType", "IPv4") != "IPv4":
            return  # A records come from IPv4 slices only
        ready = []
        for endpoint in endpoint_slice.get("endpoints") or ():
            if (endpoint.get("conditions") or {}).get("ready", True) is False:
                continue
            for address in endpoint.get("addresses") or ():
                try:
                    ipaddress.IPv4Address(address)
                except ValueError:
                    continue  # not an address a record can hold
                ready.append((address, str(endpoint.get("hostname") or "").lower()))
        self._endpoints.setdefault((m.get("namespace", ""), service), {})[m.get("name", "")] = ready

    def update_slice(self, old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
        self.remove_slice(old)  # its service-name label may have changed
        self.set_slice(new)

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
        relative = question.name.relativize(self.zone).labels
        try:
            labels: list[str] | None = [label.decode().lower() for label in relative]
        except UnicodeDecodeError:
            labels = None  # no name of ours
        found, records = self._lookup(question.name, labels, question.rdtype)
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

    def _lookup(self, name: dns.name.Name, labels: list[str] | None,
                rdtype: int) -> tuple[bool, dns.rrset.RRset | None]:  # fmt: skip
        """(the name exists, its records of ``rdtype``)."""
        if labels is None:
            return False, None
        if len(labels) == 4 and labels[3] == "svc":
            return self._endpoint(name, labels, rdtype)
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
            target = str(spec.get("externalName", "")).rstrip(".") + "."
            try:
                return True, dns.rrset.from_text(name, TTL, "IN", "CNAME", target)
            except dns.exception.DNSException:
                return True, None  # an externalName that is no DNS name
        if rdtype != dns.rdatatype.A:
            return True, None
        ip = spec.get("clusterIP")
        if ip in (None, "", "None"):
            addresses = [address for address, _ in self._ready(namespace, service)]
        else:
            addresses = [ip]
        if not addresses:
            return True, None
        return True, dns.rrset.from_text_list(name, TTL, "IN", "A", sorted(set(addresses)))

    def _ready(self, namespace: str, service: str) -> list[tuple[str, str]]:
        slices = self._endpoints.get((namespace, service)) or {}
        return [pair for pairs in slices.values() for pair in pairs]

    def _endpoint(self, name, labels, rdtype) -> tuple[bool, dns.rrset.RRset | None]:
        """``<hostname>.<service>.<namespace>.svc``: a headless Service's endpoint."""
        hostname, service, namespace = labels[0], labels[1], labels[2]
        # An endpoint without a hostname is named by its address, dashed (CoreDNS's).
        addresses = [a for a, h in self._ready(namespace, service)
                     if (h or a.replace(".", "-")) == hostname]  # fmt: skip
        if not addresses:
            return False, None
        if rdtype != dns.rdatatype.A:
            return True, None
        return True, dns.rrset.from_text_list(name, TTL, "IN", "A", sorted(set(addresses)))

    def _srv(self, name, labels, rdtype) -> tuple[bool, dns.rrset.RRset | None]:
        port_name, proto = labels[0][1:], labels[1][1:]
        service, namespace = labels[2], labels[3]
        svc = self._services.get((namespace, service))
        if svc is None:
            return False, None
        spec = svc.get("spec") or {}
        for port in spec.get("ports") or ():
            if (port.get("name") == port_name
                    and str(port.get("protocol", "TCP")).lower() == proto):  # fmt: skip
                if rdtype != dns.rdatatype.SRV:
                    return True, None
                base = f"{service}.{namespace}.svc.{self.zone}"
                if spec.get("clusterIP") not in (None, "", "None"):
                    targets = [base]
                else:  # headless: one record per endpoint, as the DNS specification says
                    targets = sorted({f"{h or a.replace('.', '-')}.{base}"
                                      for a, h in self._ready(namespace, service)})  # fmt: skip
                if not targets:
                    return True, None
                texts = [f"0 100 {port.get('port')} {t}" for t in targets]
                return True, dns.rrset.from_text_list(name, TTL, "IN", "SRV", texts)
        return False, None

    def _pod(self, name, labels, rdtype) -> tuple[bool, dns.rrset.RRset | None]:
        try:
            ip = ipaddress.IPv4Address(labels[0].replace("-", "."))
        except ValueError:
            return False, None
        if rdtype != dns.rdatatype.A:
            return True, None
        return True, dns.rrset.from_text(name, TTL, "IN", "A", str(ip))
