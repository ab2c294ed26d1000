"""The search page at / in a real headless Chromium (Debian's `chromium`, driven by Playwright): typing a
Chinese query fills the grid with the API's own first hit, dropping an image finds its duplicate first, a click
opens the full image and "more like this", and the page fits a phone. Screenshots go to test-artifacts/."""

from __future__ import annotations

import os
import random
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from adapters.encoders.clip_encoder import ChineseClipEncoder
from app.main import create_app
from config import Settings
from tests.conftest import load_split, serve
from tests.imagefiles import encode, jpeg, picture
from tests.text_pictures import draw, jpeg_of, lines_for

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
QUERY = "红色的圆形"
PHOTOS = 6


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail("chromium is not installed (apt-get install chromium); .ci/run installs it")
    pytest.skip("chromium is not installed (apt-get install chromium)")


@pytest.fixture
def live_server(
    small_split: Path, make_settings: Callable[..., Settings], encoder: ChineseClipEncoder
) -> Iterator[str]:
    with serve(create_app(make_settings(), encoder=encoder)) as base, httpx.Client(base_url=base) as client:
        assert load_split(client, "good", "small", "valid")["state"] == "succeeded"  # type: ignore[arg-type]
        # Photo-like images too: with random weights the generated shape pictures are near duplicates of
        # each other, photos are not, so "the duplicate ranks first" is a fair test.
        files = [("files", (f"photo{seed}.jpg", jpeg(seed), "image/jpeg")) for seed in range(PHOTOS)]
        data = {"collection": "good", "image_ids": [f"photo{seed}" for seed in range(PHOTOS)]}
        assert client.post("/img/upload", data=data, files=files).status_code == 200
        yield base


@pytest.fixture
def page(live_server: str) -> Iterator:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
            yield context.new_page()
        finally:
            browser.close()


def first_card(page) -> tuple[str, float]:  # type: ignore[no-untyped-def]
    card = page.locator('.card[data-rank="1"]')
    return card.get_attribute("data-image-id"), float(card.locator(".score").inner_text())


