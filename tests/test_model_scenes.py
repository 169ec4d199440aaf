"""The built-in scene generator: content, COCO output, determinism, atomic writing, command line."""

from __future__ import annotations

import colorsys
import hashlib
import json

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from model.scenes import (
    CATEGORIES,
    GENERATOR_VERSION,
    PALETTES,
    STUFF_CLASSES,
    STYLES,
    THING_CLASSES,
    main,
    palette_of,
    render_instances,
    render_scene,
    write_scenes,
)
from model.scenes import dataset as scenes_dataset

SIZE = 64
SEED = 5
N_THINGS = len(THING_CLASSES)
# pycocotools' mask decoding under numpy 2
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("scenes") / "ds"
    return out, write_scenes(out, images=12, size=SIZE, seed=SEED, workers=1)


@pytest.fixture(scope="module")
def many():
    """50 small hard scenes: (image, instance map, category ids) each."""
    return [render_instances(np.random.default_rng([7, i]), 48, "hard") for i in range(1, 51)]


@pytest.fixture(scope="module")
def natural():
    """200 natural scenes of 64 px: (image, instance map, category ids) each."""
    return [render_instances(np.random.default_rng([8, i]), 64) for i in range(1, 201)]


def test_categories_things_first_then_stuff():
    assert len(THING_CLASSES) >= 12 and len(STUFF_CLASSES) >= 4
    assert [c["id"] for c in CATEGORIES] == list(range(1, len(CATEGORIES) + 1))
    assert [c["name"] for c in CATEGORIES] == THING_CLASSES + STUFF_CLASSES
    assert [c["isthing"] for c in CATEGORIES] == [1] * N_THINGS + [0] * len(STUFF_CLASSES)


def test_render_scene_types_and_determinism():
    image, label = render_scene(np.random.default_rng([1, 2]), 80)
    assert image.shape == (80, 80, 3) and image.dtype == np.uint8
    assert label.shape == (80, 80)
    assert label.min() >= 1 and label.max() <= len(CATEGORIES)
    again = render_scene(np.random.default_rng([1, 2]), 80)
    other = render_scene(np.random.default_rng([2, 2]), 80)
    assert np.array_equal(image, again[0]) and np.array_equal(label, again[1])
    assert not np.array_equal(image, other[0])


def test_json_masks_partition_each_image_and_match_render(dataset):
    out, json_path = dataset
    coco = COCO(str(json_path))
    assert sorted(coco.getImgIds()) == list(range(1, 13))
    is_thing = {c["id"]: c["isthing"] for c in CATEGORIES}
    for image_id in coco.getImgIds():
        info = coco.loadImgs(image_id)[0]
        assert (info["width"], info["height"]) == (SIZE, SIZE)
        cover = np.zeros((SIZE, SIZE), dtype=np.int64)
        label = np.zeros((SIZE, SIZE), dtype=np.int64)
        anns = coco.loadAnns(coco.getAnnIds(imgIds=image_id))
        for ann in anns:
            mask = coco.annToMask(ann)
            assert ann["area"] == mask.sum() > 0 and ann["iscrowd"] == 0
            ys, xs = np.nonzero(mask)
            assert ann["bbox"] == [xs.min(), ys.min(), np.ptp(xs) + 1, np.ptp(ys) + 1]
            cover += mask
            label[mask == 1] = ann["category_id"]
        assert (cover == 1).all(), "masks must be disjoint and cover every pixel"
        image, expected = render_scene(np.random.default_rng([SEED, image_id]), SIZE)
        assert np.array_equal(label, expected)
        assert 1 <= sum(is_thing[a["category_id"]] for a in anns) <= 4  # natural: 1-4 objects
        jpeg = np.asarray(Image.open(out / "train" / info["file_name"]).convert("RGB"))
        assert np.abs(jpeg.astype(int) - image).mean() < 6  # the file is this scene (JPEG 92)


