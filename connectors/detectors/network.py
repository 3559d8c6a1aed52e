"""IPv4 and IPv6 addresses: octets at most 255, IPv6 validated by the standard library's
ipaddress."""

import ipaddress
import re
from collections.abc import Iterator

from connectors.detectors import context
from connectors.detectors.base import Scan, Span

# Not inside a longer dotted run: 3.6.5.2418 and 1.2.3.4.5 are version numbers, not addresses.
IPV4 = re.compile(r"(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?![\w]|\.\d)")
IPV6 = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f]{1,4})?"
    r"(?:%[0-9A-Za-z_.]+)?(?![\w:])"
)


def find_ipv4(scan: Scan) -> Iterator[Span]:
    """Only in the digit runs that hold three dots (an address's dots lie inside its run)."""
    text, length = scan.text, len(scan.text)
    for start, end, _ in scan.counted_runs(4):
        if text.count(".", start, end) >= 3:
            yield from _ipv4_in(text, (start, min(length, end + 2)))


def _ipv4_in(text: str, window: tuple[int, int]) -> Iterator[Span]:
    for match in IPV4.finditer(text, *window):
        # Four groups of one to three digits (the pattern's), each at most 255: what
        # ipaddress.IPv4Address checks, leading zeros (192.168.001.010, how some exports write
        # them) allowed.
        if any(int(octet) > 255 for octet in match.group().split(".")):
            continue
        start, end = match.span()
        yield Span(start, end, "ipv4", 0.8 + context.adjustment(text, start, end, "ipv4"))


def find_ipv6(scan: Scan) -> Iterator[Span]:
    text = scan.text
    if "::" not in text and text.count(":") < 7:
        return
    for match in IPV6.finditer(text):
        try:
            ipaddress.IPv6Address(match.group())
        except ValueError:
            continue
        start, end = match.span()
        yield Span(start, end, "ipv6", 0.9 + context.adjustment(text, start, end, "ipv6"))
