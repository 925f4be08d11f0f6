"""Plain functions over the auth tables; they raise domain errors, never HTTP exceptions.

One module per concern, all of it here as ``crud.<name>`` for the routes:

- ``users``        accounts: registration, authentication, the users list, administration,
                   the platform superuser
- ``invitations``  created, looked up, used once, listed while open, revoked
- ``throttles``    failed logins and registrations counted per username and client address
- ``tokens``       refresh tokens: issued in families, rotated, revoked by family
- ``keys``         the public signing keys the JWKS lists; the first release's private keys
"""

from auth.crud.invitations import (
    INVITATION_EXPIRED,
    INVITATION_INVALID,
    INVITATION_OTHER_EMAIL,
    INVITATION_REVOKED,
    INVITATION_USED,
    create_invitation,
    get_invitation,
    get_open_invitation,
    list_invitations,
    revoke_invitation,
)
from auth.crud.keys import forget_legacy_keys, legacy_private_pems, publish_key, published_jwks
from auth.crud.throttles import (
    forget_login_attempt,
    record_registration_attempt,
    start_login_attempt,
)
from auth.crud.tokens import (
    TOKEN_INVALID,
    TOKEN_REVOKED,
    get_refresh_token,
    issue_token_pair,
    revoke_refresh_family,
    rotate_refresh_token,
)
from auth.crud.users import (
    USERNAME_TAKEN,
    SuperuserNameTaken,
    UserScope,
    authenticate,
    create_user,
    ensure_superuser,
    get_user,
    get_user_by_username,
    list_users,
    update_user,
)

__all__ = [
    "INVITATION_EXPIRED",
    "INVITATION_INVALID",
    "INVITATION_OTHER_EMAIL",
    "INVITATION_REVOKED",
    "INVITATION_USED",
    "TOKEN_INVALID",
    "TOKEN_REVOKED",
    "USERNAME_TAKEN",
    "SuperuserNameTaken",
    "UserScope",
    "authenticate",
    "create_invitation",
    "create_user",
    "ensure_superuser",
    "forget_legacy_keys",
    "forget_login_attempt",
    "get_invitation",
    "get_open_invitation",
    "get_refresh_token",
    "get_user",
    "get_user_by_username",
    "issue_token_pair",
    "legacy_private_pems",
    "list_invitations",
    "list_users",
    "publish_key",
    "published_jwks",
    "record_registration_attempt",
    "revoke_invitation",
    "revoke_refresh_family",
    "rotate_refresh_token",
    "start_login_attempt",
    "update_user",
]
