"""The shared protocol-file reader: line numbers, fast tables, missing files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fiqabench.errors import InputFormatError, MissingArtifactError
from fiqabench_plugins.datasets.protocol import ProtocolFile, find_missing


def test_lines_handle_bom_crlf_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "p.txt"
    path.write_bytes(b"\xef\xbb\xbfa 1\r\n\r\nb 2\r\n")
    protocol = ProtocolFile(path, "test file")
    assert list(protocol.rows()) == [(1, ["a", "1"]), (3, ["b", "2"])]
    assert protocol.line_numbers().tolist() == [1, 3]
    path.write_bytes(b"a 1\nb \xff\n")
    with pytest.raises(InputFormatError, match=r"p\.txt:2: not UTF-8 text"):
        list(ProtocolFile(path, "test file").rows())


def test_numeric_table_fast_path_and_exact_errors(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_text("x.jpg 1 2.5\ny.jpg 3 4\n\nz.jpg 5 6e-1\n")
    table = ProtocolFile(path, "table").numeric_table(["name", "a", "b"], ["s", "i", "f"])
    assert table["name"].tolist() == ["x.jpg", "y.jpg", "z.jpg"]
    assert table["a"].dtype == np.int64 and table["a"].tolist() == [1, 3, 5]
    assert table["b"].tolist() == [2.5, 4.0, 0.6]
    for text, fragment in [
        ("x.jpg 1 2\ny.jpg 3\n", "t.txt:2: expected 3 columns"),
        ("x.jpg 1 2\ny.jpg 3 4 5\n", "t.txt:2: expected 3 columns"),
        ("x.jpg 1 2\ny.jpg 3.5 4\n", "t.txt:2: a: expected an integer"),
        ("x.jpg 1 2\n\ny.jpg 3 nan\n", "t.txt:3: b: expected a finite number"),
        ("x.jpg one 2\n", "t.txt:1: a: expected an integer"),
        ("x.jpg 1 2\ny.jpg 3", "t.txt:2: expected 3 columns"),
        ("x.jpg 1 2 9\ny.jpg 3 4 9\n", "t.txt:1: expected 3 columns"),  # every line one too many
        ("x.jpg 1 2 9 9\ny.jpg 3 4 9 9\n", "t.txt:1: expected 3 columns"),
    ]:
        path.write_text(text)
        with pytest.raises(InputFormatError) as info:
            ProtocolFile(path, "table").numeric_table(["name", "a", "b"], ["s", "i", "f"])
        assert fragment in str(info.value), str(info.value)


def test_missing_and_directory_files(tmp_path: Path) -> None:
    with pytest.raises(MissingArtifactError, match="test file not found"):
        ProtocolFile(tmp_path / "nope.txt", "test file")
    with pytest.raises(InputFormatError, match="is a directory"):
        ProtocolFile(tmp_path, "test file")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f.jpg").write_bytes(b"")
    (tmp_path / "a" / "d.jpg").mkdir()
    missing, dirs = find_missing([tmp_path / "a" / "f.jpg", tmp_path / "a" / "g.jpg", tmp_path / "a" / "d.jpg",
                                  tmp_path / "b" / "f.jpg"])
    assert missing == [1, 3] and dirs == [2]
