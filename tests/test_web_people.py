"""People on the page, in a real headless Chromium, as a newcomer meets them: faces turned on for a synced folder of
real face photos, the people strip fills, two persons are named in place, "奥巴马 在海边" shows only his photos,
the viewer draws each face's box with its person and one face is corrected, and two persons are merged."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from adapters.encoders.clip_encoder import ChineseClipEncoder
from app.main import create_app
from config import Settings
from tests import facefiles
from tests.conftest import serve
from tests.test_web_page import ARTIFACTS, chromium_path
from tests.test_web_video import _wait_for_job

C = "family"


@pytest.fixture
def people_server(
    data_root: Path, make_settings: Callable[..., Settings], encoder: ChineseClipEncoder
) -> Iterator[str]:
    folder = data_root / f"phone_{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    shots = facefiles.variants(3, seed=9, names=["obama.jpg", "obama2.jpg", "biden.jpg"])
    for n, shot in enumerate(shots):
        (folder / f"IMG_{n:04d}_{shot.person}.jpg").write_bytes(shot.data)
    (folder / "IMG_0100_group.jpg").write_bytes(facefiles.jpeg(facefiles.photo(facefiles.GROUP)))
    with serve(create_app(make_settings(faces="on"), encoder=encoder)) as base, httpx.Client(base_url=base) as client:
        source = client.post(f"/collections/{C}/sources", json={"path": folder.name}).json()
        job = _wait_for_job(client, client.post(f"/collections/{C}/sources/{source['id']}/sync").json()["job_id"])
        assert job["state"] == "succeeded" and job["result"]["counts"]["stored"] == len(shots) + 1, job
        yield base


def _names(page) -> list[tuple[str, int]]:  # type: ignore[no-untyped-def]
    """(name, faces) of each person in the strip, as shown."""
    return sorted(
        (card.locator(".person-name").input_value(), int(card.locator(".person-count").inner_text()))
        for card in page.locator(".person").all()
    )


def test_page_names_filters_corrects_and_merges_people(people_server: str, tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        page = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN").new_page()
        page.goto(people_server + "/")
        page.wait_for_function("document.querySelectorAll('.person').length === 2")
        assert sorted(n for _, n in _names(page)) == [3, 6]  # obama 6 (two photos × 3), biden 3
        cards = page.locator(".person")
        big = 0 if int(cards.nth(0).locator(".person-count").inner_text()) == 6 else 1
        for index, name in ((big, "奥巴马"), (1 - big, "拜登")):
            field = cards.nth(index).locator(".person-name")
            field.fill(name)
            field.press("Enter")
            page.wait_for_function(f"document.querySelector('#people-status').textContent.includes('{name}')")
        assert _names(page) == [("奥巴马", 6), ("拜登", 3)]
        page.screenshot(path=str(ARTIFACTS / "web-people-strip.png"))

        page.locator("#query").fill("奥巴马 在海边")
        page.wait_for_function("document.querySelector('#status').textContent.includes('奥巴马')")
        page.wait_for_function("document.querySelectorAll('.card').length === 6")
        ids = {c.get_attribute("data-image-id") for c in page.locator(".card").all()}
        expected = httpx.post(
            f"{people_server}/img/search", json={"collection": C, "text": "奥巴马 在海边", "top_k": 30}
        ).json()
        assert ids == {h["image_id"] for h in expected["hits"]} and len(ids) == 6

        # A click on 拜登's face keeps his photos only (and 奥巴马 from the text: none together).
        page.locator("#query").fill("人")
        page.wait_for_function("document.querySelector('#status').textContent.includes('“人”')")
        cards.nth(1 - big).locator("img").click()
        page.wait_for_function("document.querySelectorAll('.card').length === 3")

        # The viewer: the face's box and its person; correct it to 奥巴马.
        page.locator('.card[data-rank="1"]').click()
        page.wait_for_function("document.querySelectorAll('#face-boxes rect').length === 1")
        assert page.locator("#face-boxes text").text_content() == "拜登"
        picture, box = page.locator("#viewer-img").bounding_box(), page.locator("#face-boxes rect").bounding_box()
        assert picture["x"] <= box["x"] and box["x"] + box["width"] <= picture["x"] + picture["width"] + 1
        # Over the face, drawn at the picture's own scale: portraits have it in their upper third, square.
        assert box["y"] + box["height"] / 2 < picture["y"] + picture["height"] / 3
        assert 0.8 < box["width"] / box["height"] < 1.25
        page.screenshot(path=str(ARTIFACTS / "web-people-viewer.png"))
        page.locator("#face-list select").select_option(label="改为：奥巴马")
        page.wait_for_function("document.querySelector('#face-boxes text')?.textContent === '奥巴马'")
        page.locator("#close-viewer").click()
        page.wait_for_function(
            "[...document.querySelectorAll('.person-count')].map(e => e.textContent).join() === '7,2'"
        )
        assert _names(page) == [("奥巴马", 7), ("拜登", 2)]

        # Merge the two (the page merges into the named one that comes first).
        for index in range(2):
            cards.nth(index).locator("input[type=checkbox]").check()
        page.locator("#merge-people").click()
        page.wait_for_function("document.querySelector('#people-status').textContent.includes('已合并')")
        page.wait_for_function("document.querySelectorAll('.person').length === 1")
        assert [n for _, n in _names(page)] == [9]
        browser.close()
