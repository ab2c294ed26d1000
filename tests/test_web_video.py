"""A moment of a video on the page, in a real headless Chromium: a picture dropped on the page finds the video it was
taken from, its card shows the moment's time range and plays it on hover (the original streamed with Range
requests), the viewer plays the moment from its start and stops at its end, widens it, and offers the clip."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from adapters.encoders.clip_encoder import ChineseClipEncoder
from app.main import create_app
from config import Settings
from tests.conftest import serve
from tests.imagefiles import jpeg
from tests.test_videos import _picture_of_second
from tests.test_web_page import ARTIFACTS, chromium_path
from tests.videofiles import write_video

C = "phone"


def _wait_for_job(client: httpx.Client, job_id: str) -> dict:
    for _ in range(600):
        job = client.get(f"/jobs/{job_id}").json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish")


@pytest.fixture
def video_server(data_root: Path, make_settings: Callable[..., Settings], encoder: ChineseClipEncoder) -> Iterator[str]:
    folder = data_root / f"camera_{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    write_video(folder / "VID_0001.mp4", seconds=8, patterned=True)
    for seed in range(3):
        (folder / f"IMG_{seed}.jpg").write_bytes(jpeg(40 + seed))
    with serve(create_app(make_settings(), encoder=encoder)) as base, httpx.Client(base_url=base) as client:
        source = client.post(f"/collections/{C}/sources", json={"path": folder.name}).json()
        job = _wait_for_job(client, client.post(f"/collections/{C}/sources/{source['id']}/sync").json()["job_id"])
        assert job["state"] == "succeeded" and job["result"]["counts"]["stored"] == 4, job
        yield base


def test_page_finds_plays_and_cuts_a_moment(video_server: str, tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    ARTIFACTS.mkdir(exist_ok=True)
    query = tmp_path / "second5.jpg"
    query.write_bytes(_picture_of_second(5))
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        try:
            page = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN").new_page()
            page.goto(video_server + "/")
            page.wait_for_function("document.querySelector('#collection').options.length > 0")
            page.locator("#file").set_input_files(str(query))
            page.wait_for_selector('.card[data-rank="1"].video')
            badge = page.locator('.card[data-rank="1"] .moment').inner_text()
            assert badge.startswith("▶ 0:0") and "–" in badge, badge

            # Hover: the moment plays over the thumbnail, from the original (a 206 range request).
            ranges: list[int] = []
            page.on(
                "response", lambda r: ranges.append(r.status) if "/img/phone/" in r.url and r.status == 206 else None
            )
            page.locator('.card[data-rank="1"]').hover()
            page.wait_for_function(
                "(() => { const v = document.querySelector('.card video.preview');"
                " return v && v.readyState >= 2 && !v.paused && v.currentTime > 4; })()"
            )
            assert ranges, "the original was not streamed in ranges"

            # The viewer plays the moment from its start and pauses at its end.
            page.locator('.card[data-rank="1"]').click()
            start = float(page.locator("#moment-start").input_value())
            end = float(page.locator("#moment-end").input_value())
            assert start <= 5.5 < end, (start, end)
            page.wait_for_function(
                f"(() => {{ const v = document.querySelector('#viewer-video');"
                f" return v.readyState >= 2 && v.currentTime >= {start} - 0.1; }})()"
            )
            page.wait_for_function(
                f"(() => {{ const v = document.querySelector('#viewer-video');"
                f" return v.paused && v.currentTime >= {end} - 0.1; }})()",
                timeout=20_000,
            )
            page.screenshot(path=str(ARTIFACTS / "web-moment.png"))

            # Wider by a second each side; the download is the clip of what is shown.
            page.locator("#moment-wider").click()
            assert float(page.locator("#moment-start").input_value()) == pytest.approx(max(0, start - 1), abs=0.05)
            href = page.locator("#moment-download").get_attribute("href")
            assert href and f"start_ms={round(max(0, start - 1) * 1000)}" in href and "download=true" in href
            clip = httpx.get(href if href.startswith("http") else video_server + href)
            assert clip.status_code == 200 and clip.headers["content-type"] == "video/mp4"

            # Photos only: no moment left in the grid.
            page.locator("#viewer").evaluate("d => d.close()")
            page.locator("#filter-kind").select_option("photo")
            page.wait_for_function(
                "document.querySelectorAll('.card').length > 0 && !document.querySelector('.card.video')"
            )
        finally:
            browser.close()
