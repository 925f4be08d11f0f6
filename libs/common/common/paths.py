"""Path parameters shared by the services."""

from pydantic import BeforeValidator


def _ascii_digits(value: object) -> object:
    # pydantic's int() of a path segment takes "1.0", "+1" and " 1" as 1; DESIGN.md: a
    # non-numeric id in a path is a 404 (the validation error on a path parameter becomes one).
    if isinstance(value, str) and not (value.isascii() and value.isdigit()):
        raise ValueError("not a number")
    return value


# In ``Annotated[int, DIGITS_ONLY, Path(ge=1, le=...)]``: only ASCII digits name a record.
DIGITS_ONLY = BeforeValidator(_ascii_digits)
