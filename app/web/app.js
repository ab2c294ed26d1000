// The search page: plain JS against the public API (no build step). Every call goes through api().
"use strict";

const $ = (id) => document.getElementById(id);
const TOP_K = 30;
const STATES = { queued: "排队中", running: "进行中", succeeded: "已完成", failed: "失败" };
const KINDS = {
  load: "批量导入", ingest: "文件夹导入", reconcile: "一致性修复", evaluate: "检索评测", tags: "自动标签",
  duplicates: "重复检测",
};
let collections = [];
let searchSeq = 0;
let current = null; // the hit shown in the viewer
let jobsWereActive = false;
let queryImage = null; // the dropped image: typing text then makes a combined query
let combining = false; // text typed (or the slider moved) since the image was chosen
let lastSearch = null; // {run(offset) → body, label}: "load more" asks it for the next page
let shown = 0;
const chosenTags = new Set();

function apiKey() { return localStorage.getItem("imgsearch-key") || ""; }
function authHeaders() { return apiKey() ? { "X-API-Key": apiKey() } : {}; }

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { ...authHeaders(), ...(options.headers || {}) } });
  const body = response.headers.get("content-type")?.includes("json") ? await response.json() : null;
  if (!response.ok) {
    const message = body?.error?.message || `HTTP ${response.status}`;
    throw new Error(response.status === 401 || response.status === 403 ? `需要有效的 API 密钥：${message}` : message);
  }
  return body;
}

function setStatus(text) { $("status").textContent = text; }
function collection() { return $("collection").value; }

// With a key configured, images need the header too, so they are fetched; otherwise the browser loads
// (and caches) them directly.
async function setImage(img, url) {
  if (!apiKey()) { img.src = url; return; }
  try {
    const response = await fetch(url, { headers: authHeaders() });
    if (response.ok) img.src = URL.createObjectURL(await response.blob());
  } catch (_) { /* the card keeps its grey placeholder */ }
}

function thumbUrl(hit) {
  // A video's moment shows its best sample (stored: no decoding).
  const shown = hit.kind === "video" ? hit.video.frame_image_id : hit.image_id;
  return `/img/${encodeURIComponent(collection())}/${encodeURIComponent(shown)}/thumb?size=320`;
}

// 0:05.0 — a moment's times, to the tenth of a second.
function clock(milliseconds) {
  const seconds = Math.max(0, Math.round(milliseconds / 100) / 10);
  const minutes = Math.floor(seconds / 60);
  return `${minutes}:${(seconds - minutes * 60).toFixed(1).padStart(4, "0")}`;
}

// A moment plays where it is: the original streams with Range requests from its start (media fragment). The
// moment's clip (re-encoded H.264, small) plays instead where the original cannot: with a key (a <video> cannot
// send the header, so the clip is fetched) or a codec the browser lacks (HEVC from an iPhone on most desktops).
function playMoment(video, hit, startMs, endMs, loop = false, asClip = Boolean(apiKey())) {
  const base = asClip ? 0 : startMs; // a clip starts at 0
  const stopAt = base + (endMs - startMs);
  video.ontimeupdate = () => {
    if (video.currentTime * 1000 < stopAt) return;
    if (loop) video.currentTime = base / 1000; else video.pause();
  };
  video.onerror = asClip ? null : () => playMoment(video, hit, startMs, endMs, loop, true);
  if (asClip) {
    const clip = `${hit.video.clip_url.split("?")[0]}?start_ms=${startMs}&end_ms=${endMs}`;
    const ready = apiKey() ? setImage(video, clip) : Promise.resolve((video.src = clip));
    ready.then(() => video.play().catch(() => {}));
  } else {
    video.src = `${hit.url}#t=${startMs / 1000}`;
    video.play().catch(() => {});
  }
}

function previewMoment(card, hit) {
  if (card.querySelector("video")) return;
  const video = document.createElement("video");
  video.className = "preview";
  video.muted = true;
  video.playsInline = true;
  card.append(video);
  playMoment(video, hit, hit.video.start_ms, hit.video.end_ms, true);
}

function stopPreview(card) {
  const video = card.querySelector("video.preview");
  if (video) { video.onerror = null; video.pause(); video.removeAttribute("src"); video.load(); video.remove(); }
}

