// People on the page: the collection's persons as a strip of faces (click one to see only the photos they are
// in, type a name, tick two to merge them), and in the viewer each face's box with its person, which a person
// with the write scope corrects. Uses app.js's helpers ($, api, collection, setImage, rerun, current).
"use strict";

const chosenPeople = new Set(); // persons whose photos the search keeps (app.js's filters())
const mergeChoice = new Set();
let people = [];

function peopleUrl(path = "") {
  return `/collections/${encodeURIComponent(collection())}${path}`;
}

function canWrite() { return document.body.classList.contains("can-write"); }

async function loadPeople() {
  chosenPeople.clear();
  mergeChoice.clear();
  $("merge-people").hidden = true;
  if (!collection()) { $("people").hidden = true; return; }
  try {
    const body = await api(peopleUrl("/people"));
    people = body.people;
    $("people-strip").replaceChildren(...people.map(personCard));
    $("people-status").textContent = body.faces_found
      ? `${body.faces_read} 张照片 · ${body.faces_found} 张人脸 · ${people.length} 位人物` : "";
    $("people").hidden = !people.length;
  } catch (_) { $("people").hidden = true; }
}

function personCard(person) {
  const card = Object.assign(document.createElement("figure"), { className: "person" });
  card.dataset.person = person.id;
  const face = Object.assign(document.createElement("img"), { alt: person.name || "未命名", title: "只看此人的照片" });
  if (person.cover_url) setImage(face, person.cover_url);
  face.addEventListener("click", () => {
    if (chosenPeople.has(person.id)) chosenPeople.delete(person.id); else chosenPeople.add(person.id);
    card.classList.toggle("on", chosenPeople.has(person.id));
    rerun();
  });
  const name = Object.assign(document.createElement("input"), {
    className: "person-name", value: person.name || "", placeholder: "命名", readOnly: !canWrite(),
  });
  name.setAttribute("aria-label", `人物 ${person.id} 的名字`);
  name.addEventListener("change", () => renamePerson(person, name.value.trim()));
  const count = Object.assign(document.createElement("span"), { className: "person-count", textContent: `${person.faces}` });
  const pick = Object.assign(document.createElement("input"), { type: "checkbox", title: "选择以合并" });
  pick.dataset.needs = "write";
  pick.setAttribute("aria-label", `选择人物 ${person.name || person.id} 以合并`);
  pick.addEventListener("change", () => {
    if (pick.checked) mergeChoice.add(person.id); else mergeChoice.delete(person.id);
    $("merge-people").hidden = mergeChoice.size < 2;
  });
  const caption = document.createElement("figcaption");
  caption.append(name, count, pick);
  card.append(face, caption);
  return card;
}

async function renamePerson(person, name) {
  try {
    const saved = await api(peopleUrl(`/people/${person.id}`), {
      method: "PATCH",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ name }),
    });
    person.name = saved.name;
    $("people-status").textContent = saved.name ? `已命名：${saved.name}` : "已清除名字";
  } catch (error) { $("people-status").textContent = `命名失败：${error.message}`; }
}

async function mergePeople() {
  const ids = [...mergeChoice];
  // The named one keeps its id (and name): merge into it.
  ids.sort((a, b) => Number(!people.find((p) => p.id === a)?.name) - Number(!people.find((p) => p.id === b)?.name));
  try {
    const merged = await api(peopleUrl("/people/merge"), {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ ids }),
    });
    await loadPeople();
    $("people-status").textContent = `已合并为 ${merged.name || `人物 ${merged.id}`}（${merged.faces} 张人脸）`;
  } catch (error) { $("people-status").textContent = `合并失败：${error.message}`; }
}

// The viewer: each face's box over the photo, and a list to correct who it is.
async function loadFaces(hit) {
  const svg = $("face-boxes");
  const list = $("face-list");
  svg.replaceChildren();
  list.replaceChildren();
  list.hidden = true;
  svg.toggleAttribute("hidden", true);
  if (hit.kind === "video") return;
  let found;
  try {
    found = await api(`/img/${encodeURIComponent(collection())}/${encodeURIComponent(hit.image_id)}/faces`);
  } catch (_) { return; }
  if (current !== hit || !found.length) return;
  await pictureReady($("viewer-img"));
  if (current !== hit) return;
  svg.setAttribute("viewBox", originalBox(hit));
  const size = Math.max(14, Math.round(Math.max(hit.width, hit.height) / 45)); // labels in the original's pixels
  svg.replaceChildren(...found.map((face) => faceBox(face, size)));
  svg.toggleAttribute("hidden", false);
  list.replaceChildren(...found.map((face) => faceRow(hit, face)));
  list.hidden = false;
}

function faceBox(face, fontSize) {
  const ns = "http://www.w3.org/2000/svg";
  const group = document.createElementNS(ns, "g");
  const rect = document.createElementNS(ns, "rect");
  for (const [key, value] of Object.entries({ x: face.box.x, y: face.box.y, width: face.box.width, height: face.box.height })) {
    rect.setAttribute(key, value);
  }
  rect.setAttribute("class", face.person ? "face-box" : "face-box waiting");
  const label = document.createElementNS(ns, "text");
  label.setAttribute("x", face.box.x);
  label.setAttribute("y", face.box.y + face.box.height);
  label.setAttribute("class", "face-label");
  label.setAttribute("font-size", fontSize);
  label.textContent = face.person_name || (face.person ? `人物 ${face.person}` : "未归类");
  group.append(rect, label);
  return group;
}

function faceRow(hit, face) {
  const row = document.createElement("li");
  const crop = Object.assign(document.createElement("img"), { alt: "人脸", className: "face-crop" });
  setImage(crop, face.crop_url);
  const who = document.createElement("select");
  who.setAttribute("aria-label", "这是谁");
  who.disabled = !canWrite();
  const options = [new Option(face.person ? (face.person_name || `人物 ${face.person}`) : "未归类", "")];
  for (const person of people) {
    if (person.id !== face.person) options.push(new Option(`改为：${person.name || `人物 ${person.id}`}`, String(person.id)));
  }
  options.push(new Option("改为：新的人物", "new"));
  who.replaceChildren(...options);
  who.addEventListener("change", async () => {
    if (!who.value) return;
    const to = who.value === "new" ? null : Number(who.value);
    try {
      await api(peopleUrl("/faces/assign"), {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ face_ids: [face.id], to }),
      });
      await loadPeople();
      if (current === hit) loadFaces(hit);
    } catch (error) { $("people-status").textContent = `更正失败：${error.message}`; }
  });
  row.append(crop, who);
  return row;
}

$("merge-people").addEventListener("click", mergePeople);
