"""No Docker engine runs here, so docker-compose.yml and the Dockerfile are checked by reading them."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from urllib.parse import urlparse

import yaml

from config import Settings

ROOT = Path(__file__).resolve().parent.parent


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _resolve(value: str) -> str:
    """Expand ${VAR:-default} the way compose does when VAR is unset."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


def test_compose_has_milvus_stack_mysql_and_app_with_health_checks() -> None:
    services = _compose()["services"]
    assert {"etcd", "minio", "milvus", "mysql", "models", "app"} <= set(services)
    for name, service in services.items():
        if name != "models":  # a one-shot job: it exits once the exports are made
            assert "healthcheck" in service, f"{name} has no health check"
    assert services["milvus"]["environment"]["ETCD_ENDPOINTS"] == "etcd:2379"
    assert services["milvus"]["environment"]["MINIO_ADDRESS"] == "minio:9000"
    # The app waits for its stores itself (503 and /readyz until they answer): it only needs them started.
    for dependency in ("milvus", "mysql"):
        assert services["app"]["depends_on"][dependency]["condition"] == "service_started"
    assert "/readyz" in " ".join(services["app"]["healthcheck"]["test"])
    # The slim image serves exports that the image with PyTorch makes first, into the same model folder.
    assert services["app"]["depends_on"]["models"]["condition"] == "service_completed_successfully"
    assert (services["models"]["build"]["target"], services["app"]["build"]["target"]) == ("export", "serve")
    assert services["models"]["command"] == ["imgsearch", "warmup"]
    assert "./data/models:/data/models" in services["models"]["volumes"]
    assert "./data/models:/data/models" in services["app"]["volumes"]
    for key in ("IMGSEARCH_MODEL_DIR", "IMGSEARCH_WEIGHTS", "IMGSEARCH_MODEL_NAME"):
        assert services["models"]["environment"][key] == services["app"]["environment"][key], key
    declared = set(_compose()["volumes"])
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert source.startswith(".") or source in declared, volume


def test_app_settings_point_at_the_compose_services() -> None:
    services = _compose()["services"]
    env = {k: _resolve(str(v)) for k, v in services["app"]["environment"].items()}
    fields = {f"IMGSEARCH_{name.upper()}" for name in Settings.model_fields}
    assert set(env) <= fields, f"unknown settings: {set(env) - fields}"

    settings = Settings(_env_file=None, **{k.removeprefix("IMGSEARCH_").lower(): v for k, v in env.items()})
    assert not settings.milvus_is_local
    # several service processes on the shared stores, which that configuration allows; the server gets HNSW
    assert settings.workers >= 2 and settings.single_process_stores() == [] and settings.index_type == "HNSW"
    milvus = urlparse(str(settings.milvus_uri))
    assert milvus.hostname == "milvus" and str(milvus.port) in str(services["milvus"]["ports"])

    mysql = urlparse(str(settings.metadata_url))
    mysql_env = {k: _resolve(str(v)) for k, v in services["mysql"]["environment"].items()}
    assert mysql.scheme == "mysql+pymysql" and mysql.hostname == "mysql"
    assert mysql.path.lstrip("/") == mysql_env["MYSQL_DATABASE"]
    assert mysql.password == mysql_env["MYSQL_ROOT_PASSWORD"]
    # images are MEDIUMBLOBs up to max_image_bytes: the server must accept packets that large
    packet = next(a for a in services["mysql"]["command"] if a.startswith("--max-allowed-packet="))
    assert int(packet.split("=")[1].rstrip("M")) * 1024 * 1024 > settings.max_image_bytes


def _stages(dockerfile: str) -> dict[str, str]:
    parts = re.split(r"^FROM (\S+) AS (\S+)$", dockerfile, flags=re.M)
    return {
        name: f"FROM {base}\n{body}" for base, name, body in zip(parts[1::3], parts[2::3], parts[3::3], strict=True)
    }


def test_dockerfile_serves_without_torch_and_exports_in_its_own_stage() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    stages = _stages(dockerfile)
    assert list(stages) == ["base", "export", "serve"]  # the last stage is what `docker build .` makes
    # The project's own list, pinned by the lock, with OCR (and the system libraries OpenCV needs) and video
    # (PyAV, FFmpeg inside its wheel), without torch.
    assert 'pip install -c requirements.lock ".[ocr,video,faces]"' in stages["base"] and "libgl1" in stages["base"]
    assert "[export]" not in stages["base"] + stages["serve"]
    assert 'pip install -c requirements.lock ".[export]"' in stages["export"]
    assert stages["export"].startswith("FROM base") and stages["serve"].startswith("FROM base")
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    for package in packages:
        assert f"COPY {package.rstrip('*')} ./{package.rstrip('*')}" in dockerfile
    cmd = re.search(r"^CMD (\[.*\])$", stages["serve"], re.M)
    assert cmd is not None
    assert yaml.safe_load(cmd.group(1)) == ["imgsearch", "serve", "--host", "0.0.0.0", "--port", "8000"]
    assert "fonts-wqy-microhei" in dockerfile  # Chinese captions in result pictures
    assert "EXPOSE 8000" in dockerfile and "8000:8000" in _compose()["services"]["app"]["ports"]
    assert "HEALTHCHECK" in dockerfile and "/readyz" in dockerfile  # ready = both stores answer


def test_lock_file_pins_every_direct_dependency_at_the_same_version() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lock = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            lock[re.sub(r"[-_.]+", "-", name.lower())] = version
    extras = project["optional-dependencies"]
    for requirement in [*project["dependencies"], *extras["export"], *extras["ocr"], *extras["dev"]]:
        if requirement.startswith(project["name"]):
            continue  # dev includes the export extra by name
        name, version = requirement.split("==")
        assert lock[re.sub(r"[-_.]+", "-", name.lower())] == version, requirement


def test_the_serving_install_has_no_torch_and_dev_has_the_export_extra() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    heavy = {"torch", "torchvision", "cn-clip", "cn_clip"}
    assert not {r.split("==")[0].lower() for r in project["dependencies"]} & heavy
    assert {r.split("==")[0].lower() for r in project["optional-dependencies"]["export"]} >= {"torch", "cn_clip"}
    assert (
        f"{project['name']}[export,ocr,distributed,docs,video,faces]" in project["optional-dependencies"]["dev"]
    )  # OCR, Ray, docs, video, faces too
    assert "ray" not in {r.split("[")[0].split("==")[0] for r in project["dependencies"]}  # serving stays without
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    vocab = data["adapters.encoders"]
    assert "clip_vocab.txt" in vocab and (ROOT / "adapters" / "encoders" / "clip_vocab.txt").stat().st_size > 100_000


def test_the_search_page_is_packaged() -> None:
    """The image installs the package (not a checkout): the page's files must be package data."""
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["app"]
    files = sorted((ROOT / "app" / "web").iterdir())
    assert {f.name for f in files} >= {"index.html", "app.js", "style.css"}
    for file in files:
        assert any(file.relative_to(ROOT / "app").match(pattern) for pattern in globs), file