// What the key may do decides what the page offers: a read-only key sees no upload, tagging or delete.
async function loadRights() {
  const note = $("key-rights");
  let me;
  try { me = await api("/keys/me"); } catch (error) {
    document.body.classList.remove("can-write", "can-admin");
    note.textContent = error.message;
    return;
  }
  document.body.classList.toggle("can-write", me.scopes.includes("write"));
  document.body.classList.toggle("can-admin", me.scopes.includes("admin"));
  $("description").readOnly = !me.scopes.includes("write");
  const scope = { read: "只读", write: "读写", admin: "管理" }[me.scopes[me.scopes.length - 1]] || "无权限";
  const where = me.collections ? ` · 图库 ${me.collections.join("、")}` : "";
  note.textContent = !me.keys_required ? "服务未启用密钥：可读可写"
    : me.name ? `密钥 ${me.name}：${scope}${where}` : `未填写密钥：${me.scopes.length ? "只能搜索" : "需要密钥"}`;
}

async function loadCollections() {
  try {
    collections = await api("/collections");
  } catch (error) { setStatus(`无法读取图库：${error.message}`); return; }
  const select = $("collection");
  select.replaceChildren(...collections.map((c) => new Option(`${c.name}（${c.count} 张）`, c.name)));
  const saved = localStorage.getItem("imgsearch-collection");
  if (collections.some((c) => c.name === saved)) select.value = saved;
  if (!collections.length) setStatus("还没有图库：先用 /img/upload、/img/ingest 或 /img/load 导入图片（见 /docs）。");
  renderOverview();
}

function renderOverview() {
  const c = collections.find((item) => item.name === collection());
  $("overview").textContent = c
    ? `图库 ${c.name} · ${c.count} 张图片 · 模型 ${c.model}（${c.dim} 维）`
    : "";
}

function renderHits(hits, label) {
  $("grid").replaceChildren();
  appendHits(hits, 0);
  setStatus(hits.length ? label : "没有找到图片。");
}

function appendHits(hits, start) {
  $("grid").append(...hits.map((hit, offset) => {
    const index = start + offset;
    const card = document.createElement("button");
    card.type = "button";
    card.className = "card";
    card.dataset.imageId = hit.image_id;
    card.dataset.rank = String(index + 1);
    const img = document.createElement("img");
    img.loading = "lazy";
    img.alt = hit.image_id;
    setImage(img, thumbUrl(hit));
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = scoreText(hit.score);
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = hit.image_id;
    const tags = document.createElement("span");
    tags.className = "tags";
    tags.textContent = (hit.tags || []).join(" · ");
    card.append(img, score, name, tags, ...snippetNodes(hit));
    if (hit.kind === "video") {
      card.classList.add("video");
      const moment = document.createElement("span");
      moment.className = "moment";
      moment.textContent = `▶ ${clock(hit.video.start_ms)}–${clock(hit.video.end_ms)}`;
      card.append(moment);
      card.addEventListener("mouseenter", () => previewMoment(card, hit));
      card.addEventListener("mouseleave", () => stopPreview(card));
    }
    card.addEventListener("click", () => { stopPreview(card); openViewer(hit); });
    return card;
  }));
}

function scoreText(score) {
  return typeof score === "number" ? score.toFixed(3) : "—";
}

// Why a keyword or hybrid hit matched: the first snippet, its matched words in <mark> (built as nodes: the text
// is the user's, never HTML).
function snippetNodes(hit) {
  const snippet = hit.match && hit.match.snippets && hit.match.snippets[0];
  if (!snippet) return [];
  const line = document.createElement("span");
  line.className = "snippet";
  line.dataset.field = snippet.field;
  let at = 0;
  for (const [start, end] of snippet.highlights) {
    line.append(snippet.text.slice(at, start));
    line.append(Object.assign(document.createElement("mark"), { textContent: snippet.text.slice(start, end) }));
    at = end;
  }
  line.append(snippet.text.slice(at));
  return [line];
}

function ms(timings) {
  const total = Object.values(timings || {}).reduce((a, b) => a + b, 0);
  return total ? ` · 用时 ${Math.round(total)} 毫秒` : "";
}

