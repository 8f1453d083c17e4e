"""Who holds a lease or a claim: ``host:pid:nonce`` for this process.

A holder on this host whose process no longer runs has certainly died, so its
leases can be taken over at once; a holder elsewhere is trusted until its lease
lapses.
"""

from __future__ import annotations

import os
import socket
import uuid
from functools import cache


@cache
def _host() -> str:
    return socket.gethostname()


def owner_id() -> str:
    """A new holder name for this process."""
    return f"{_host()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_alive(owner: str) -> bool:
    """False only when ``owner`` names a process on this host that is gone."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != _host() or not pid_text.isdigit():
        return True
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
