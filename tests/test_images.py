import hashlib
import io
import zipfile

import numpy as np
import pytest
from PIL import Image

from backend import images, settings
from tests.helpers import image_bytes


def ingest(db, actor, project, files, **kw):
    return images.ingest(db, actor, project["id"], images.iter_uploads(files), **kw)


def stored(db, image_id):
    row = images.get_image(db, image_id)
    return row, images.read_image_bytes(row)


def test_rgb_jpeg_and_png_are_stored_byte_for_byte(db, admin, project):
    jpeg, png = image_bytes((64, 48)), image_bytes((30, 20), fmt="PNG")
    report = ingest(db, admin, project, [("a.jpg", jpeg), ("b.png", png)])
    assert [i.outcome for i in report.items] == ["accepted", "accepted"]
    (row_a, data_a), (row_b, data_b) = stored(db, report.items[0].image_id), stored(db, report.items[1].image_id)
    assert data_a == jpeg and data_b == png
    assert (row_a["width"], row_a["height"], row_a["format"]) == (64, 48, "jpeg")
    assert (row_b["width"], row_b["height"], row_b["format"]) == (30, 20, "png")
    sha = hashlib.sha256(jpeg).hexdigest()
    assert row_a["sha256"] == sha
    assert row_a["path"] == f"images/{sha[:2]}/{sha}.jpg"
    assert (settings.data_dir() / row_a["path"]).read_bytes() == jpeg
    assert report.items[0].message == "stored unchanged"