function filters() {
  const wanted = {};
  if (chosenTags.size) wanted.tags_any = [...chosenTags];
  if ($("filter-mime").value) wanted.mime = [$("filter-mime").value];
  if ($("filter-kind").value) wanted.kinds = [$("filter-kind").value];
  if (chosenPeople.size) wanted.people = [...chosenPeople]; // people.js: persons clicked in the strip
  const width = parseInt($("filter-width").value, 10);
  if (width > 0) wanted.min_width = width;
  // Capture dates (EXIF), whole days in the browser's time zone.
  if ($("filter-taken-from").value) wanted.taken_after = new Date(`${$("filter-taken-from").value}T00:00:00`).toISOString();
  if ($("filter-taken-to").value) wanted.taken_before = new Date(`${$("filter-taken-to").value}T23:59:59`).toISOString();
  return Object.keys(wanted).length ? wanted : null;
}

// Runs a search (page 0), shows it, and keeps it for "load more": run(offset) returns {hits, timings_ms, ...}.
async function runSearch(run, label) {
  const seq = ++searchSeq;
  $("notice").hidden = true;
  $("duplicates").hidden = true;
  setStatus("搜索中…");
  try {
    const body = await run(0);
    if (seq !== searchSeq) return; // a newer query is on its way
    lastSearch = { run, label };
    shown = body.hits.length;
    renderHits(body.hits, `${label(body.hits.length)}${ms(body.timings_ms)}`);
    $("load-more").hidden = body.hits.length < TOP_K;
    if (body.truncated) {
      $("notice").textContent = "查询文字超过 Chinese-CLIP 的 52 个 token 上限，只用了前面的部分进行搜索。";
      $("notice").hidden = false;
    }
  } catch (error) { if (seq === searchSeq) setStatus(`搜索失败：${error.message}`); }
}

async function loadMore() {
  if (!lastSearch) return;
  const seq = searchSeq;
  try {
    const body = await lastSearch.run(shown);
    if (seq !== searchSeq) return;
    appendHits(body.hits, shown);
    shown += body.hits.length;
    setStatus(`${lastSearch.label(shown)}`);
    $("load-more").hidden = body.hits.length < TOP_K;
  } catch (error) { setStatus(`加载失败：${error.message}`); $("load-more").hidden = true; }
}

function searchText(text) {
  if (queryImage) { combining = true; return searchCombined(); }
  if (!text.trim() || !collection()) return;
  const run = (offset) => api("/img/search", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ collection: collection(), text, top_k: TOP_K, offset, filters: filters(), mode: $("mode").value }),
  });
  return runSearch(run, (n) => `“${text}” 的前 ${n} 张结果`);
}

function imageForm(file, offset) {
  const form = new FormData();
  form.append("collection", collection());
  form.append("top_k", String(TOP_K));
  form.append("offset", String(offset));
  if (filters()) form.append("filters", JSON.stringify(filters()));
  return form;
}

function searchImage(file) {
  if (!file || !collection()) return;
  if (file !== queryImage) combining = false; // a new image: by itself until text is typed
  queryImage = file;
  $("mix-row").hidden = false;
  $("mix-image").textContent = `查询图片：${file.name}（输入文字即可组合查询）`;
  const run = async (offset) => {
    const form = imageForm(file, offset);
    form.append("files", file, file.name);
    const body = await api("/img/search/image", { method: "POST", body: form });
    return { ...body, hits: body.results[0].hits };
  };
  return runSearch(run, (n) => `与 ${file.name} 最相似的 ${n} 张`);
}

// Text typed while an image is chosen: one query, the slider sets how much each counts.
function searchCombined() {
  const text = $("query").value.trim();
  const file = queryImage;
  if (!file || !collection()) return;
  if (!text) return searchImage(file);
  const imageWeight = Number($("mix").value) / 100;
  const run = (offset) => {
    const form = imageForm(file, offset);
    form.append("file", file, file.name);
    form.append("text", text);
    form.append("text_weight", String(1 - imageWeight));
    form.append("image_weight", String(imageWeight));
    return api("/img/search/combined", { method: "POST", body: form });
  };
  return runSearch(run, (n) => `“${text}” + ${file.name}（图片权重 ${imageWeight.toFixed(2)}）的前 ${n} 张`);
}

function clearImage() {
  queryImage = null;
  combining = false;
  $("file").value = "";
  $("mix-row").hidden = true;
  if ($("query").value.trim()) searchText($("query").value);
}

