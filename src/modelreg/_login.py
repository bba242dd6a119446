"""Logging in to a registry: check credentials against it, then store them as docker does."""

from __future__ import annotations

from .errors import AuthError, InvalidInput, RegistryError
from .reference import parse_registry_host
from .store import RegistryOptions, Stores, credentials, opened
from .store.transport import Transport


def login(host: str, username: str, secret: str, *, stores: Stores | None = None) -> str:
    """Check the credentials against the registry, then store them as docker login does.

    Returns where they were stored (config.json or a credential helper).
    Nothing is stored when the registry refuses them.

    Raises: InvalidInput (no username or password), AuthError (the registry refused
    them; nothing stored), RegistryUnavailable, RegistryError.
    """
    host = parse_registry_host(host)
    if not username or not secret:
        raise InvalidInput("login needs a username and a password", "pass -u USER and the password")
    with opened(stores) as stores:
        creds = credentials.Credentials(username, secret)
        transport = Transport(host, stores.options, lambda: creds)
        try:
            response = transport.request("GET", "/v2/", scope="")
            response.close()
            if response.status_code != 200:
                raise RegistryError(f"registry {host} answered HTTP {response.status_code} on /v2/")
        except AuthError:
            raise AuthError(
                f"registry {host} rejected the username or password for {username!r}",
                "check them and log in again; nothing was stored",
            ) from None
        finally:
            transport.close()
        return credentials.save(host, creds, helper_timeout=stores.options.helper_timeout)


def logout(host: str, *, stores: Stores | None = None) -> bool:
    """Forget the stored credentials for ``host``; whether there were any.

    Raises: InvalidInput (a malformed host), AuthError (a credential helper that fails).
    """
    options = stores.options if stores is not None else RegistryOptions.from_env()
    return credentials.remove(parse_registry_host(host), helper_timeout=options.helper_timeout)
