// The search page: plain JS against the public API (no build step). Every call goes through api().
"use strict";

const $ = (id) => document.getElementById(id);
const TOP_K = 30;
const STATES = { queued: "排队中", running: "进行中", succeeded: "已完成", failed: "失败" };
const KINDS = { load: "批量导入", ingest: "文件夹导入", reconcile: "一致性修复", evaluate: "检索评测" };
let collections = [];
let searchSeq = 0;
let current = null; // the hit shown in the viewer
let jobsWereActive = false;

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
  return `/img/${encodeURIComponent(collection())}/${encodeURIComponent(hit.image_id)}/thumb?size=320`;
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
  $("grid").replaceChildren(...hits.map((hit, index) => {
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
    score.textContent = hit.score.toFixed(3);
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = hit.image_id;
    card.append(img, score, name);
    card.addEventListener("click", () => openViewer(hit));
    return card;
  }));
  setStatus(hits.length ? label : "没有找到图片。");
}

function ms(timings) {
  const total = Object.values(timings || {}).reduce((a, b) => a + b, 0);
  return total ? ` · 用时 ${Math.round(total)} 毫秒` : "";
}

async function searchText(text) {
  const seq = ++searchSeq;
  $("notice").hidden = true;
  if (!text.trim() || !collection()) return;
  setStatus("搜索中…");
  try {
    const body = await api("/img/search", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ collection: collection(), text, top_k: TOP_K }),
    });
    if (seq !== searchSeq) return; // a newer query is on its way
    renderHits(body.hits, `“${text}” 的前 ${body.hits.length} 张结果${ms(body.timings_ms)}`);
    if (body.truncated) {
      $("notice").textContent = "查询文字超过 Chinese-CLIP 的 52 个 token 上限，只用了前面的部分进行搜索。";
      $("notice").hidden = false;
    }
  } catch (error) { if (seq === searchSeq) setStatus(`搜索失败：${error.message}`); }
}

async function searchImage(file) {
  if (!file || !collection()) return;
  const seq = ++searchSeq;
  $("notice").hidden = true;
  setStatus(`以图搜图：${file.name}…`);
  const form = new FormData();
  form.append("collection", collection());
  form.append("top_k", String(TOP_K));
  form.append("files", file, file.name);
  try {
    const body = await api("/img/search/image", { method: "POST", body: form });
    if (seq !== searchSeq) return;
    renderHits(body.results[0].hits, `与 ${file.name} 最相似的 ${body.results[0].hits.length} 张${ms(body.timings_ms)}`);
  } catch (error) { if (seq === searchSeq) setStatus(`以图搜图失败：${error.message}`); }
}

function openViewer(hit) {
  current = hit;
  const img = $("viewer-img");
  img.removeAttribute("src");
  img.alt = hit.image_id;
  setImage(img, hit.url);
  $("viewer-caption").textContent = `${hit.image_id} · 相似度 ${hit.score.toFixed(3)} · ${hit.width}×${hit.height}`;
  $("viewer").showModal();
}

async function moreLikeThis() {
  if (!current) return;
  const hit = current;
  $("viewer").close();
  const seq = ++searchSeq;
  setStatus("查找相似图片…");
  try {
    const path = `/img/${encodeURIComponent(collection())}/${encodeURIComponent(hit.image_id)}/similar?top_k=${TOP_K}`;
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

function debounce(fn, wait) {
  let timer;
  return (...args) => { clearTimeout(timer); timer = setTimeout(() => fn(...args), wait); };
}

function wire() {
  $("api-key").value = apiKey();
  $("api-key").addEventListener("change", (e) => { localStorage.setItem("imgsearch-key", e.target.value.trim()); loadCollections(); });
  $("collection").addEventListener("change", () => {
    localStorage.setItem("imgsearch-collection", collection());
    renderOverview();
    if ($("query").value.trim()) searchText($("query").value);
  });
  $("query").addEventListener("input", debounce((e) => searchText(e.target.value), 300));
  $("file").addEventListener("change", (e) => searchImage(e.target.files[0]));
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); searchImage(e.dataTransfer.files[0]); });
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") $("file").click(); });
  $("more-like-this").addEventListener("click", moreLikeThis);
  $("close-viewer").addEventListener("click", () => $("viewer").close());
}

wire();
loadCollections().then(refreshJobs);