// A capture time as the camera's clock showed it: UTC plus the photo's offset, or its local time as stored.
function takenText(hit) {
  const match = /^([+-])(\d\d):(\d\d)$/.exec(hit.taken_offset || "");
  const utc = new Date(`${hit.taken_at.replace(/Z$/, "")}Z`);
  const shift = match ? (match[1] === "-" ? -1 : 1) * (Number(match[2]) * 60 + Number(match[3])) : 0;
  return new Date(utc.getTime() + shift * 60000).toISOString().slice(0, 16).replace("T", " ");
}

function openViewer(hit) {
  current = hit;
  const img = $("viewer-img");
  img.removeAttribute("src");
  img.alt = hit.image_id;
  const isVideo = hit.kind === "video";
  img.hidden = isVideo;
  $("viewer-video").hidden = !isVideo;
  $("moment-controls").hidden = !isVideo;
  if (isVideo) {
    showMoment(hit, hit.video.start_ms, hit.video.end_ms);
  } else {
    // Most browsers cannot show HEIC (iPhone) originals: the viewer takes the server's largest JPEG of it instead.
    const url = `/img/${encodeURIComponent(collection())}/${encodeURIComponent(hit.image_id)}`;
    setImage(img, hit.mime === "image/heic" ? `${url}/thumb?size=1024` : hit.url);
  }
  const where = hit.paths && hit.paths.length ? ` · ${hit.paths[0]}` : "";
  const taken = hit.taken_at ? ` · 拍摄于 ${takenText(hit)}` : "";
  const camera = hit.camera ? ` · ${hit.camera}` : "";
  $("viewer-caption").textContent = `${hit.image_id} · 相似度 ${scoreText(hit.score)} · ${hit.width}×${hit.height}${taken}${camera}${where}`;
  $("label-results").replaceChildren();
  $("viewer-words").textContent = "";
  $("ocr-boxes").replaceChildren();
  $("boxes-toggle").hidden = true;
  $("description").value = "";
  $("description-status").textContent = "";
  $("viewer").showModal();
  loadWords(hit);
  loadFaces(hit); // people.js
}

// The viewer plays a moment from its start and stops at its end; a person widens or narrows it and downloads it.
function showMoment(hit, startMs, endMs) {
  const duration = hit.video.duration_ms || endMs;
  startMs = Math.max(0, Math.round(startMs));
  endMs = Math.min(duration, Math.max(startMs + 500, Math.round(endMs)));
  $("moment-start").value = (startMs / 1000).toFixed(1);
  $("moment-end").value = (endMs / 1000).toFixed(1);
  $("moment-range").textContent = `${clock(startMs)}–${clock(endMs)} / ${clock(duration)}`;
  const clip = `${hit.video.clip_url.split("?")[0]}?start_ms=${startMs}&end_ms=${endMs}&download=true`;
  $("moment-download").href = clip;
  $("moment-download").dataset.href = clip;
  playMoment($("viewer-video"), hit, startMs, endMs);
}

function momentInputs() {
  return [parseFloat($("moment-start").value) * 1000, parseFloat($("moment-end").value) * 1000];
}

function changeMoment(by) {
  if (!current || current.kind !== "video") return;
  const [start, end] = momentInputs();
  showMoment(current, start - by, end + by);
}

async function downloadMoment(event) {
  if (!apiKey()) return; // the link downloads by itself
  event.preventDefault();
  try {
    const response = await fetch(event.currentTarget.dataset.href, { headers: authHeaders() });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const link = document.createElement("a");
    link.href = URL.createObjectURL(await response.blob());
    link.download = `${current.image_id.slice(0, 16)}.mp4`;
    link.click();
  } catch (error) { setStatus(`下载失败：${error.message}`); }
}

async function loadWords(hit) {
  try {
    const words = await api(`/img/${encodeURIComponent(collection())}/${encodeURIComponent(hit.image_id)}/text`);
    if (current !== hit) return;
    const parts = [];
    if (words.caption) parts.push(`标题：${words.caption.replace(/\n/g, " / ")}`);
    if (words.ocr) parts.push(`图中文字：${words.ocr.replace(/\n/g, " / ")}`);
    $("viewer-words").textContent = parts.join("　");
    $("description").value = words.description || "";
    await pictureReady($("viewer-img"));
    if (current === hit) drawBoxes(hit, words.ocr_lines || []);
  } catch (error) { $("viewer-words").textContent = `读取文字失败：${error.message}`; }
}

