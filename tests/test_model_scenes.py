"""The built-in scene generator: content, COCO output, determinism, atomic writing, command line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from model.scenes import (
    CATEGORIES,
    STUFF_CLASSES,
    THING_CLASSES,
    main,
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
    """50 small scenes: (image, instance map, category ids) each."""
    return [render_instances(np.random.default_rng([7, i]), 48) for i in range(1, 51)]


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
        assert 1 <= sum(is_thing[a["category_id"]] for a in anns) <= 6
        jpeg = np.asarray(Image.open(out / "train" / info["file_name"]).convert("RGB"))
        assert np.abs(jpeg.astype(int) - image).mean() < 6  # the file is this scene (JPEG 92)


def test_all_classes_appear_and_objects_vary(many):
    seen = set()
    for _, inst, cats in many:
        seen |= set(np.asarray(cats)[np.unique(inst)].tolist())
        assert 1 <= sum(c <= N_THINGS for c in cats) <= 6
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
