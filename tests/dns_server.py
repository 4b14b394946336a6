"""A small authoritative DNS server on loopback for the tests: UDP, a free port, dnspython's
message API, answering from a dict the test fills in. No test reaches the internet.

``records`` maps (name, type) to a list of values in zone-file text: ``("_dmarc.club.example",
"TXT"): ['"v=DMARC1; p=none"']`` or ``("bounce.club.example", "MX"): ["10 feedback-smtp…"]``. A
name with no records at all answers NXDOMAIN; a name with records of another type, NOERROR and no
data. ``silent = True`` makes it drop every question (a time-out for the resolver). ``queries``
counts the questions it received, answered or not.
"""

from __future__ import annotations

import socket
import threading

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset


class LoopbackDNS:
    def __init__(self) -> None:
        self.records: dict[tuple[str, str], list[str]] = {}
        self.silent = False
        self.queries: list[tuple[str, str]] = []
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.settimeout(0.2)
        self.port = self._socket.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="loopback-dns", daemon=True)
        self._thread.start()

    def set(self, name: str, record_type: str, *values: str) -> None:
        """Publish ``values`` (zone-file text) as the records of ``name``; none removes them."""
        key = (name.lower().rstrip("."), record_type.upper())
        if values:
            self.records[key] = list(values)
        else:
            self.records.pop(key, None)

    def txt(self, name: str, *texts: str) -> None:
        """TXT records from plain text (quoted here, split into 255-byte strings as DNS needs)."""
        self.set(name, "TXT", *(_quoted(text) for text in texts))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._socket.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                wire, client = self._socket.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                query = dns.message.from_wire(wire)
            except dns.exception.DNSException:
                continue
            question = query.question[0]
            name = question.name.to_text(omit_final_dot=True).lower()
            record_type = dns.rdatatype.to_text(question.rdtype)
            self.queries.append((name, record_type))
            if self.silent:
                continue
            self._socket.sendto(self._answer(query, name, record_type).to_wire(), client)

    def _answer(self, query: dns.message.Message, name: str, record_type: str) -> dns.message.Message:
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        values = self.records.get((name, record_type))
        if values:
            response.answer.append(
                dns.rrset.from_text_list(query.question[0].name, 60, dns.rdataclass.IN, record_type, values)
            )
        elif not any(key[0] == name for key in self.records):
            response.set_rcode(dns.rcode.NXDOMAIN)
        return response


def _quoted(text: str) -> str:
    data = text.encode()
    chunks = [data[start : start + 255] for start in range(0, len(data), 255)] or [b""]
    return " ".join(
        '"' + chunk.decode("utf-8", "replace").replace("\\", "\\\\").replace('"', '\\"') + '"' for chunk in chunks
    )
