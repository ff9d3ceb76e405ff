"""No network in the bench's peer processes (copied into bench/.venv-peers by bench/peers.py).

A ``.pth`` line imports this module in every process of that venv when CARBONLAB_BENCH_NO_NETWORK is
set. Name resolution of anything but localhost and connections of any socket but a Unix one then
fail at once (no timeout to wait for), and each attempt is appended to CARBONLAB_BENCH_NET_LOG so the
report can say how many were refused.
"""

import os
import socket

_LOCAL = {None, "", "localhost", "127.0.0.1", "::1"}
_real_getaddrinfo = socket.getaddrinfo
_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _note(what: str) -> None:
    path = os.environ.get("CARBONLAB_BENCH_NET_LOG")
    if path:
        try:
            with open(path, "a") as f:
                f.write(f"{os.getpid()} {what}\n")
        except OSError:
            pass


def _getaddrinfo(host, *args, **kwargs):
    h = host.decode() if isinstance(host, bytes) else host
    if h not in _LOCAL:
        _note(f"resolve {h}")
        raise socket.gaierror(socket.EAI_NONAME, f"network disabled by the carbonlab bench ({h})")
    return _real_getaddrinfo(host, *args, **kwargs)


def _refuse(sock, address):
    if sock.family == getattr(socket, "AF_UNIX", None):
        return False
    _note(f"connect {address!r}")
    return True


def _connect(self, address):
    if _refuse(self, address):
        raise ConnectionRefusedError(f"network disabled by the carbonlab bench ({address!r})")
    return _real_connect(self, address)


def _connect_ex(self, address):
    if _refuse(self, address):
        return 111  # ECONNREFUSED
    return _real_connect_ex(self, address)


socket.getaddrinfo = _getaddrinfo
socket.socket.connect = _connect
socket.socket.connect_ex = _connect_ex
