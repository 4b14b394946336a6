"""The rich editor's image upload: real images are cleaned and stored once; everything else is refused."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from PIL import ExifTags, Image

from campaigns.composer.images import IMAGE_FOLDER
from organisations.models import Membership, Role

pytestmark = pytest.mark.django_db


@pytest.fixture
def media(settings, tmp_path) -> Path:
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.SITE_URL = "https://club.example"
    return settings.MEDIA_ROOT


def picture(width: int, height: int, image_format: str, **save_options) -> bytes:
    image = Image.new("RGB", (width, height), (30, 120, 200))
    for x in range(0, width, 7):  # some detail, so that re-encoding has something to do
        image.putpixel((x, x * height // width), (250, 250, 250))
    buffer = io.BytesIO()
    image.save(buffer, image_format, **save_options)
    return buffer.getvalue()


def upload(client, content: bytes, name: str = "photo.png", content_type: str = "image/png"):
    return client.post(reverse("compose:image_upload"), {"image": SimpleUploadedFile(name, content, content_type)})


def stored_files(media: Path) -> list[Path]:
    folder = media / IMAGE_FOLDER
    return sorted(folder.iterdir()) if folder.exists() else []


@pytest.mark.parametrize(
    ("image_format", "name", "content_type", "stored_as"),
    [
        ("PNG", "logo.png", "image/png", "png"),
        ("JPEG", "photo.jpg", "image/jpeg", "jpg"),
        ("GIF", "badge.gif", "image/gif", "gif"),
        ("WEBP", "banner.webp", "image/webp", "jpg"),  # Outlook shows no WebP
    ],
)
def test_it_stores_each_accepted_kind_of_image(staff_client, media, image_format, name, content_type, stored_as):
    response = upload(staff_client, picture(300, 200, image_format), name, content_type)

    assert response.status_code == 201
    answer = response.json()
    assert answer["url"].startswith(f"https://club.example/media/{IMAGE_FOLDER}/")
    assert answer["url"].endswith(f".{stored_as}")
    assert (answer["width"], answer["height"]) == (300, 200)
    [stored] = stored_files(media)
    with Image.open(stored) as image:
        assert image.size == (300, 200)


def test_it_keeps_transparency_of_a_webp(staff_client, media):
    image = Image.new("RGBA", (50, 50), (30, 120, 200, 255))
    image.paste((0, 0, 0, 0), (0, 0, 25, 50))  # the left half is see-through
    buffer = io.BytesIO()
    image.save(buffer, "WEBP", lossless=True)
    answer = upload(staff_client, buffer.getvalue(), "a.webp", "image/webp").json()
    assert answer["url"].endswith(".png")
    with Image.open(stored_files(media)[0]) as image:
        assert image.mode == "RGBA"


def test_it_stores_the_same_image_once(staff_client, media):
    content = picture(120, 80, "PNG")
    first = upload(staff_client, content, "a.png").json()
    second = upload(staff_client, content, "copy-of-a.png").json()

    assert first["url"] == second["url"]
    assert len(stored_files(media)) == 1


def test_it_scales_wide_images_down_to_1200_pixels(staff_client, media):
    answer = upload(staff_client, picture(3000, 1500, "JPEG"), "wide.jpg", "image/jpeg").json()

    assert (answer["width"], answer["height"]) == (1200, 600)
    with Image.open(stored_files(media)[0]) as image:
        assert image.size == (1200, 600)


def test_it_strips_exif_and_turns_photos_upright(staff_client, media):
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "Phonemaker"
    exif[ExifTags.Base.Orientation] = 6  # taken sideways: shown rotated 90° clockwise
    exif.get_ifd(ExifTags.IFD.GPSInfo)[ExifTags.GPS.GPSLatitude] = (51.0, 30.0, 0.0)
    content = picture(400, 300, "JPEG", exif=exif.tobytes())
    with Image.open(io.BytesIO(content)) as original:
        assert original.getexif()[ExifTags.Base.Make] == "Phonemaker"

    response = upload(staff_client, content, "holiday.jpg", "image/jpeg")

    assert response.status_code == 201
    stored = stored_files(media)[0]
    with Image.open(stored) as image:
        assert not image.getexif()
        assert "exif" not in image.info
        assert image.size == (300, 400)
    assert b"Phonemaker" not in stored.read_bytes()


def test_it_strips_text_chunks_from_pngs(staff_client, media):
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Author", "Secret Person")
    upload(staff_client, picture(40, 40, "PNG", pnginfo=info))

    assert b"Secret Person" not in stored_files(media)[0].read_bytes()


def test_it_keeps_animated_gifs_moving(staff_client, media):
    frames = [Image.new("RGB", (1500, 100), colour).convert("P") for colour in ("red", "green", "blue")]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=200, loop=0)

    answer = upload(staff_client, buffer.getvalue(), "wave.gif", "image/gif").json()

    assert (answer["width"], answer["height"]) == (1200, 80)
    with Image.open(stored_files(media)[0]) as image:
        assert image.n_frames == 3


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG signature and header claiming a huge size, with almost no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    ("content", "name", "content_type", "status", "message"),
    [
        (b"Dear members, the regatta is on Saturday.\n", "notes.txt", "text/plain", 415, "is not an image"),
        (b"Dear members, the regatta is on Saturday.\n", "notes.png", "image/png", 415, "is not an image"),
        (b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\n", "flyer.pdf", "application/pdf", 415, "is not an image"),
        (
            b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
            "logo.svg",
            "image/svg+xml",
            415,
            "is not an image",
        ),
        (png_header_only(100_000, 100_000), "bomb.png", "image/png", 415, "too many pixels"),
        (png_header_only(9_000, 5_000), "big.png", "image/png", 415, "too many pixels"),
        (picture(300, 200, "PNG")[:200], "cut.png", "image/png", 415, "is not an image"),
        (picture(30, 20, "BMP"), "old.bmp", "image/bmp", 415, "BMP images cannot be used in email"),
        (picture(30, 20, "TIFF"), "scan.tif", "image/tiff", 415, "TIFF images cannot be used in email"),
    ],
)
def test_it_refuses_anything_that_is_not_a_usable_image(
    staff_client, media, content, name, content_type, status, message
):
    response = upload(staff_client, content, name, content_type)

    assert response.status_code == status
    assert message in response.json()["error"]
    assert stored_files(media) == []


def test_it_refuses_images_over_the_size_limit(staff_client, media, settings):
    settings.IMAGE_UPLOAD_MAX_MB = 1
    noise = Image.frombytes(
        "RGB", (700, 700), bytes(range(256)) * (700 * 700 * 3 // 256) + b"\0" * (700 * 700 * 3 % 256)
    )
    buffer = io.BytesIO()
    noise.save(buffer, "PNG", compress_level=0)
    assert len(buffer.getvalue()) > 1024 * 1024

    response = upload(staff_client, buffer.getvalue(), "huge.png")

    assert response.status_code == 413
    assert "the limit is 1 MB" in response.json()["error"]
    assert stored_files(media) == []


def test_it_asks_for_a_file(staff_client, media):
    response = staff_client.post(reverse("compose:image_upload"), {})
    assert response.status_code == 400
    assert "Choose an image file" in response.json()["error"]


def test_uploading_needs_an_editor_login_and_a_csrf_token(client, member_user, organisation, staff_user, media):
    content = picture(10, 10, "PNG")
    assert upload(client, content).status_code == 302  # to the login page
    Membership.objects.create(user=member_user, organisation=organisation, role=Role.VIEWER)
    client.force_login(member_user)
    assert upload(client, content).status_code == 403
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(staff_user)
    assert upload(strict, content).status_code == 403
    assert stored_files(media) == []


def test_stored_images_are_public_and_nothing_else_in_media_is(client, staff_client, media):
    url = upload(staff_client, picture(20, 10, "PNG")).json()["url"]
    (media / "imports").mkdir()
    (media / "imports" / "members.csv").write_text("email\nsecret@example.com\n")

    response = client.get(url.removeprefix("https://club.example"))
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert "immutable" in response["Cache-Control"]
    assert b"".join(response.streaming_content).startswith(b"\x89PNG")
    for path in ("/media/imports/members.csv", f"/media/{IMAGE_FOLDER}/..%2Fimports%2Fmembers.csv"):
        assert client.get(path).status_code in {302, 404}
    assert client.get(f"/media/{IMAGE_FOLDER}/{'0' * 64}.png").status_code == 404