// Boxes (OCR lines, faces) are in the original's (upright) pixels, so an overlay's viewBox is the original's size
// in the orientation the browser shows it.
// Resolves once the viewer's picture has its size (a box drawn before would take a portrait for a landscape).
function pictureReady(img) {
  if (img.complete && img.naturalWidth) return Promise.resolve();
  return new Promise((resolve) => {
    img.addEventListener("load", resolve, { once: true });
    img.addEventListener("error", resolve, { once: true });
  });
}

function originalBox(hit) {
  const img = $("viewer-img");
  const big = Math.max(hit.width, hit.height), small = Math.min(hit.width, hit.height);
  const landscape = !img.naturalWidth || img.naturalWidth >= img.naturalHeight;
  return `0 0 ${landscape ? big : small} ${landscape ? small : big}`;
}

function drawBoxes(hit, lines) {
  const svg = $("ocr-boxes");
  $("boxes-toggle").hidden = !lines.length;
  svg.setAttribute("viewBox", originalBox(hit));
  svg.replaceChildren(...lines.map((line) => {
    const shape = document.createElementNS("http://www.w3.org/2000/svg", "polygon");
    shape.setAttribute("points", line.box.map(([x, y]) => `${x},${y}`).join(" "));
    shape.setAttribute("class", "ocr-box");
    const title = document.createElementNS("http://www.w3.org/2000/svg", "title");
    title.textContent = line.text;
    shape.append(title);
    return shape;
  }));
  svg.toggleAttribute("hidden", !$("show-boxes").checked); // an <svg> has no .hidden property
}

async function saveDescription() {
  if (!current) return;
  const hit = current;
  $("description-status").textContent = "保存中…";
  try {
    await api(`/img/${encodeURIComponent(collection())}/${encodeURIComponent(hit.image_id)}/description`, {
      method: "PUT",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ description: $("description").value }),
    });
    if (current === hit) $("description-status").textContent = "已保存";
  } catch (error) { $("description-status").textContent = `保存失败：${error.message}`; }
}

async function classify() {
  if (!current) return;
  const form = new FormData();
  form.append("collection", collection());
  form.append("image_id", current.image_id);
  form.append("labels", $("labels").value);
  $("label-results").replaceChildren(Object.assign(document.createElement("li"), { textContent: "识别中…" }));
  try {
    const body = await api("/img/classify", { method: "POST", body: form });
    $("label-results").replaceChildren(...body.labels.slice(0, 10).map((row) => {
      const item = document.createElement("li");
      item.dataset.label = row.label;
      const bar = Object.assign(document.createElement("meter"), { min: 0, max: 1, value: row.probability });
      item.append(`${row.label} ${(row.probability * 100).toFixed(1)}%`, bar);
      return item;
    }));
  } catch (error) {
    $("label-results").replaceChildren(Object.assign(document.createElement("li"), { textContent: `识别失败：${error.message}` }));
  }
}

async function moreLikeThis() {
  if (!current) return;
  const hit = current;
  $("viewer").close();
  const seq = ++searchSeq;
  setStatus("查找相似图片…");
  try {
    // From a moment: its best sample (the scene), not the video's poster.
    const from = hit.kind === "video" ? hit.video.frame_image_id : hit.image_id;
    const path = `/img/${encodeURIComponent(collection())}/${encodeURIComponent(from)}/similar?top_k=${TOP_K}`;
    const body = await api(path);
    if (seq === searchSeq) renderHits(body.hits, `与 ${hit.image_id} 相似的 ${body.hits.length} 张${ms(body.timings_ms)}`);
  } catch (error) { if (seq === searchSeq) setStatus(`查找失败：${error.message}`); }
}

