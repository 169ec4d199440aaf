"""The one table of what `python -m indexing coco` downloads: official URLs, sizes, checksums.

Where each figure comes from (nothing here was measured by this project; none of these files
can be downloaded on the machines this project is developed on):
- URLs: the "Downloads" table of the COCO-Stuff README (github.com/nightrome/cocostuff), which
  links val2017.zip and annotations_trainval2017.zip on images.cocodataset.org and
  stuffthingmaps_trainval2017.zip on calvin.inf.ed.ac.uk.
- MD5 of val2017.zip (442b8da7...) and of annotations_trainval2017.zip (f4bbac64...): the
  published COCO 2017 MD5 tables of other projects, which agree: PaddleDetection
  (ppdet/data/tests/test_reader.py: COCO_VAL_MD5SUM, COCO_ANNO_MD5SUM) and mlverse/torchvision
  (R/dataset-coco.R: img_md5, ann_md5 of 2017).
- Exact byte sizes of those two (815,585,330 and 252,907,541): the official server's
  Content-Length as public download logs and scripts record it (not measured here): a wget log
  of images.cocodataset.org prints "Length: 815585330 (778M) [application/zip]" for val2017.zip;
  the Keras example "Creating TFRecords" (keras-io, examples/keras_recipes), which downloads
  both files from images.cocodataset.org, shows totals of 815585330 and 252907541 in its
  download progress; public download scripts pin both sizes. Consistent with the COCO-Stuff
  README's rounded sizes (778 MiB ~ "1 GB", 241 MiB = "241 MB").
- Member counts: val2017 has 5,000 images (COCO); the stuffthingmaps cover the same 5,000
  (COCO-Stuff README: "val 5K"); an exact count of the real stuffthingmaps zip is not verified.
- stuffthingmaps_trainval2017.zip: NO published checksum or exact size was found (the COCO-Stuff
  README gives only "659 MB"). Its size and MD5 are None: unknown and unverified. The file is
  checked instead by the CRC-32 of every member that is unpacked (val2017/*.png, read in full
  before anything is written) and by the expected members (5,000 PNGs under val2017/). A
  mirror that serves another file with the same member names is not detected; the README says
  so ("Explore COCO val").
"""

from __future__ import annotations

from dataclasses import dataclass, replace

MIB = 1 << 20


@dataclass(frozen=True)
class Archive:
    """One archive to download and the part of it to unpack."""

    name: str  # short name used in messages and marker files: "val2017"
    url: str  # official location
    size: int | None  # exact bytes as published; None = unknown (then not checked)
    md5: str | None  # published MD5 (hex); None = unknown (then the zip's CRCs are tested)
    approx_size: int  # bytes, for the disk check and progress when size is None
    prefix: str  # unpack only members under this path inside the zip ("val2017/")
    target: str  # folder under --root that receives them ("val2017"); replaced as a whole
    members: int  # exact number of files expected under prefix
    unpacked_budget: int  # bytes reserved for the unpacked files in the disk check (a bound)
    source: str  # where size and checksum come from (shown by --help and in errors)

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


COCO_VAL_ARCHIVES: tuple[Archive, ...] = (
    Archive(
        name="val2017",
        url="http://images.cocodataset.org/zips/val2017.zip",
        size=815_585_330,
        md5="442b8da7639aecaf257c1dceb8ba8c80",
        approx_size=815_585_330,
        prefix="val2017/",
        target="val2017",
        members=5000,
        unpacked_budget=815_585_330,  # JPEGs are stored, not compressed: about the zip's size
        source="MD5: PaddleDetection and mlverse/torchvision COCO tables; size: the server's "
        "Content-Length in public download logs and scripts",
    ),
    Archive(
        name="annotations",
        url="http://images.cocodataset.org/annotations/annotations_trainval2017.zip",
        size=252_907_541,
        md5="f4bbac642086de4f52a3fdda2de5fa2c",
        approx_size=252_907_541,
        prefix="annotations/instances_val2017.json",
        target="annotations",
        members=1,
        unpacked_budget=128 * MIB,  # a bound for instances_val2017.json, not a measurement
        source="MD5: PaddleDetection and mlverse/torchvision COCO tables; size: the server's "
        "Content-Length in public download logs and scripts",
    ),
    Archive(
        name="stuffthingmaps",
        url="http://calvin.inf.ed.ac.uk/wp-content/uploads/data/cocostuffdataset/"
        "stuffthingmaps_trainval2017.zip",
        size=None,  # unknown and unverified: no published exact size
        md5=None,  # unknown and unverified: no published checksum (see the module docstring)
        approx_size=659 * MIB,  # the COCO-Stuff README's "659 MB"
        prefix="val2017/",
        target="stuffthingmaps/val2017",
        members=5000,
        unpacked_budget=256 * MIB,  # a bound for 5,000 indexed PNGs, not a measurement
        source="none published: size and MD5 unknown; zip CRCs and members are tested",
    ),
)


def with_mirror(archives: tuple[Archive, ...], base_url: str) -> tuple[Archive, ...]:
    """The same archives fetched from `<base_url>/<file name>` (a mirror, or a test server);
    sizes and checksums stay those of the table."""
    base = base_url.rstrip("/")
    return tuple(replace(a, url=f"{base}/{a.filename}") for a in archives)