@pytest.mark.parametrize("scenes, most", [("many", 6), ("natural", 4)])
def test_all_classes_appear_and_objects_vary(request, scenes, most):
    seen = set()
    for _, inst, cats in request.getfixturevalue(scenes):
        seen |= set(np.asarray(cats)[np.unique(inst)].tolist())
        assert 1 <= sum(c <= N_THINGS for c in cats) <= most
    assert seen == set(range(1, len(CATEGORIES) + 1))


def test_colour_of_a_class_varies_between_instances(many):
    means: dict[int, list[np.ndarray]] = {}
    for image, inst, cats in many:
        for j, cat in enumerate(cats):
            if cat <= N_THINGS and (inst == j).sum() >= 20:
                means.setdefault(cat, []).append(image[inst == j].mean(axis=0))
    spreads = [np.ptp(np.stack(m), axis=0).max() for m in means.values() if len(m) >= 3]
    assert len(spreads) >= N_THINGS // 2
    assert min(spreads) > 40, "every class should come in clearly different colours"


# Digests of what generator version 1 (commit 19569c7, before the styles) drew: 12 scenes of
# seed 3 at 64 and 192 px, and the images, annotations and categories of a 6-image data set.
VERSION_1_RENDER = "0ed22826b3f101425555c422c39d6a709b6ab3e115a775580e7b168c4d1663bc"
VERSION_1_FILES = "868e7acc511a826e0c3a3ed21ef04daf57647a3134a76ef7cb5c778225eddb8d"


def test_hard_style_draws_exactly_what_version_1_drew(tmp_path):
    digest = hashlib.sha256()
    for i in range(1, 13):
        rng = np.random.default_rng([3, i])
        image, inst, cats = render_instances(rng, 64 if i % 2 else 192, "hard")
        digest.update(image.tobytes() + inst.astype(np.int32).tobytes() + bytes(cats))
    assert digest.hexdigest() == VERSION_1_RENDER
    json_path = write_scenes(tmp_path / "ds", 6, 64, seed=4, split="val", workers=1, style="hard")
    data = json.loads(json_path.read_text())
    digest = hashlib.sha256(
        json.dumps([data["images"], data["annotations"], data["categories"]]).encode()
    )
    for path in sorted((tmp_path / "ds" / "val").iterdir()):
        digest.update(path.read_bytes())
    assert digest.hexdigest() == VERSION_1_FILES
    assert data["info"]["scenes"]["style"] == "hard"
    assert data["info"]["scenes"]["version"] == GENERATOR_VERSION


def test_six_palettes_each_shared_by_exactly_one_pair_of_classes():
    from model.scenes.render import _THINGS

    assert len(PALETTES) == 6
    owners: dict[int, list[int]] = {}
    for cls in range(N_THINGS):
        owners.setdefault(palette_of(cls), []).append(cls)
    assert sorted(owners) == list(range(6))
    for a, b in owners.values():  # exactly two classes a palette, no other class wears it
        assert _THINGS[a][1] != _THINGS[b][1], "a pair must differ in shape"
        assert _THINGS[a][2] is not _THINGS[b][2], "a pair must differ in pattern"
    hues = sorted(colour_a[0] for _, colour_a, _ in PALETTES)
    gaps = np.diff(hues + [hues[0] + 1.0])
    assert gaps.min() >= 0.06, "main hues further apart than twice the hue jitter"


def _hsv(rgb: np.ndarray) -> np.ndarray:
    return np.array(colorsys.rgb_to_hsv(*rgb))


def _near(hsv: np.ndarray, target: tuple[float, float, float]) -> bool:
    hue_gap = abs((hsv[0] - target[0] + 0.5) % 1.0 - 0.5)
    saturation_matters = target[1] > 0.2 and target[2] > 0.2  # hue of a grey means nothing
    return (
        (hue_gap <= 0.04 + 1e-4 or not saturation_matters)
        and abs(hsv[1] - target[1]) <= 0.15 + 1e-4
        and abs(hsv[2] - target[2]) <= 0.15 + 1e-4
    )