async function refreshJobs() {
  let active = false;
  try {
    const query = collection() ? `?limit=5&collection=${encodeURIComponent(collection())}` : "?limit=5";
    const jobs = await api(`/jobs${query}`);
    active = jobs.some((job) => job.state === "queued" || job.state === "running");
    $("jobs").replaceChildren(...jobs.map((job) => {
      const item = document.createElement("li");
      const bar = document.createElement("progress");
      bar.max = job.total || Math.max(job.done, 1);
      bar.value = job.state === "succeeded" ? bar.max : job.done;
      const rate = job.rate ? ` · ${Math.round(job.rate)} 张/秒` : "";
      const text = document.createElement("div");
      text.textContent = `${KINDS[job.kind] || job.kind} · ${STATES[job.state] || job.state} · ` +
        `${job.done}${job.total ? "/" + job.total : ""} 张，新增 ${job.loaded}，跳过 ${job.skipped}，失败 ${job.failed}${rate}`;
      item.append(text, bar);
      return item;
    }));
    if (!jobs.length) $("jobs").replaceChildren(Object.assign(document.createElement("li"), { textContent: "暂无任务" }));
  } catch (_) { /* jobs are a side panel: the search keeps working */ }
  if (jobsWereActive && !active) loadCollections(); // a job just ended: counts changed
  jobsWereActive = active;
  setTimeout(refreshJobs, active ? 1500 : 10000);
}

async function loadTags() {
  chosenTags.clear();
  if (!collection()) { $("tag-chips").replaceChildren(); return; }
  try {
    const body = await api(`/collections/${encodeURIComponent(collection())}/tags`);
    $("tag-chips").replaceChildren(...body.tags.slice(0, 30).map(({ tag, count }) => {
      const chip = Object.assign(document.createElement("button"), { type: "button", className: "chip" });
      chip.dataset.tag = tag;
      chip.textContent = `${tag} ${count}`;
      chip.addEventListener("click", () => {
        if (chosenTags.has(tag)) chosenTags.delete(tag); else chosenTags.add(tag);
        chip.classList.toggle("on", chosenTags.has(tag));
        rerun();
      });
      return chip;
    }));
  } catch (_) { $("tag-chips").replaceChildren(); }
}

function rerun() {
  if (queryImage) return combining ? searchCombined() : searchImage(queryImage);
  if ($("query").value.trim()) searchText($("query").value);
}

async function waitForJob(jobId, onProgress) {
  for (;;) {
    const job = await api(`/jobs/${jobId}`);
    onProgress(job);
    if (["succeeded", "failed", "cancelled"].includes(job.state)) return job;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

// A tag job from the page: the collection's images get their two most probable labels, then the chips update.
async function runTags() {
  if (!collection()) return;
  const labels = $("tag-labels").value.split("\n").map((line) => line.trim()).filter(Boolean);
  const status = (text) => { $("tag-status").textContent = text; };
  try {
    const accepted = await api(`/collections/${encodeURIComponent(collection())}/tags`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ labels, top_n: 2 }),
    });
    const job = await waitForJob(accepted.job_id, (j) => status(`打标签中… ${j.done}/${j.total || "?"}`));
    status(job.state === "succeeded" ? `完成：${job.message}` : `失败：${job.message}`);
    await loadTags();
  } catch (error) { status(`失败：${error.message}`); }
}

async function findDuplicates() {
  if (!collection()) return;
  const name = encodeURIComponent(collection());
  $("duplicates").hidden = false;
  $("duplicate-groups").replaceChildren();
  const status = (text) => { $("duplicates-status").textContent = text; };
  try {
    const accepted = await api(`/collections/${name}/duplicates`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: "{}",
    });
    const job = await waitForJob(accepted.job_id, (j) => status(`检测中… ${j.done}/${j.total || "?"}`));
    if (job.state !== "succeeded") { status(`检测失败：${job.message}`); return; }
    const report = await api(`/collections/${name}/duplicates`);
    status(`${report.groups.length} 组重复图片，共 ${report.extras} 张可删除（绿色框为建议保留）`);
    $("duplicate-groups").replaceChildren(...report.groups.map((group) => {
      const box = Object.assign(document.createElement("div"), { className: "group" });
      for (const member of [group.keeper, ...group.extras]) {
        const keeper = member === group.keeper;
        const figure = Object.assign(document.createElement("figure"), { className: keeper ? "keeper" : "" });
        const img = document.createElement("img");
        img.alt = member.image_id;
        setImage(img, `/img/${name}/${encodeURIComponent(member.image_id)}/thumb?size=256`);
        const check = Object.assign(document.createElement("input"), { type: "checkbox", checked: !keeper });
        check.dataset.imageId = member.image_id;
        const caption = document.createElement("figcaption");
        caption.append(check, ` ${member.width}×${member.height} · ${member.cosine.toFixed(3)}`);
        figure.append(img, caption);
        box.append(figure);
      }
      return box;
    }));
  } catch (error) { status(`检测失败：${error.message}`); }
}

