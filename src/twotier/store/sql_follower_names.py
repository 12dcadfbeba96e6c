"""A change-log follower's user, as twotier takes it: a plain name, and a host as MySQL
names hosts. Checked where the settings are read, before anything connects."""

from __future__ import annotations

import ipaddress
import re

#: A follower user's name: plain, so it needs no quoting on either server.
USER_NAME = re.compile(r"[a-z_][a-z0-9_]{0,31}")
#: A MySQL host pattern twotier takes: a name, an address, a network, with % wildcards.
_HOST = re.compile(r"[A-Za-z0-9.%_:/-]{1,255}")


def check_user_name(name: str) -> str:
    if not USER_NAME.fullmatch(name):
        raise ValueError(
            f"the follower's user name {name!r} must be 1-32 of a-z, 0-9 and _, "
            "not starting with a digit"
        )
    return name


def check_host(host: str) -> str:
    """A follower's host as MySQL names hosts (a name, an address, a network, % wildcards):
    ``db detach`` writes it into its DROP USER as it stands."""
    if not _HOST.fullmatch(mysql_host(host)):
        raise ValueError(
            f"the follower's host {host!r} must be a host name, an address or a network "
            "(letters, digits and . % _ : / -)"
        )
    return host


def mysql_host(host: str) -> str:
    """A host as MySQL names it: a network (10.0.0.0/16) as an address and its mask
    (10.0.0.0/255.255.0.0), anything else as given."""
    try:
        network = ipaddress.ip_network(host, strict=False)
    except ValueError:
        return host
    if network.version != 4 or "/" not in host:
        return host
    return f"{network.network_address}/{network.netmask}"
