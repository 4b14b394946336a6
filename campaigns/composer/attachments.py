"""Campaign attachments: checked on upload, stored once per campaign, attached at send time."""

from __future__ import annotations

import mimetypes
from pathlib import PurePath

from django.conf import settings
from django.core.files import File
from django.core.files.uploadedfile import UploadedFile
from django.db.models import Sum
from django.template.defaultfilters import filesizeformat
from django.utils.text import get_valid_filename

from campaigns.models import Campaign, CampaignAttachment

DEFAULT_MAX_BYTES = 10 * 1024 * 1024

# Extensions Amazon SES itself rejects (it refuses the whole message), plus other executables and
# scripts that mail providers quarantine. Checked on upload so staff learn it before sending.
REFUSED_EXTENSIONS = frozenset(
    [
        "ade",
        "adp",
        "app",
        "apk",
        "appx",
        "asp",
        "bas",
        "bat",
        "cer",
        "chm",
        "cmd",
        "com",
        "cpl",
        "crt",
        "csh",
        "der",
        "dll",
        "dmg",
        "exe",
        "fxp",
        "gadget",
        "hlp",
        "hta",
        "inf",
        "ins",
        "iso",
        "isp",
        "its",
        "jar",
        "js",
        "jse",
        "ksh",
        "lib",
        "lnk",
        "mad",
        "maf",
        "mag",
        "mam",
        "maq",
        "mar",
        "mas",
        "mat",
        "mau",
        "mav",
        "maw",
        "mda",
        "mdb",
        "mde",
        "mdt",
        "mdw",
        "mdz",
        "msc",
        "msh",
        "msh1",
        "msh2",
        "mshxml",
        "msh1xml",
        "msh2xml",
        "msi",
        "msix",
        "msp",
        "mst",
        "ops",
        "pcd",
        "pif",
        "plg",
        "prf",
        "prg",
        "ps1",
        "ps1xml",
        "ps2",
        "ps2xml",
        "psc1",
        "psc2",
        "reg",
        "scf",
        "scr",
        "sct",
        "sh",
        "shb",
        "shs",
        "sys",
        "tmp",
        "url",
        "vb",
        "vbe",
        "vbs",
        "vhd",
        "vps",
        "vsmacros",
        "vss",
        "vst",
        "vsw",
        "vxd",
        "ws",
        "wsc",
        "wsf",
        "wsh",
        "xnk",
    ]
)
# Executable formats recognised by their first bytes, whatever the file is called.
EXECUTABLE_MAGIC = (b"MZ", b"\x7fELF", b"\xcf\xfa\xed\xfe", b"\xfe\xed\xfa\xcf", b"\xca\xfe\xba\xbe", b"#!")


class AttachmentRefused(ValueError):
    """The file cannot be attached; the message says why, for staff."""


def max_bytes() -> int:
    return int(getattr(settings, "ATTACHMENT_MAX_BYTES", DEFAULT_MAX_BYTES))


def attachment_add(*, campaign: Campaign, upload: UploadedFile) -> CampaignAttachment:
    """Check and store one uploaded file for the campaign (refusals raise ``AttachmentRefused``)."""
    if not campaign.is_editable:
        raise AttachmentRefused("This campaign has started; its attachments can no longer change.")
    name = get_valid_filename(PurePath(upload.name or "attachment").name)[:200] or "attachment"
    extensions = [part.lower() for part in name.split(".")[1:]]
    refused = [ext for ext in extensions if ext in REFUSED_EXTENSIONS]
    if refused:
        raise AttachmentRefused(
            f"“{name}”: .{refused[-1]} files are refused (programs and scripts are blocked by mail providers "
            "and by Amazon SES). Send a link to the file instead."
        )
    head = upload.read(4)
    upload.seek(0)
    if head.startswith(EXECUTABLE_MAGIC):
        raise AttachmentRefused(f"“{name}” is a program or script; those cannot be attached.")
    used = campaign.attachments.aggregate(total=Sum("size"))["total"] or 0
    if used + upload.size > max_bytes():
        raise AttachmentRefused(
            f"“{name}” ({filesizeformat(upload.size)}) would take the campaign's attachments over the "
            f"{filesizeformat(max_bytes())} limit ({filesizeformat(used)} already attached)."
        )
    content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    attachment = CampaignAttachment(campaign=campaign, filename=name, content_type=content_type, size=upload.size)
    attachment.file.save(name, upload, save=False)
    attachment.save()
    return attachment


def attachment_remove(*, attachment: CampaignAttachment) -> None:
    if not attachment.campaign.is_editable:
        raise AttachmentRefused("This campaign has started; its attachments can no longer change.")
    attachment.file.delete(save=False)
    attachment.delete()


def campaign_attachments(campaign: Campaign) -> list[tuple[str, bytes, str]]:
    """(filename, content, mimetype) for every attachment; read once when the campaign compiles."""
    if not campaign.pk:
        return []
    files = []
    for attachment in CampaignAttachment.objects.filter(campaign_id=campaign.pk):
        with attachment.file.open("rb") as handle:
            files.append((attachment.filename, handle.read(), attachment.content_type))
    return files


def attachments_copy(*, source: Campaign, target: Campaign) -> int:
    """Give a duplicated campaign its own copy of the files (removing one must not break the other)."""
    copied = 0
    for attachment in CampaignAttachment.objects.filter(campaign=source):
        duplicate = CampaignAttachment(
            campaign=target, filename=attachment.filename, content_type=attachment.content_type, size=attachment.size
        )
        with attachment.file.open("rb") as handle:
            duplicate.file.save(attachment.filename, File(handle), save=False)
        duplicate.save()
        copied += 1
    return copied