async function deleteDuplicates() {
  const chosen = [...document.querySelectorAll("#duplicate-groups input:checked")].map((box) => box.dataset.imageId);
  if (!chosen.length) return;
  try {
    const body = await api(`/collections/${encodeURIComponent(collection())}/duplicates/delete`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ image_ids: chosen }),
    });
    $("duplicates-status").textContent = `已删除 ${body.deleted.length} 张`;
    $("duplicate-groups").replaceChildren();
    loadCollections();
  } catch (error) { $("duplicates-status").textContent = `删除失败：${error.message}`; }
}

async function addFiles(files) {
  if (!files.length || !collection()) return;
  const form = new FormData();
  form.append("collection", collection());
  for (const file of files) form.append("files", file, file.name);
  const list = $("upload-results");
  list.hidden = false;
  list.replaceChildren(Object.assign(document.createElement("li"), { textContent: `上传 ${files.length} 个文件…` }));
  const STATUS = { stored: "已添加", duplicate: "已存在", rejected: "未添加" };
  try {
    const body = await api("/img/upload", { method: "POST", body: form });
    list.replaceChildren(...body.results.map((result) => Object.assign(document.createElement("li"), {
      textContent: `${result.file}：${STATUS[result.status] || result.status}${result.reason ? "（" + result.reason + "）" : ""}`,
    })));
    loadCollections();
  } catch (error) {
    list.replaceChildren(Object.assign(document.createElement("li"), { textContent: `上传失败：${error.message}` }));
  }
}

async function checkWeights() {
  try {
    const health = await fetch("/healthz").then((response) => response.json());
    $("random-banner").hidden = health.model?.weights !== "random";
  } catch (_) { /* the banner stays hidden */ }
}

function debounce(fn, wait) {
  let timer;
  return (...args) => { clearTimeout(timer); timer = setTimeout(() => fn(...args), wait); };
}

function wire() {
  $("api-key").value = apiKey();
  $("api-key").addEventListener("change", (e) => { localStorage.setItem("imgsearch-key", e.target.value.trim()); loadRights(); loadCollections(); });
  $("collection").addEventListener("change", () => {
    localStorage.setItem("imgsearch-collection", collection());
    renderOverview();
    loadTags();
    loadPeople(); // people.js
    rerun();
  });
  $("query").addEventListener("input", debounce((e) => searchText(e.target.value), 300));
  $("file").addEventListener("change", (e) => searchImage(e.target.files[0]));
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); searchImage(e.dataTransfer.files[0]); });
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") $("file").click(); });
  $("more-like-this").addEventListener("click", moreLikeThis);
  $("classify").addEventListener("click", classify);
  $("load-more").addEventListener("click", loadMore);
  $("mix").addEventListener("change", () => { combining = true; searchCombined(); });
  $("clear-image").addEventListener("click", clearImage);
  $("filter-mime").addEventListener("change", rerun);
  $("filter-width").addEventListener("change", rerun);
  $("filter-taken-from").addEventListener("change", rerun);
  $("filter-taken-to").addEventListener("change", rerun);
  $("find-duplicates").addEventListener("click", findDuplicates);
  $("run-tags").addEventListener("click", runTags);
  $("delete-duplicates").addEventListener("click", deleteDuplicates);
  $("add-files").addEventListener("change", (e) => addFiles([...e.target.files]));
  $("close-viewer").addEventListener("click", () => $("viewer").close());
  $("viewer").addEventListener("close", () => $("viewer-video").pause());
  $("filter-kind").addEventListener("change", rerun);
  $("moment-wider").addEventListener("click", () => changeMoment(1000));
  $("moment-narrower").addEventListener("click", () => changeMoment(-1000));
  $("moment-play").addEventListener("click", () => { const [s, e] = momentInputs(); showMoment(current, s, e); });
  $("moment-download").addEventListener("click", downloadMoment);
  $("save-description").addEventListener("click", saveDescription);
  $("show-boxes").addEventListener("change", (e) => { $("ocr-boxes").toggleAttribute("hidden", !e.target.checked); });
  $("mode").addEventListener("change", rerun);
}

wire();
checkWeights();
loadRights();
loadCollections().then(() => { loadTags(); loadPeople(); refreshJobs(); });
