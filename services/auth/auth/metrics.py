"""Domain counters of the auth service (served by the shared ``/metrics/``)."""

from prometheus_client import Counter

LOGINS = Counter(
    "auth_logins_total",
    "Login attempts by result: success, bad_credentials, throttled, inactive_tenant.",
    ["result"],
)
TOKENS_ISSUED = Counter(
    "auth_tokens_issued_total", "Tokens signed by the auth service, by type.", ["token_type"]
)