def test_natural_colours_are_the_palette_jittered_except_for_random_ones():
    rng = np.random.default_rng(0)
    for cls in (0, 5, 11):
        _, colour_a, colour_b = PALETTES[palette_of(cls)]
        hits = []
        for _ in range(600):
            a, b = STYLES["natural"].colours(rng, cls)
            hits.append(_near(_hsv(a), colour_a) and _near(_hsv(b), colour_b))
        assert 0.78 < np.mean(hits) < 0.92, "85 % in the palette, 15 % random"
    rng = np.random.default_rng(0)
    hard = [STYLES["hard"].colours(rng, 0) for _ in range(300)]
    _, colour_a, colour_b = PALETTES[0]
    assert np.mean([_near(_hsv(a), colour_a) and _near(_hsv(b), colour_b) for a, b in hard]) < 0.05


def _class_colour_spread(scenes) -> float:
    """Median over classes of the median distance (RGB 0..255) of an instance's mean colour
    to its class's median colour."""
    means: dict[int, list[np.ndarray]] = {}
    for image, inst, cats in scenes:
        for j, cat in enumerate(cats):
            if cat <= N_THINGS and (inst == j).sum() >= 30:
                means.setdefault(cat, []).append(image[inst == j].mean(axis=0))
    spreads = []
    for m in means.values():
        m = np.stack(m)
        spreads.append(np.median(np.linalg.norm(m - np.median(m, axis=0), axis=1)))
    return float(np.median(spreads))


def test_natural_classes_keep_their_colours_in_the_images(many, natural):
    assert _class_colour_spread(natural) < 0.5 * _class_colour_spread(many)


def test_objects_cover_a_third_of_the_pixels_in_the_natural_style(natural, many):
    def share(scenes):
        things = sum((np.asarray(cats)[inst] <= N_THINGS).sum() for _, inst, cats in scenes)
        return things / sum(inst.size for _, inst, _ in scenes)

    assert 0.30 <= share(natural) <= 0.35
    assert 0.09 <= share(many) <= 0.18  # the hard style: about 14 %


def test_another_style_of_the_same_split_is_rebuilt(tmp_path):
    out = tmp_path / "ds"
    write_scenes(out, 3, 48, seed=0, workers=1)
    hard = write_scenes(out, 3, 48, seed=0, workers=1, style="hard")
    assert json.loads(hard.read_text())["info"]["scenes"]["style"] == "hard"
    assert scenes_dataset.find_complete(out, 3, 48, 0) is None  # natural: not there any more
    assert scenes_dataset.find_complete(out, 3, 48, 0, style="hard") == hard


@pytest.mark.parametrize("older", ["hard", "version 1"])
def test_a_split_beside_another_style_or_version_is_refused(tmp_path, older):
    out = tmp_path / "ds"
    train = write_scenes(out, 3, 48, seed=0, workers=1, style="hard")
    if older == "version 1":  # what the generator wrote before the styles: no style recorded
        data = json.loads(train.read_text())
        data["info"]["scenes"] = {k: v for k, v in data["info"]["scenes"].items() if k != "style"}
        data["info"]["scenes"]["version"] = 1
        train.write_text(json.dumps(data))
    before = train.read_bytes()
    other_style = "hard" if older == "version 1" else "natural"  # only the version, or the style
    with pytest.raises(FileExistsError, match="one style and version"):
        write_scenes(out, 2, 48, seed=1, split="val", workers=1, style=other_style)
    assert sorted(p.name for p in out.iterdir()) == ["annotations", "train"]
    assert train.read_bytes() == before


