"""The Teams app package: manifest.json + two icons in a zip (`helpdesk teams package`)."""

from __future__ import annotations

import json
import struct
import zipfile
import zlib
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from bot.settings import PROJECT_ROOT, Settings

MANIFEST_DIR = PROJECT_ROOT / "config" / "teams-manifest"


def png(width: int, height: int, pixel: object) -> bytes:
    """A minimal RGBA PNG from `pixel(x, y) -> (r, g, b, a)`, with only zlib and struct."""
    rows = bytearray()
    for y in range(height):
        rows.append(0)  # filter: none
        for x in range(width):
            rows.extend(pixel(x, y))  # type: ignore[operator]

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(rows), 9)) + \
        chunk(b"IEND", b"")


def _in_mark(x: float, y: float) -> bool:
    """A speech bubble with a question mark-ish dot, on a unit square."""
    bubble = (x - 0.5) ** 2 / 0.30 ** 2 + (y - 0.45) ** 2 / 0.25 ** 2 <= 1
    tail = 0.30 <= x <= 0.45 and 0.62 <= y <= 0.82 and (x - 0.30) <= (0.82 - y)
    return bubble or tail


def color_icon() -> bytes:
    def pixel(x: int, y: int) -> tuple[int, int, int, int]:
        if _in_mark(x / 192, y / 192):
            return (255, 255, 255, 255)
        return (0x2B, 0x57, 0x9A, 255)

    return png(192, 192, pixel)


def outline_icon() -> bytes:
    def pixel(x: int, y: int) -> tuple[int, int, int, int]:
        return (255, 255, 255, 255) if _in_mark((x + 0.5) / 32, (y + 0.5) / 32) else (0, 0, 0, 0)

    return png(32, 32, pixel)


class PackageError(Exception):
    pass


def render_manifest(settings: Settings, app_id: str | None = None, directory: Path = MANIFEST_DIR) -> dict[str, object]:
    chosen = app_id or settings.teams.app_id
    if not chosen:
        raise PackageError("the manifest needs the bot's app id: set teams.app_id (HELPDESK_TEAMS__APP_ID) "
                           "or pass --app-id")
    env = Environment(loader=FileSystemLoader(str(directory)), undefined=StrictUndefined, autoescape=False)  # noqa: S701
    teams = settings.teams
    text = env.get_template("manifest.json.j2").render(
        app_id=chosen, version=teams.package_version, name=teams.package_name or settings.app.name,
        developer_name=teams.developer_name, website_url=teams.website_url.rstrip("/"))
    manifest: dict[str, object] = json.loads(text)
    return manifest


def build_package(settings: Settings, out: Path, app_id: str | None = None, directory: Path = MANIFEST_DIR) -> Path:
    manifest = render_manifest(settings, app_id, directory)
    out.parent.mkdir(parents=True, exist_ok=True)
    color = directory / "color.png"
    outline = directory / "outline.png"
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("manifest.json", json.dumps(manifest, indent=2, ensure_ascii=False))
        archive.writestr("color.png", color.read_bytes() if color.is_file() else color_icon())
        archive.writestr("outline.png", outline.read_bytes() if outline.is_file() else outline_icon())
    return out
