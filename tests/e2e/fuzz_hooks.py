"""Schemathesis hooks of tests/e2e/test_openapi_fuzz.py (loaded through schemathesis.toml).

The gateway refuses, before any route, a path holding an encoded ``/``, ``\\``, NUL, ``;``,
``%``, ``?`` or ``#`` (Traefik's ``encodedCharacters``, gateway/traefik/traefik.yml: no split
view of a path between Traefik and a service), with its own empty 400. Such a path never
reaches a service, so no service's document can speak for it: those path values are not
generated. Every other path value is.
"""

from typing import Any

import schemathesis

REFUSED_BY_THE_GATEWAY = frozenset("/\\\x00;%?#")


@schemathesis.hook
def filter_path_parameters(context: Any, path_parameters: dict[str, Any] | None) -> bool:
    return not any(
        REFUSED_BY_THE_GATEWAY.intersection(str(value))
        for value in (path_parameters or {}).values()
    )
