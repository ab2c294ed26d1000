"""Live Photo pairing: the MOV beside a photo of the same base name belongs to it; anything else stays a video."""

from __future__ import annotations

from operations.ingest.live_photos import pairs


def test_a_mov_beside_its_photo_belongs_to_it() -> None:
    paths = [
        "2024/IMG_0001.HEIC",
        "2024/IMG_0001.MOV",
        "2024/IMG_0002.jpg",
        "2024/img_0002.mov",  # another case, as some exports write it
        "2024/IMG_0003.MOV",  # a video of its own: no photo of that name
        "2025/IMG_0001.MOV",  # same base name in another folder: not the 2024 photo's
        "2024/IMG_0004.HEIC",
        "2024/IMG_0004.MP4",  # not a Live Photo's motion file
        "2024/clip.mov",
    ]
    assert pairs(paths) == {"2024/IMG_0001.MOV": "2024/IMG_0001.HEIC", "2024/img_0002.mov": "2024/IMG_0002.jpg"}


def test_ambiguous_names_are_not_paired() -> None:
    paths = ["a/IMG_1.HEIC", "a/IMG_1.JPG", "a/IMG_1.MOV", "b/X.mov", "b/x.MOV", "b/X.heic"]
    assert pairs(paths) == {}  # two photos for one MOV; two MOVs for one photo
