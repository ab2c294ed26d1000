"""Input file readers and settings defaults."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest

from config import Settings
from operations.ingest.flickr_format import BadLine, FeatureFile, TsvRow, count_lines, iter_tsv


def test_iter_tsv_yields_rows_and_names_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "x_imgs.tsv"
    good = base64.b64encode(b"\xff\xd8bytes").decode()
    path.write_text(f"1\t{good}\n\nbroken\n2\t***\n{'9' * 300}\t{good}\n3\t{good}\r\n")
    items = list(iter_tsv(path))
    rows = [i for i in items if isinstance(i, TsvRow)]
    bad = [str(i) for i in items if isinstance(i, BadLine)]
    assert [(r.line, r.image_id, r.data) for r in rows] == [(1, "1", b"\xff\xd8bytes"), (6, "3", b"\xff\xd8bytes")]
    assert bad[0].startswith("line 3") and "base64" in bad[1] and "1-255" in bad[2]
    assert count_lines(path) == 6


def test_feature_file_random_access_and_validation(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    lines = [
        {"image_id": 5, "feature": [3.0, 4.0]},
        {"image_id": "abc", "feature": [1.0, 0.0]},
        {"image_id": 7, "feature": [1.0]},
        {"image_id": 8, "feature": [0.0, 0.0]},
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines) + '{"image_id": 9, "feature": [1,\n')
    features = FeatureFile(path, dim=2)
    try:
        assert len(features) == 5 and "5" in features and "missing" not in features
        assert np.allclose(features.get("abc"), [1.0, 0.0])
        assert np.allclose(features.get("5"), [0.6, 0.8])  # normalised
        for image_id, message in (("7", "shape"), ("8", "zero"), ("9", "malformed")):
            with pytest.raises(BadLine, match=message):
                features.get(image_id)
    finally:
        features.close()


def test_settings_derive_paths_from_data_dir_and_read_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("IMGSEARCH_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("IMGSEARCH_MAX_TOP_K", "7")
    settings = Settings(_env_file=None)
    assert settings.max_top_k == 7
    assert settings.data_root == tmp_path / "datasets"
    assert settings.milvus_uri == str(tmp_path / "milvus.db") and settings.milvus_is_local
    assert settings.metadata_url == f"sqlite:///{tmp_path / 'metadata.db'}"
    assert settings.weights == "pretrained" and settings.model_name == "RN50"
    monkeypatch.setenv("IMGSEARCH_WEIGHTS", "randomish")
    with pytest.raises(ValueError):
        Settings(_env_file=None)


def test_every_setting_explains_itself() -> None:
    """The settings page of the docs is generated from these descriptions (docs/hooks.py, tests/test_docs.py)."""
    missing = [name for name, field in Settings.model_fields.items() if not field.description]
    assert not missing, f"settings without a description: {missing}"


def test_feature_lines_keep_every_image_id_findable(tmp_path: Path) -> None:
    """Ids with leading zeros, Chinese, commas, quotes or spaces come back exactly from a feature file."""
    from operations.ingest.flickr_format import feature_line

    ids = ["007", "12", "海边的日落", "a,b", 'q"x', "x y", "back\\slash"]
    path = tmp_path / "x_imgs.img_feat.jsonl"
    path.write_text(
        "".join(feature_line("image_id", i, [1.0, float(n), 0, 0]) for n, i in enumerate(ids)), encoding="utf-8"
    )
    assert '"image_id": 12,' in path.read_text(encoding="utf-8")  # plain numbers stay numbers, as Chinese-CLIP writes
    features = FeatureFile(path, 4)
    try:
        for n, image_id in enumerate(ids):
            expected = np.array([1.0, n, 0, 0]) / np.hypot(1.0, n)
            assert image_id in features and np.allclose(features.get(image_id), expected)
    finally:
        features.close()
