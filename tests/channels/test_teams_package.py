from __future__ import annotations

import json
import struct
import zipfile
import zlib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.channels.teams.cli import app as teams_cli
from bot.channels.teams.package import PackageError, build_package
from bot.settings import load_settings


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    # every chunk's CRC is right
    offset = 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset:offset + 4])
        kind_and_data = data[offset + 4:offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length:offset + 12 + length])
        assert zlib.crc32(kind_and_data) & 0xFFFFFFFF == crc
        offset += 12 + length
    return width, height


def test_package_zip(tmp_path: Path) -> None:
    settings = load_settings(teams={"app_id": "11111111-2222-4333-8444-555555555555"})
    out = build_package(settings, tmp_path / "app.zip")
    with zipfile.ZipFile(out) as archive:
        assert sorted(archive.namelist()) == ["color.png", "manifest.json", "outline.png"]
        manifest = json.loads(archive.read("manifest.json"))
        assert manifest["id"] == manifest["bots"][0]["botId"] == "11111111-2222-4333-8444-555555555555"
        assert png_size(archive.read("color.png")) == (192, 192)
        assert png_size(archive.read("outline.png")) == (32, 32)


def test_package_needs_app_id(tmp_path: Path) -> None:
    with pytest.raises(PackageError):
        build_package(load_settings(), tmp_path / "app.zip")


def test_cli(tmp_path: Path) -> None:
    result = CliRunner().invoke(teams_cli, ["package", "--out", str(tmp_path / "x.zip"), "--app-id", "abc"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "x.zip").is_file()