@pytest.mark.parametrize("fmt, ext", [("BMP", "bmp"), ("WEBP", "webp"), ("TIFF", "tif")])
def test_other_formats_become_lossless_png(db, admin, project, fmt, ext):
    source = image_bytes((33, 21), color=(10, 200, 30), fmt=fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    report = ingest(db, admin, project, [(f"x.{ext}", source)])
    row, data = stored(db, report.items[0].image_id)
    assert row["format"] == "png" and (row["width"], row["height"]) == (33, 21)
    assert Image.open(io.BytesIO(data)).getpixel((5, 5)) == (10, 200, 30)


def test_gif_first_frame_only(db, admin, project):
    frames = [Image.new("P", (20, 10), i) for i in (1, 2)]
    for frame, color in zip(frames, ((255, 0, 0), (0, 0, 255))):
        frame.putpalette(list(color) * 256)
    out = io.BytesIO()
    frames[0].save(out, format="GIF", save_all=True, append_images=frames[1:])
    report = ingest(db, admin, project, [("anim.gif", out.getvalue())])
    item = report.items[0]
    assert item.outcome == "accepted" and "first frame" in item.message
    _, data = stored(db, item.image_id)
    assert Image.open(io.BytesIO(data)).convert("RGB").getpixel((3, 3)) == (255, 0, 0)


def test_exif_orientation_is_applied_once(db, admin, project):
    image = Image.new("RGB", (60, 20), (0, 0, 0))
    image.paste((255, 255, 255), (0, 0, 10, 20))  # white strip on the left of the raw pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif, quality=100)
    report = ingest(db, admin, project, [("phone.jpg", out.getvalue())])
    item = report.items[0]
    assert "rotated by EXIF orientation 6" in item.message
    row, data = stored(db, item.image_id)
    assert (row["width"], row["height"]) == (20, 60)
    shown = Image.open(io.BytesIO(data))
    assert shown.getexif().get(0x0112, 1) == 1  # no second rotation downstream
    assert shown.getpixel((10, 2))[0] > 200 and shown.getpixel((10, 58))[0] < 50  # strip now on top


@pytest.mark.parametrize("mode, color, expect, note", [
    ("CMYK", (0, 255, 255, 0), (255, 0, 0), "CMYK → RGB"),
    ("RGBA", (0, 0, 255, 0), (255, 255, 255), "transparency"),
    ("LA", (0, 128), (128, 128, 128), "transparency"),
])
def test_color_modes_become_rgb(db, admin, project, mode, color, expect, note):
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    report = ingest(db, admin, project, [(f"x.{fmt.lower()}", image_bytes((16, 16), color, fmt, mode))])
    item = report.items[0]
    assert note in item.message
    _, data = stored(db, item.image_id)
    pixel = Image.open(io.BytesIO(data)).convert("RGB").getpixel((8, 8))
    assert all(abs(a - b) <= 3 for a, b in zip(pixel, expect)), pixel


def test_palette_and_16_bit_become_rgb(db, admin, project):
    pal = Image.new("P", (8, 8), 3)
    pal.putpalette([0, 0, 0] * 3 + [10, 20, 30] + [0, 0, 0] * 252)
    out = io.BytesIO()
    pal.save(out, format="BMP")
    sixteen = Image.fromarray(np.full((8, 8), 65535 // 2, dtype=np.uint16))
    out16 = io.BytesIO()
    sixteen.save(out16, format="PNG")
    report = ingest(db, admin, project, [("p.bmp", out.getvalue()), ("deep.png", out16.getvalue())])
    _, pdata = stored(db, report.items[0].image_id)
    assert Image.open(io.BytesIO(pdata)).getpixel((1, 1)) == (10, 20, 30)
    assert "16-bit → 8-bit RGB" in report.items[1].message
    _, ddata = stored(db, report.items[1].image_id)
    assert Image.open(io.BytesIO(ddata)).getpixel((1, 1)) == (127, 127, 127)


def test_duplicates_are_skipped_and_reported(db, admin, project):
    jpeg = image_bytes()
    first = ingest(db, admin, project, [("a.jpg", jpeg), ("copy.jpg", jpeg)])
    assert [i.outcome for i in first.items] == ["accepted", "duplicate"]
    assert first.items[1].message == f"same content as image #{first.items[0].image_id} (a.jpg)"
    again = ingest(db, admin, project, [("later.jpg", jpeg)])
    assert again.items[0].outcome == "duplicate" and again.ok
    assert db.execute("select count(*) from images").fetchone()[0] == 1


def _truncated():
    data = image_bytes((200, 200), color=(1, 2, 3))
    return data[: len(data) // 2]


BAD_FILES = [
    ("empty.jpg", b"", "empty file"),
    ("notes.jpg", b"just some text, not a picture", "not an image"),
    ("half.jpg", _truncated(), "corrupt or truncated image"),
    ("broken.png", image_bytes(fmt="PNG")[:40] + b"\x00" * 40, "corrupt or truncated image"),
]


@pytest.mark.parametrize("name, data, reason", BAD_FILES)
def test_bad_files_are_rejected_with_a_reason_and_leave_nothing(db, admin, project, data_dir, name, data, reason):
    report = ingest(db, admin, project, [(name, data)])
    assert report.items[0].outcome == "rejected"
    assert reason in report.items[0].message
    assert db.execute("select count(*) from images").fetchone()[0] == 0
    assert not list((data_dir / "images").rglob("*.*")) if (data_dir / "images").exists() else True


def test_decompression_bomb_is_rejected_by_pixel_limit(db, admin, project, monkeypatch):
    big = image_bytes((400, 300), fmt="PNG")
    report = ingest(db, admin, project, [("bomb.png", big)], max_pixels=100_000)
    assert report.items[0].outcome == "rejected"
    assert report.items[0].message == ("image is 400×300 = 0.12 megapixels, over the limit of 0.1 "
                                       "megapixels (a decompression bomb, or set BOXWISE_MAX_PIXELS)")
    monkeypatch.setenv("BOXWISE_MAX_PIXELS", "119999")
    assert ingest(db, admin, project, [("bomb.png", big)]).items[0].outcome == "rejected"
    monkeypatch.setenv("BOXWISE_MAX_PIXELS", "120000")
    assert ingest(db, admin, project, [("bomb.png", big)]).items[0].outcome == "accepted"


def _zip(entries):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            archive.writestr(name, data)
    return out.getvalue()


def test_zip_upload_with_good_and_bad_entries(db, admin, project):
    good = image_bytes((20, 20), color=(9, 9, 9))
    archive = _zip([("dir/good.jpg", good), ("../evil.jpg", image_bytes()), ("/abs.jpg", image_bytes()),
                    ("readme.txt", b"hello"), ("__MACOSX/._good.jpg", b"junk")])
    report = ingest(db, admin, project, [("batch.zip", archive)])
    rows = {i.name: (i.outcome, i.message) for i in report.items}
    assert rows == {
        "batch.zip/dir/good.jpg": ("accepted", "stored unchanged"),
        "batch.zip/../evil.jpg": ("rejected", "zip entry path contains '..'"),
        "batch.zip//abs.jpg": ("rejected", "zip entry has an absolute path"),
        "batch.zip/readme.txt": ("rejected", "not an image file type (.txt)"),
    }
    assert images.get_image(db, report.items[0].image_id)["filename"] == "good.jpg"


def test_zip_bombs_are_refused(db, admin, project, monkeypatch):
    ratio_bomb = _zip([("zeros.bmp", b"\x00" * 5_000_000)])
    report = ingest(db, admin, project, [("bomb.zip", ratio_bomb)])
    assert report.items[0].outcome == "rejected"
    assert "compression ratio" in report.items[0].message and "zip bomb" in report.items[0].message
    monkeypatch.setattr(images, "MAX_ZIP_TOTAL_BYTES", 1000)
    report = ingest(db, admin, project, [("big.zip", _zip([("a.jpg", image_bytes((200, 200)))]))])
    assert report.items == [images.IngestItem("big.zip", "rejected", report.items[0].message)]
    assert "over the limit" in report.items[0].message
    assert ingest(db, admin, project, [("junk.zip", b"PK\x03\x04garbage")]).items[0].message.startswith("not a valid zip")


def test_progress_is_reported_per_file(db, admin, project):
    seen = []
    ingest(db, admin, project, [("a.jpg", image_bytes()), ("b.jpg", b"")],
           on_progress=lambda done, total, name: seen.append((done, name)))
    assert seen == [(1, "a.jpg"), (2, "b.jpg")]


def test_viewer_and_labeler_cannot_ingest(db, users, project):
    for role in ("viewer", "labeler"):
        with pytest.raises(PermissionError, match="may not ingest"):
            ingest(db, users[role], project, [("a.jpg", image_bytes())])


def test_stats_counts_images_and_boxes(db, admin, project):
    from backend import annotations, projects
    report = ingest(db, admin, project, [("a.jpg", image_bytes((50, 50))), ("b.jpg", image_bytes((50, 50), (1, 1, 1)))])
    cat = projects.label_by_name(db, project["id"], "cat")
    annotations.save_boxes(db, admin, report.items[0].image_id,
                           [{"label_id": cat["id"], "xmin": 1, "ymin": 1, "xmax": 9, "ymax": 9}], 0,
                           status="labeled")
    assert images.stats(db, project["id"]) == {
        "images": 2, "by_status": {"labeled": 1, "new": 1}, "boxes": 1,
        "boxes_per_class": {"cat": 1, "dog": 0, "bird": 0}}
