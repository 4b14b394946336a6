"""Images for campaign bodies: checked, cleaned and stored once, addressed absolutely.

An upload is decoded for real with Pillow (the name and the browser's content type prove
nothing), refused when it is not a PNG, JPEG, GIF or WebP, is over ``IMAGE_UPLOAD_MAX_MB`` or
has more pixels than ``IMAGE_MAX_PIXELS`` (a small file can decompress to gigabytes). What is kept
is re-encoded from the pixels: scaled down to ``IMAGE_MAX_WIDTH`` wide, turned upright, with no
EXIF, XMP or text chunks (camera, place and time stay with the sender). The file is named by the
SHA-256 of what is stored, so the same image uploaded twice is stored once. Mail clients load the
image from ``SITE_URL``, so the address handed back is absolute.

Static WebP becomes PNG (with transparency) or JPEG: Outlook for Windows shows no WebP.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from PIL import Image, ImageOps, ImageSequence, UnidentifiedImageError

IMAGE_FOLDER = "campaign-images"
IMAGE_MAX_WIDTH = 1200
# Pixels decoded for one upload (all frames of an animation together): 40 megapixels is a
# 7,700 x 5,200 photo, more than any phone takes, and about 160 MB of memory once decoded.
IMAGE_MAX_PIXELS = 40_000_000
ACCEPTED_FORMATS = {"PNG": "png", "JPEG": "jpg", "GIF": "gif", "WEBP": "webp"}
CONTENT_TYPES = {"png": "image/png", "jpg": "image/jpeg", "gif": "image/gif", "webp": "image/webp"}
# Frame timing and palette transparency: the only metadata that changes how the image looks.
KEPT_INFO = ("transparency", "duration", "loop", "background", "disposal")


class ImageRefused(ValueError):
    """An upload that is not kept; the message tells staff what to do instead."""


@dataclass(frozen=True)
class StoredImage:
    name: str  # in default_storage
    url: str  # absolute: what the email's <img src> gets
    width: int
    height: int


def max_upload_bytes() -> int:
    return settings.IMAGE_UPLOAD_MAX_MB * 1024 * 1024


def too_big_message() -> str:
    return (
        f"The image is too big: the limit is {settings.IMAGE_UPLOAD_MAX_MB} MB. "
        f"Save it smaller (for example {IMAGE_MAX_WIDTH:,} pixels wide) and try again."
    )


def image_store(*, upload) -> StoredImage:
    """Check, clean and store an uploaded image (a Django ``UploadedFile``)."""
    if upload.size > max_upload_bytes():
        raise ImageRefused(too_big_message())
    data = upload.read(max_upload_bytes() + 1)
    if len(data) > max_upload_bytes():
        raise ImageRefused(too_big_message())
    content, extension, width, height = image_clean(data)
    digest = hashlib.sha256(content).hexdigest()
    name = f"{IMAGE_FOLDER}/{digest}.{extension}"
    if not default_storage.exists(name):
        saved = default_storage.save(name, ContentFile(content))
        if saved != name:  # a concurrent upload of the same image won the race: keep one file
            default_storage.delete(saved)
    return StoredImage(name=name, url=absolute_url(default_storage.url(name)), width=width, height=height)


def absolute_url(url: str) -> str:
    return url if "://" in url else settings.SITE_URL + url


def image_clean(data: bytes) -> tuple[bytes, str, int, int]:
    """(stored bytes, file extension, width, height) of an upload, or ``ImageRefused``."""
    not_an_image = ImageRefused("This file is not an image Cobalt Mail can use. Upload a PNG, JPEG, GIF or WebP image.")
    try:
        with warnings.catch_warnings():
            # Pillow only warns below twice its own limit; ours is lower and checked below.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.format not in ACCEPTED_FORMATS:
                raise ImageRefused(
                    f"{image.format or 'This'} images cannot be used in email. Upload a PNG, JPEG, GIF or WebP image."
                )
            _check_pixels(image)
            return _reencode(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _too_many_pixels() from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as error:
        if isinstance(error, ImageRefused):
            raise
        raise not_an_image from None


def _too_many_pixels() -> ImageRefused:
    return ImageRefused(
        f"The image has too many pixels (the limit is {IMAGE_MAX_PIXELS // 1_000_000} million). "
        f"Save it smaller, for example {IMAGE_MAX_WIDTH} pixels wide, and try again."
    )


def _check_pixels(image: Image.Image) -> None:
    """Refuse before decoding: the header says how big the pixels will be."""
    frames = getattr(image, "n_frames", 1)
    if image.width * image.height * frames > IMAGE_MAX_PIXELS:
        raise _too_many_pixels()


def _reencode(image: Image.Image) -> tuple[bytes, str, int, int]:
    source_format = image.format
    frames = [ImageOps.exif_transpose(frame.copy()) for frame in ImageSequence.Iterator(image)]
    info = {key: image.info[key] for key in KEPT_INFO if key in image.info}
    for frame in frames:
        frame.info = {}  # nothing of the original's metadata (EXIF, XMP, ICC, text) is written
    width, height = frames[0].size
    if width > IMAGE_MAX_WIDTH:
        size = (IMAGE_MAX_WIDTH, max(1, round(height * IMAGE_MAX_WIDTH / width)))
        frames = [_resize(frame, size) for frame in frames]
        width, height = size
        info.pop("transparency", None)  # resized frames carry their transparency as alpha
    extension = ACCEPTED_FORMATS[source_format]
    if extension == "webp" and len(frames) == 1:
        extension = "png" if _has_alpha(frames[0], info) else "jpg"
    output = io.BytesIO()
    first = frames[0]
    options: dict = {}
    if extension == "jpg":
        first = first.convert("RGB")
        options = {"quality": 85, "optimize": True, "progressive": True}
    elif extension == "png":
        options = {"optimize": True}
        if "transparency" in info and first.mode in {"P", "L", "RGB"}:
            options["transparency"] = info["transparency"]
    if len(frames) > 1:
        options.update(save_all=True, append_images=frames[1:], **{k: v for k, v in info.items() if k != "background"})
    elif extension == "gif" and "transparency" in info:
        options["transparency"] = info["transparency"]
    first.save(output, format={"jpg": "JPEG", "png": "PNG", "gif": "GIF", "webp": "WEBP"}[extension], **options)
    return output.getvalue(), extension, width, height


def _resize(frame: Image.Image, size: tuple[int, int]) -> Image.Image:
    if frame.mode == "P":  # palette images scale badly; GIF re-quantises on save
        frame = frame.convert("RGBA")
    return frame.resize(size, Image.Resampling.LANCZOS)


def _has_alpha(image: Image.Image, info: dict) -> bool:
    return image.mode in {"RGBA", "LA", "PA"} or "transparency" in info
