"""tfgcrf.data.folders: image listing and the deterministic hash split."""

import numpy as np
import pytest

from tfgcrf.data import folders
from tfgcrf.errors import UserError


def _touch(root, *relative_paths):
    for relative in relative_paths:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")


def test_list_images_is_recursive_sorted_and_filtered(tmp_path):
    _touch(tmp_path, "b/z.JPG", "a.png", "b/a/c.webp", "d.bmp", "e.jpeg", "notes.txt", ".hidden.png",
           ".cache/x.png", "f.gif")
    listed = [folders.relative_key(p, tmp_path) for p in folders.list_images(tmp_path)]
    assert listed == ["a.png", "b/a/c.webp", "b/z.JPG", "d.bmp", "e.jpeg"]


def test_list_images_of_a_missing_folder_raises(tmp_path):
    with pytest.raises(UserError, match="image folder not found"):
        folders.list_images(tmp_path / "missing")


def test_splits_are_disjoint_complete_and_stable_when_files_are_added(tmp_path):
    names = [f"class{i % 7}/photo_{i:04d}.jpg" for i in range(300)]
    _touch(tmp_path, *names)
    splits = {split: set(folders.split_images(tmp_path, split)) for split in folders.SPLITS}
    assert set.union(*splits.values()) == set(folders.list_images(tmp_path))
    assert sum(len(files) for files in splits.values()) == 300
    _touch(tmp_path, *[f"new/photo_{i}.png" for i in range(50)])
    for split, files in splits.items():
        assert files <= set(folders.split_images(tmp_path, split))
    assert folders.split_images(tmp_path, "val") == folders.split_images(tmp_path, "validation")


def test_split_fractions_follow_the_ratios():
    paths = [f"dir{i // 100}/image{i}.jpg" for i in range(20000)]
    for ratios in [(0.8, 0.1, 0.1), (0.5, 0.5, 0.0), (1, 1, 2)]:
        counts = {split: 0 for split in folders.SPLITS}
        for path in paths:
            counts[folders.split_of(path, ratios)] += 1
        expected = np.array(ratios, float) / sum(ratios)
        np.testing.assert_allclose([counts[s] / len(paths) for s in folders.SPLITS], expected, atol=0.015)


def test_split_of_is_a_fixed_function_of_the_path():
    # Pinned: the split of a file must never change between versions or machines.
    held_out = {i: folders.split_of(f"photo{i}.jpg") for i in range(60)}
    held_out = {i: split for i, split in held_out.items() if split != "train"}
    assert held_out == {5: "test", 17: "test", 33: "validation", 34: "validation", 41: "validation",
                        44: "validation", 48: "test", 54: "test"}
    assert folders.split_of("photo5.jpg", (8, 1, 1)) == "test"  # ratios are normalized
    assert folders.split_of("photo5.jpg", (1, 0, 0)) == "train"
    assert folders.split_of("photo0.jpg", (0, 0, 1)) == "test"


def test_offline_dir_resolution(monkeypatch):
    monkeypatch.delenv(folders.OFFLINE_DIR_ENV, raising=False)
    assert folders.offline_dir() == folders.DEFAULT_OFFLINE_DIR
    monkeypatch.setenv(folders.OFFLINE_DIR_ENV, "/collection")
    assert folders.offline_dir() == "/collection"
    assert folders.offline_dir("/explicit") == "/explicit"


def test_list_images_survives_symlink_loops_and_lists_a_photo_once(tmp_path):
    _touch(tmp_path, "a/photo.png", "b/other.jpg")
    (tmp_path / "a" / "loop").symlink_to(tmp_path)  # a/loop -> the root: a loop
    (tmp_path / "a" / "self").symlink_to(tmp_path / "a")  # a/self -> a
    (tmp_path / "c").symlink_to(tmp_path / "b")  # a second path to the folder b
    (tmp_path / "same.png").symlink_to(tmp_path / "a" / "photo.png")  # a second path to the photo
    listed = [folders.relative_key(p, tmp_path) for p in folders.list_images(tmp_path)]
    assert listed == ["a/photo.png", "b/other.jpg"]  # not a/loop/..., c/other.jpg, same.png
    # One photo, one split: the listing feeds the splits, which therefore cannot share a file.
    splits = [set(map(str, folders.split_images(tmp_path, split))) for split in folders.SPLITS]
    assert sum(map(len, splits)) == 2
