"""Inputs the fuzzers found that once ended in a traceback; each now ends in a one-line error.

One test per fix, named after the input that broke it (the fix's commit says the same).
"""

from __future__ import annotations

import json
import struct

import pytest

from kvcap.errors import KvcapError, ModelError
from kvcap.model.safetensors_reader import parse_header


def _one_line(e: BaseException) -> str:
    msg = str(e)
    assert msg and "\n" not in msg
    return msg


def test_safetensors_dtype_that_is_a_list():
    raw = json.dumps({"w": {"dtype": ["F16"], "shape": [2], "data_offsets": [0, 4]}}).encode()
    with pytest.raises(ModelError, match="unknown dtype") as e:
        parse_header(raw, "m.safetensors", 4)
    _one_line(e.value)
