"""The email rule's fast path never accepts what email_validator refuses: it only saves the
~60 us email_validator takes on the common shape of address."""

import pytest
from clinic.models import PLAIN_EMAIL_RE, plainly_valid_email
from email_validator import EmailNotValidError, validate_email
from hypothesis import given, settings
from hypothesis import strategies as st

LABEL = st.from_regex(r"[A-Za-z0-9-]{1,70}", fullmatch=True)
ATOM = st.text(alphabet="abcXYZ019!#$%&'*+/=?^_`{|}~-.", min_size=0, max_size=70)


def _accepted(address: str) -> bool:
    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError:
        return False
    return True


@settings(max_examples=3000, deadline=None)
@given(
    st.one_of(
        st.emails(),
        st.builds(
            lambda local, labels, tld: f"{local}@{'.'.join(labels)}.{tld}",
            ATOM,
            st.lists(LABEL, min_size=1, max_size=4),
            st.one_of(
                st.from_regex(r"[A-Za-z]{1,70}", fullmatch=True),
                st.sampled_from(["test", "LOCAL", "arpa", "onion", "invalid", "localhost"]),
            ),
        ),
        st.text(max_size=80),
    )
)
def test_the_fast_path_accepts_nothing_email_validator_refuses(address: str) -> None:
    if plainly_valid_email(address):
        assert _accepted(address), address


@pytest.mark.parametrize(
    "address",
    ["ada@example.com", "a.b+c@mail.example.org", "O'Brien@clinic.co.uk", "x@xn--bcher-kva.com"],
)
def test_common_addresses_are_accepted_either_way(address: str) -> None:
    assert _accepted(address)
    assert plainly_valid_email(address) == (PLAIN_EMAIL_RE.fullmatch(address) is not None)


@pytest.mark.parametrize(
    "address", ["a..b@c.com", "a@-c.com", "a@c-.com", "a@b.test", "a@x.local", "a@c", "@c.com"]
)
def test_refused_addresses_are_not_taken_by_the_fast_path(address: str) -> None:
    assert not plainly_valid_email(address)
    assert not _accepted(address)
