"""common.openapi: the patterns say the validators' rules exactly, in every regex engine."""

import re
import sys

import jsonschema_rs
from common.openapi import NON_SPACE, SPACE, trimmed_text
from hypothesis import given
from hypothesis import strategies as st

CHARACTERS = [chr(code) for code in range(sys.maxunicode + 1) if not 0xD800 <= code <= 0xDFFF]


def test_space_is_what_str_strip_removes_in_python_and_rust_regexes() -> None:
    expected = [c for c in CHARACTERS if c.isspace()]
    rust = jsonschema_rs.validator_for({"type": "string", "pattern": f"^{SPACE}$"})

    assert [c for c in CHARACTERS if re.fullmatch(SPACE, c)] == expected
    assert [c for c in CHARACTERS if rust.is_valid(c)] == expected
    assert not [c for c in expected if re.fullmatch(NON_SPACE, c)]


# Text rich in the characters the rule is about: spaces of every kind at either end.
edges = st.text(alphabet=st.sampled_from(" \t\n\x1c\x85\u3000"), max_size=3)
texts = st.builds(lambda a, b, c: a + b + c, edges, st.text(max_size=12), edges)


@given(texts)
def test_trimmed_text_accepts_exactly_1_to_max_characters_after_trimming(text: str) -> None:
    schema = trimmed_text(8)
    expected = 1 <= len(text.strip()) <= 8

    assert (re.search(schema["pattern"], text) is not None) == expected
    assert jsonschema_rs.validator_for(schema).is_valid(text) == expected


@given(texts)
def test_blank_trimmed_text_accepts_up_to_max_characters_after_trimming(text: str) -> None:
    schema = trimmed_text(8, blank=True)

    assert (re.search(schema["pattern"], text) is not None) == (len(text.strip()) <= 8)