def test_search_page_by_text_and_by_image(live_server: str, page, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ARTIFACTS.mkdir(exist_ok=True)
    expected = httpx.post(f"{live_server}/img/search", json={"collection": "good", "text": QUERY, "top_k": 30}).json()

    page.goto(live_server + "/")
    page.wait_for_function("document.querySelector('#collection').options.length > 0")
    assert f"{60 + PHOTOS} 张图片" in page.locator("#overview").inner_text()

    page.locator("#query").press_sequentially(QUERY, delay=40)  # as a person types: debounced searches
    page.wait_for_function(f"document.querySelector('#status').textContent.includes('{QUERY}')")
    image_id, score = first_card(page)
    assert image_id == expected["hits"][0]["image_id"]
    assert score == pytest.approx(expected["hits"][0]["score"], abs=1e-3)
    assert page.locator(".card").count() == len(expected["hits"])
    # Thumbnails are served resized, not as originals.
    page.wait_for_function("document.querySelector('.card img').naturalWidth > 0")
    assert page.locator(".card img").first.evaluate("img => Math.max(img.naturalWidth, img.naturalHeight)") <= 320
    page.screenshot(path=str(ARTIFACTS / "web-text-search.png"), full_page=True)

    # 以图搜图: drop in a copy of a stored photo; the stored one ranks first with score 1.
    target = "photo3"
    copy = tmp_path / "copy.jpg"
    copy.write_bytes(jpeg(3))
    page.locator("#file").set_input_files(str(copy))
    page.wait_for_function("document.querySelector('#status').textContent.includes('与 copy.jpg 最相似')")
    image_id, score = first_card(page)
    assert image_id == target and score == pytest.approx(1.0, abs=1e-3)

    # Click → full image → more like this (which leaves the image itself out).
    page.locator('.card[data-rank="1"]').click()
    page.wait_for_function("document.querySelector('#viewer').open")
    page.wait_for_function("document.querySelector('#viewer-img').naturalWidth > 0")
    page.screenshot(path=str(ARTIFACTS / "web-viewer.png"))
    page.locator("#more-like-this").click()
    page.wait_for_function(f"document.querySelector('#status').textContent.includes('与 {target} 相似')")
    similar = httpx.get(f"{live_server}/img/good/{target}/similar?top_k=30").json()
    assert first_card(page)[0] == similar["hits"][0]["image_id"] != target

    # A phone-width screen: no sideways scrolling, two thumbnails per row.
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    boxes = [page.locator(".card").nth(i).bounding_box() for i in range(3)]
    assert boxes[0]["y"] == boxes[1]["y"] < boxes[2]["y"]
    page.screenshot(path=str(ARTIFACTS / "web-phone.png"), full_page=True)


def test_page_shows_the_job_and_the_truncation_notice(live_server: str, page) -> None:  # type: ignore[no-untyped-def]
    page.goto(live_server + "/")
    page.wait_for_function("document.querySelector('#jobs li progress') !== null")
    assert "批量导入 · 已完成 · 60/60 张，新增 60" in page.locator("#jobs li").first.inner_text()
    page.locator("#query").fill("一只红色的圆形在蓝色背景上" * 8)
    page.wait_for_function("!document.querySelector('#notice').hidden")
    assert "52 个 token" in page.locator("#notice").inner_text()


def test_thumbnails_are_cached(live_server: str) -> None:
    hit = httpx.post(f"{live_server}/img/search", json={"collection": "good", "text": QUERY}).json()["hits"][0]
    url = f"{live_server}/img/good/{hit['image_id']}/thumb?size=128"
    first = httpx.get(url)
    assert first.status_code == 200 and first.headers["content-type"] == "image/jpeg"
    assert "max-age" in first.headers["cache-control"] and first.headers["etag"]
    again = httpx.get(url, headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    original = httpx.get(hit["url"])
    assert len(first.content) < len(original.content)
    assert httpx.get(hit["url"], headers={"If-None-Match": original.headers["etag"]}).status_code == 304
    assert httpx.get(f"{live_server}/img/good/{hit['image_id']}/thumb?size=5000").status_code == 422


def test_page_tags_filters_pages_and_combined_queries(live_server: str, page, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Tag chips filter the search inside the vector search; 'load more' fetches the next page; typing while an
    image is chosen makes one combined query, weighted by the slider; the random-weights banner is shown."""
    ARTIFACTS.mkdir(exist_ok=True)
    for seed in range(0, PHOTOS, 2):
        assert httpx.put(f"{live_server}/img/good/photo{seed}/tags", json={"tags": ["海边"]}).status_code == 200
    page.goto(live_server + "/")
    page.wait_for_function("document.querySelector('#tag-chips .chip') !== null")
    assert not page.locator("#random-banner").is_hidden() and "随机权重" in page.locator("#random-banner").inner_text()

    page.locator("#query").fill(QUERY)
    page.wait_for_function("document.querySelectorAll('.card').length === 30")
    page.locator("#load-more").click()
    page.wait_for_function("document.querySelectorAll('.card').length === 60")
    second = httpx.post(
        f"{live_server}/img/search", json={"collection": "good", "text": QUERY, "top_k": 30, "offset": 30}
    ).json()["hits"]
    assert page.locator('.card[data-rank="31"]').get_attribute("data-image-id") == second[0]["image_id"]

    page.locator('.chip[data-tag="海边"]').click()
    page.wait_for_function("document.querySelectorAll('.card').length === 3")
    shown = [page.locator(".card").nth(i).get_attribute("data-image-id") for i in range(3)]
    expected = httpx.post(
        f"{live_server}/img/search",
        json={"collection": "good", "text": QUERY, "top_k": 30, "filters": {"tags_any": ["海边"]}},
    ).json()["hits"]
    assert shown == [hit["image_id"] for hit in expected] and set(shown) == {"photo0", "photo2", "photo4"}
    assert all("海边" in page.locator(".card .tags").nth(i).inner_text() for i in range(3))
    page.screenshot(path=str(ARTIFACTS / "web-tag-filter.png"), full_page=True)
    page.locator('.chip[data-tag="海边"]').click()  # off again

    query_image = tmp_path / "query.jpg"
    query_image.write_bytes(jpeg(3))
    page.locator("#file").set_input_files(str(query_image))
    page.wait_for_function("document.querySelector('#status').textContent.includes('最相似')")
    page.locator("#mix").evaluate("slider => { slider.value = 80; slider.dispatchEvent(new Event('change')); }")
    page.wait_for_function("document.querySelector('#status').textContent.includes('图片权重 0.80')")
    combined = httpx.post(
        f"{live_server}/img/search/combined",
        data={"collection": "good", "text": QUERY, "text_weight": "0.2", "image_weight": "0.8", "top_k": "30"},
        files=[("file", ("query.jpg", jpeg(3), "image/jpeg"))],
    ).json()
    assert combined["query"]["combined"] is True
    assert first_card(page)[0] == combined["hits"][0]["image_id"]
    page.screenshot(path=str(ARTIFACTS / "web-combined.png"), full_page=True)


def test_page_labels_uploads_and_duplicates(live_server: str, page, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Labels for the image in the viewer, adding photos from the page (a result per file), and the duplicates
    view deleting the chosen extra."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.goto(live_server + "/")
    page.wait_for_function("document.querySelector('#collection').options.length > 0")
    new, again = tmp_path / "new.jpg", tmp_path / "again.jpg"
    new.write_bytes(encode(picture(3), "JPEG", quality=97))  # a near copy of photo3: a duplicate group below
    again.write_bytes(jpeg(1))  # the same bytes as photo1: stored once
    page.locator("#add-files").set_input_files([str(new), str(again)])
    page.wait_for_function("document.querySelectorAll('#upload-results li').length === 2")
    results = page.locator("#upload-results").inner_text()
    assert "new.jpg：已添加" in results and "again.jpg：已存在" in results
    page.wait_for_function(f"document.querySelector('#overview').textContent.includes('{60 + PHOTOS + 1} 张')")

    page.locator("#query").fill(QUERY)
    page.wait_for_function("document.querySelectorAll('.card').length > 0")
    page.locator('.card[data-rank="1"]').click()
    page.wait_for_function("document.querySelector('#viewer').open")
    page.locator("#classify").click()
    page.wait_for_function("document.querySelectorAll('#label-results li[data-label]').length === 4")
    image_id = page.locator('.card[data-rank="1"]').get_attribute("data-image-id")
    ranked = httpx.post(
        f"{live_server}/img/classify",
        data={"collection": "good", "image_id": image_id, "labels": "杰尼龟\n妙蛙种子\n小火龙\n皮卡丘"},
    ).json()["labels"]
    assert page.locator("#label-results li").first.get_attribute("data-label") == ranked[0]["label"]
    page.screenshot(path=str(ARTIFACTS / "web-labels.png"))
    page.locator("#close-viewer").click()

    stored = httpx.post(
        f"{live_server}/img/search/image",
        data={"collection": "good", "top_k": 1},
        files=[("files", ("n.jpg", new.read_bytes(), "image/jpeg"))],
    ).json()["results"][0]["hits"][0]["image_id"]  # the uploaded copy's id (from its content)
    page.locator("#find-duplicates").click()
    page.wait_for_function(f"document.querySelector('#duplicate-groups input[data-image-id=\"{stored}\"]') !== null")
    page.screenshot(path=str(ARTIFACTS / "web-duplicates.png"), full_page=True)
    page.evaluate(
        "id => document.querySelectorAll('#duplicate-groups input')"
        ".forEach(box => { box.checked = box.dataset.imageId === id; })",
        stored,
    )
    page.locator("#delete-duplicates").click()
    page.wait_for_function("document.querySelector('#duplicates-status').textContent.includes('已删除 1 张')")
    assert httpx.get(f"{live_server}/img/good/{stored}").status_code == 404
    assert httpx.get(f"{live_server}/img/good/photo3").status_code == 200


def test_page_tags_a_collection_and_filters_by_the_new_tag(live_server: str, page) -> None:  # type: ignore[no-untyped-def]
    """A newcomer's path: a Chinese label set → a tag job from the page → tag chips → a search filtered by one."""
    page.goto(live_server + "/")
    page.wait_for_function("document.querySelector('#collection').options.length > 0")
    page.locator(".tagger summary").click()
    page.locator("#tag-labels").fill("海边\n山\n城市")
    page.locator("#run-tags").click()
    page.wait_for_function("document.querySelector('#tag-status').textContent.startsWith('完成')", timeout=120_000)
    page.wait_for_function("document.querySelectorAll('#tag-chips .chip').length >= 2")
    counts = httpx.get(f"{live_server}/collections/good/tags").json()["tags"]
    assert sum(c["count"] for c in counts) == 2 * (60 + PHOTOS)  # two labels per image
    tag = counts[-1]["tag"]  # the least used: the filter visibly narrows the grid
    page.locator("#query").fill(QUERY)
    page.wait_for_function("document.querySelectorAll('.card').length === 30")
    page.locator(f'.chip[data-tag="{tag}"]').click()
    expected = httpx.post(
        f"{live_server}/img/search",
        json={"collection": "good", "text": QUERY, "top_k": 30, "filters": {"tags_any": [tag]}},
    ).json()["hits"]
    page.wait_for_function(  # the grid shows exactly the filtered top-k, in order
        "ids => JSON.stringify([...document.querySelectorAll('.card')].map(c => c.dataset.imageId))"
        " === JSON.stringify(ids)",
        arg=[hit["image_id"] for hit in expected],
    )
    assert page.locator(".chip.on").get_attribute("data-tag") == tag
    page.screenshot(path=str(ARTIFACTS / "web-tag-job.png"), full_page=True)


def test_page_finds_words_shows_snippets_and_saves_a_description(live_server: str, page) -> None:  # type: ignore[no-untyped-def]
    expected = httpx.post(
        f"{live_server}/img/search", json={"collection": "good", "text": "三角形", "top_k": 30, "mode": "keyword"}
    ).json()
    assert expected["hits"]
    page.goto(live_server + "/")
    page.wait_for_function("document.querySelector('#collection').options.length > 0")
    assert page.locator("#mode").input_value() == "hybrid"
    page.locator("#mode").select_option("keyword")
    page.locator("#query").fill("三角形")
    page.wait_for_function("document.querySelector('#status').textContent.includes('三角形')")
    assert page.locator(".card").count() == len(expected["hits"])
    assert first_card(page)[0] == expected["hits"][0]["image_id"]
    assert page.locator(".card .snippet mark").first.inner_text() == "三角形"
    page.screenshot(path=str(ARTIFACTS / "web-keyword.png"), full_page=True)

    page.locator('.card[data-rank="1"]').click()
    page.wait_for_function("document.querySelector('#viewer').open")
    page.wait_for_function("document.querySelector('#viewer-words').textContent.includes('三角形')")
    page.locator("#description").fill("奶奶的生日蛋糕")
    page.locator("#save-description").click()
    page.wait_for_function("document.querySelector('#description-status').textContent === '已保存'")
    page.locator("#close-viewer").click()
    page.locator("#mode").select_option("hybrid")
    page.locator("#query").fill("生日蛋糕")
    page.wait_for_function("document.querySelector('#status').textContent.includes('生日蛋糕')")
    assert first_card(page)[0] == expected["hits"][0]["image_id"]
    assert page.locator('.card[data-rank="1"] .snippet mark').inner_text() == "生日蛋糕"


def test_page_finds_a_receipt_by_its_words_and_draws_the_ocr_boxes(live_server: str, page) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(21)
    lines = lines_for("receipt", rng)
    files = [("files", ("receipt.jpg", jpeg_of(draw(lines, rng)), "image/jpeg"))]
    assert httpx.post(f"{live_server}/img/upload", data={"collection": "receipts"}, files=files).status_code == 200
    job_id = httpx.post(f"{live_server}/collections/receipts/ocr").json()["job_id"]
    for _ in range(600):
        job = httpx.get(f"{live_server}/jobs/{job_id}").json()
        if job["state"] != "running" and job["state"] != "queued":
            break
        time.sleep(0.2)
    assert job["state"] == "succeeded", job
    page.goto(live_server + "/")
    page.wait_for_function("[...document.querySelector('#collection').options].some(o => o.value === 'receipts')")
    page.locator("#collection").select_option("receipts")
    page.locator("#query").fill("发票")
    page.wait_for_function("document.querySelector('#status').textContent.includes('发票')")
    assert page.locator('.card[data-rank="1"] .snippet').get_attribute("data-field") == "ocr"
    page.locator('.card[data-rank="1"]').click()
    page.wait_for_function("document.querySelector('#viewer-img').naturalWidth > 0")
    page.wait_for_function("!document.querySelector('#boxes-toggle').hidden")
    page.locator("#show-boxes").check()
    boxes = page.locator("#ocr-boxes polygon")
    assert boxes.count() >= 3
    picture = page.locator("#viewer-img").bounding_box()
    first = boxes.first.bounding_box()
    assert picture["x"] <= first["x"] and first["x"] + first["width"] <= picture["x"] + picture["width"] + 1
    assert picture["y"] <= first["y"] < picture["y"] + picture["height"] / 2  # the shop's name, near the top
    page.screenshot(path=str(ARTIFACTS / "web-ocr-boxes.png"))


def test_page_offers_only_what_the_key_may_do(live_server: str, page) -> None:  # type: ignore[no-untyped-def]
    """A read-only key of one collection: the page says so, still searches, and offers no upload, tagging,
    duplicate deletion or description; the delete it cannot offer is refused by the API and in the audit trail;
    once revoked, the page says that too."""
    with httpx.Client(base_url=live_server) as client:
        admin = {"X-API-Key": client.post("/keys", json={"name": "owner", "scopes": ["admin"]}).json()["key"]}
        family = client.post(
            "/keys", json={"name": "family", "scopes": ["read"], "collections": ["good"]}, headers=admin
        )
        key = family.json()["key"]
    page.goto(live_server + "/")
    page.wait_for_function("document.querySelector('#key-rights').textContent.includes('只能搜索')")
    assert not page.locator("label.add").is_visible()  # keys exist now: without one, the page only searches
    page.locator(".key summary").click()
    page.locator("#api-key").fill(key)
    page.locator("#api-key").dispatch_event("change")
    page.wait_for_function("document.querySelector('#key-rights').textContent.includes('family')")
    assert "只读" in page.locator("#key-rights").inner_text() and "good" in page.locator("#key-rights").inner_text()
    for hidden in ("label.add", "#find-duplicates", "details.tagger", "#delete-duplicates"):
        assert not page.locator(hidden).is_visible(), hidden
    assert page.evaluate("document.querySelector('#description').readOnly")
    page.locator("#query").fill(QUERY)
    page.wait_for_selector('.card[data-rank="1"]')

    with httpx.Client(base_url=live_server, headers={"X-API-Key": key}) as client:
        image_id = page.locator('.card[data-rank="1"]').get_attribute("data-image-id")
        refused = client.delete(f"/img/good/{image_id}")
        assert refused.status_code == 403 and "needs write" in refused.json()["error"]["message"]
    with httpx.Client(base_url=live_server, headers=admin) as client:
        trail = client.get("/audit", params={"key": "family", "outcome": "refused"}).json()["entries"]
        assert [(e["method"], e["path"], e["status"]) for e in trail] == [("DELETE", f"/img/good/{image_id}", 403)]
        assert client.delete("/keys/family").status_code == 200
    page.reload()
    page.wait_for_function("document.querySelector('#key-rights').textContent.includes('revoked')")
