"""The Chinese-CLIP adapter: real cn_clip code, seeded random weights (no model hub here)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from adapters.encoders.clip_encoder import ChineseClipEncoder, ModelLoadError
from operations.ingest.sample_data import make_image


def _images(count: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.open(io.BytesIO(make_image(rng)[0])) for _ in range(count)]


def test_outputs_are_unit_float32_with_model_dim(encoder: ChineseClipEncoder) -> None:
    text = encoder.encode_text(["一只猫", "海边的日落", "a dog 🐶"])
    image = encoder.encode_images(_images(3))
    assert text.shape == (3, 1024) and image.shape == (3, 1024)
    assert text.dtype == np.float32 and image.dtype == np.float32
    assert np.allclose(np.linalg.norm(text, axis=1), 1.0, atol=1e-5)
    assert np.allclose(np.linalg.norm(image, axis=1), 1.0, atol=1e-5)
    assert encoder.info.dim == 1024 and encoder.info.weights == "random"


def test_batch_equals_one_by_one(encoder: ChineseClipEncoder) -> None:
    texts = ["红色的圆形", "蓝色背景上有两个方块", "一个男孩在游泳池里玩滑梯"]
    batch = encoder.encode_text(texts)
    single = np.concatenate([encoder.encode_text([t]) for t in texts])
    assert np.allclose(batch, single, atol=1e-5)
    images = _images(4, seed=3)
    assert np.allclose(
        encoder.encode_images(images), np.concatenate([encoder.encode_images([i]) for i in images]), atol=1e-4
    )


def test_search_texts_are_remembered_with_the_vectors_an_encoder_pass_gives(encoder: ChineseClipEncoder) -> None:
    texts = ["记住的第一句", "记住的第二句", "记住的第一句"]  # a repeated text in one call, too
    assert encoder.remembered_query(texts[0]) is None
    vectors = encoder.encode_queries(texts)
    assert np.allclose(vectors, encoder.encode_text(texts), atol=1e-5)
    assert np.array_equal(encoder.remembered_query(texts[1]), vectors[1])
    vectors[0] *= 0  # the caller's copy: what is remembered stays as it was
    assert np.allclose(encoder.encode_queries(texts[:1]), encoder.encode_text(texts[:1]), atol=1e-5)
    assert encoder.encode_queries([]).shape == (0, 1024)


def test_random_images_are_told_apart(encoder: ChineseClipEncoder) -> None:
    """Guards the random-weight build against collapse (cn_clip's own init maps every image to one point)."""
    vectors = encoder.encode_images(_images(12, seed=5))
    cosine = vectors @ vectors.T
    off_diagonal = cosine[~np.eye(len(vectors), dtype=bool)]
    assert off_diagonal.mean() < 0.97
    assert np.all(np.argmax(cosine, axis=1) == np.arange(len(vectors)))


def test_same_seed_same_model(encoder: ChineseClipEncoder) -> None:
    other = ChineseClipEncoder("RN50", weights="random", seed=0, threads=2)
    try:
        assert np.allclose(other.encode_text(["同一个种子"]), encoder.encode_text(["同一个种子"]), atol=1e-6)
    finally:
        other.close()


@pytest.fixture(scope="module")
def saved_checkpoint(encoder: ChineseClipEncoder, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The random model saved in Chinese-CLIP's checkpoint layout ({"state_dict": ...})."""
    import torch

    path = tmp_path_factory.mktemp("ckpt") / "clip_cn_rn50.pt"
    torch.save({"state_dict": encoder._model.state_dict(), "epoch": 0}, path)
    return path


def test_loads_a_local_checkpoint(encoder: ChineseClipEncoder, saved_checkpoint: Path) -> None:
    loaded = ChineseClipEncoder("RN50", weights="pretrained", checkpoint_path=saved_checkpoint, threads=2)
    try:
        assert loaded.info.weights == "checkpoint" and loaded.info.source == str(saved_checkpoint)
        texts = ["检查点", "checkpoint"]
        assert np.allclose(loaded.encode_text(texts), encoder.encode_text(texts), atol=1e-5)
        image = _images(1, seed=9)
        assert np.allclose(loaded.encode_images(image), encoder.encode_images(image), atol=1e-4)
    finally:
        loaded.close()


def test_loads_by_name_from_the_model_dir_without_network(
    encoder: ChineseClipEncoder, saved_checkpoint: Path, tmp_path: Path
) -> None:
    (tmp_path / "clip_cn_rn50.pt").symlink_to(saved_checkpoint)
    loaded = ChineseClipEncoder("RN50", weights="pretrained", model_dir=tmp_path, threads=2)
    try:
        assert loaded.info.weights == "pretrained"
        assert np.allclose(loaded.encode_text(["按名字加载"]), encoder.encode_text(["按名字加载"]), atol=1e-5)
    finally:
        loaded.close()


def test_missing_pretrained_weights_fail_loudly_naming_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # fail at once instead of ~23 s of retries
    encoder = ChineseClipEncoder("RN50", weights="pretrained", model_dir=tmp_path, threads=2)
    try:
        with pytest.raises(ModelLoadError) as raised:
            encoder.load()
        assert "IMGSEARCH_CHECKPOINT_PATH" in str(raised.value) and "IMGSEARCH_WEIGHTS=random" in str(raised.value)
        assert not encoder.loaded
    finally:
        encoder.close()


def test_checkpoint_of_the_wrong_model_is_refused(saved_checkpoint: Path) -> None:
    encoder = ChineseClipEncoder("ViT-B-16", weights="pretrained", checkpoint_path=saved_checkpoint, threads=2)
    try:
        with pytest.raises(ModelLoadError, match="does not hold ViT-B-16"):
            encoder.load()
    finally:
        encoder.close()
