"""``egress = "governed-only"`` inside the agent's process.

The host starts the agent's process without a network of its own (a network namespace with no
interface): nothing in it, Python or not, can open a connection by itself. Requests to the
upstreams go to the host through its socket, as always. For any other host the agent's Python
asks the host instead, here: ``socket.getaddrinfo`` asks the host to resolve a name (refused,
naming the host and the reason, when it is not in ``egress.allow``), and ``socket.connect``
asks the host to connect; the host checks the address against what it resolved for that host,
connects, and hands the connected socket over, which takes the place of the agent's own. Every
library built on the ``socket`` module (``http.client``, ``urllib3``, ``httpcore``, asyncio
and ``aiohttp``) goes through these two, and TLS runs end to end over the handed-over socket.

A refusal is :class:`EgressRefused`, a ``PermissionError`` (``EACCES``) whose message names the
host; the libraries wrap it in their own connection errors, message and all.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
from typing import Any, Dict, List, Optional, Tuple

_ORIGINAL_GETADDRINFO = socket.getaddrinfo
_ORIGINAL_CONNECT = socket.socket.connect
_ORIGINAL_CONNECT_EX = socket.socket.connect_ex
#: The host each address and port was resolved for: a connection to it is asked for that host.
_RESOLVED: Dict[Tuple[str, int], str] = {}
#: How long a connection may take when the socket sets no timeout (a non-blocking one).
_DEFAULT_TIMEOUT_S = 30.0


class EgressRefused(PermissionError):
    """A connection ``egress = "governed-only"`` does not allow; the message names the host."""


def _ask(request: Dict[str, Any]) -> Tuple[Dict[str, Any], Optional[int]]:
    from . import _native

    reply = _native.egress_ask(request)
    return reply.answer, reply.fd


def _fail(answer: Dict[str, Any]) -> BaseException:
    message = str(answer.get("error", "refused"))
    kind = answer.get("kind")
    if kind == "refused":
        return EgressRefused(errno.EACCES, message)
    if kind == "dns":
        return socket.gaierror(socket.EAI_NONAME, message)
    if kind == "timeout":
        return TimeoutError(errno.ETIMEDOUT, message)
    # OSError picks the subclass of the errno (ConnectionRefusedError, ...).
    return OSError(answer.get("errno") or errno.ECONNREFUSED, message)


def _literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
        return True
    except ValueError:
        return False


def _port(port: Any) -> int:
    if port is None:
        return 0
    if isinstance(port, bytes):
        port = port.decode("ascii")
    if isinstance(port, int):
        return port
    text = str(port)
    return int(text) if text.isdigit() else socket.getservbyname(text, "tcp")


_KINDS = (
    (socket.SOCK_STREAM, socket.IPPROTO_TCP),
    (socket.SOCK_DGRAM, socket.IPPROTO_UDP),
    (socket.SOCK_RAW, 0),
)


def getaddrinfo(host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0) -> List[Any]:
    """``socket.getaddrinfo``: names resolved by the host, for allowed hosts only."""
    if host is None:
        return _ORIGINAL_GETADDRINFO(host, port, family, type, proto, flags)
    name = host.decode("idna") if isinstance(host, (bytes, bytearray)) else str(host)
    if _literal(name) or flags & socket.AI_NUMERICHOST:
        return _ORIGINAL_GETADDRINFO(host, port, family, type, proto, flags)
    name = name.lower().rstrip(".")
    number = _port(port)
    answer, _ = _ask({"op": "resolve", "host": name, "port": number})
    if "error" in answer:
        raise _fail(answer)
    out = []
    for ip in answer["ok"]:
        fam = socket.AF_INET6 if ":" in ip else socket.AF_INET
        if family not in (socket.AF_UNSPEC, fam):
            continue
        _RESOLVED[(ip, number)] = name
        addr = (ip, number, 0, 0) if fam == socket.AF_INET6 else (ip, number)
        kinds = _KINDS if not type else ((type, proto or dict(_KINDS).get(type, 0)),)
        for kind, pr in kinds:
            out.append((socket.AddressFamily(fam), socket.SocketKind(kind), pr, "", addr))
    if not out:
        raise socket.gaierror(socket.EAI_NONAME, f"{name}: no address of the family asked for")
    return out


def gethostbyname(host: str) -> str:
    """``socket.gethostbyname``: an IPv4 address of an allowed host, from the host."""
    return getaddrinfo(host, None, socket.AF_INET, socket.SOCK_STREAM)[0][4][0]


def gethostbyname_ex(host: str) -> Tuple[str, List[str], List[str]]:
    """``socket.gethostbyname_ex``, likewise."""
    infos = getaddrinfo(host, None, socket.AF_INET, socket.SOCK_STREAM)
    return host, [], list(dict.fromkeys(info[4][0] for info in infos))


def _connect(sock: socket.socket, address: Any) -> None:
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or sock.type != socket.SOCK_STREAM:
        # Unix sockets are the agent's own; anything else finds no network.
        _ORIGINAL_CONNECT(sock, address)
        return
    target, port = address[0], int(address[1])
    if isinstance(target, (bytes, bytearray)):
        target = target.decode("idna")
    target = str(target)
    if _literal(target):
        ip, host = target, _RESOLVED.get((target, port), target)
    else:
        host = target.lower().rstrip(".")
        ip = getaddrinfo(host, port, sock.family, socket.SOCK_STREAM)[0][4][0]
    timeout = sock.gettimeout()
    answer, fd = _ask(
        {
            "op": "connect",
            "host": host,
            "ip": ip,
            "port": port,
            "timeout_ms": int((timeout or _DEFAULT_TIMEOUT_S) * 1000),
        }
    )
    if fd is None:
        raise _fail(answer)
    try:
        os.dup2(fd, sock.fileno(), inheritable=False)
    finally:
        os.close(fd)
    # The handed-over socket takes this one's blocking mode and timeout.
    sock.settimeout(timeout)


def connect(self: socket.socket, address: Any) -> None:
    """``socket.socket.connect``: connections made by the host, for allowed hosts only."""
    _connect(self, address)


def connect_ex(self: socket.socket, address: Any) -> int:
    try:
        _connect(self, address)
        return 0
    except OSError as exc:
        return exc.errno or errno.EACCES


def install() -> None:
    """Route the process's name look-ups and connections through the host."""
    socket.getaddrinfo = getaddrinfo  # type: ignore[assignment]
    socket.gethostbyname = gethostbyname  # type: ignore[assignment]
    socket.gethostbyname_ex = gethostbyname_ex  # type: ignore[assignment]
    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