def test_command_line_style(tmp_path, capsys):
    assert (
        main(["--out", str(tmp_path / "ds"), "--images", "2", "--size", "48", "--style", "hard"])
        == 0
    )
    assert "2 hard images" in capsys.readouterr().out
    data = json.loads((tmp_path / "ds/annotations/instances_train.json").read_text())
    assert data["info"]["scenes"]["style"] == "hard"
    with pytest.raises(SystemExit) as exc:
        main(["--out", str(tmp_path / "other"), "--style", "soft"])
    assert exc.value.code == 2 and not (tmp_path / "other").exists()


def test_same_seed_same_bytes_any_workers_other_seed_differs(tmp_path):
    a = write_scenes(tmp_path / "a", 6, 48, seed=1, workers=1)
    b = write_scenes(tmp_path / "b", 6, 48, seed=1, workers=2)
    c = write_scenes(tmp_path / "c", 6, 48, seed=2, workers=1)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()
    names = sorted(p.name for p in (tmp_path / "a" / "train").iterdir())
    assert len(names) == 6
    for name in names:
        assert (tmp_path / "a/train" / name).read_bytes() == (
            tmp_path / "b/train" / name
        ).read_bytes()


def test_complete_data_set_is_reused_other_parameters_replace_it(tmp_path, monkeypatch):
    out = tmp_path / "ds"
    write_scenes(out, 4, 48, seed=0)
    before = (out / "annotations/instances_train.json").read_bytes()

    def fail(job):
        raise AssertionError("must not render again")

    monkeypatch.setattr(scenes_dataset, "_scene_record", fail)
    assert write_scenes(out, 4, 48, seed=0) == out / "annotations/instances_train.json"
    assert (out / "annotations/instances_train.json").read_bytes() == before
    monkeypatch.undo()
    write_scenes(out, 3, 48, seed=1, workers=1)
    data = json.loads((out / "annotations/instances_train.json").read_text())
    assert data["info"]["scenes"]["seed"] == 1 and len(data["images"]) == 3
    assert len(list((out / "train").iterdir())) == 3
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []


def _fail_at_image_3(monkeypatch):
    real = scenes_dataset._scene_record

    def flaky(job):
        if job[1] == 3:
            raise RuntimeError("interrupted")
        return real(job)

    monkeypatch.setattr(scenes_dataset, "_scene_record", flaky)


def test_interrupted_write_leaves_no_partial_directory(tmp_path, monkeypatch):
    _fail_at_image_3(monkeypatch)
    with pytest.raises(RuntimeError, match="interrupted"):
        write_scenes(tmp_path / "ds", 5, 48, seed=0, workers=1)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_second_split_keeps_the_first(tmp_path, monkeypatch):
    out = tmp_path / "ds"
    train = write_scenes(out, 3, 48, seed=0, workers=1)
    _fail_at_image_3(monkeypatch)
    with pytest.raises(RuntimeError):
        write_scenes(out, 5, 48, seed=9, split="val", workers=1)
    assert sorted(p.name for p in out.iterdir()) == ["annotations", "train"]
    assert sorted(p.name for p in (out / "annotations").iterdir()) == [train.name]
    assert scenes_dataset.find_complete(out, 3, 48, 0) == train


def test_refuses_to_replace_a_foreign_data_set(tmp_path):
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations/instances_train.json").write_text('{"images": []}')
    with pytest.raises(FileExistsError):
        write_scenes(tmp_path, 2, 48, seed=0, workers=1)
    assert (tmp_path / "annotations/instances_train.json").read_text() == '{"images": []}'


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--images", "0"], "--images"),
        (["--size", "16"], "--size"),
        (["--workers", "0"], "--workers"),
        (["--split", "a/b"], "split"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        main(["--out", str(tmp_path / "ds"), *argv])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "ds").exists()


def test_unwritable_output_exits_2(tmp_path, capsys):
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(SystemExit) as exc:
        main(["--out", str(tmp_path / "file" / "ds"), "--images", "2"])
    assert exc.value.code == 2
    assert "cannot write" in capsys.readouterr().err
