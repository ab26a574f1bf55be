// tfgcrf studio: the page. The edit state (start sample, points, links) lives here, with its
// undo/redo history; after every change the whole state goes to the server, which re-solves
// the tab's edit session and answers with the picture and the measured time.
"use strict";

const TAB = (crypto.randomUUID ? crypto.randomUUID() : String(Math.random()).slice(2) + Date.now())
  .replace(/[^A-Za-z0-9_-]/g, "");
const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const MARK_RADIUS = 7;  // screen pixels

let photo = null;        // {name, width, height, gray, samples: [{index, weight, thumb, image}]}
let state = emptyState();
let acknowledged = emptyState();  // the last state the server answered
let history = [];
let future = [];
let nextId = 1;
let tool = "point";
let selected = null;     // id of the selected point
let version = 0;
// Photos opened so far: an answer about an older photo (an edit or attention map sent before
// another photo was opened) is dropped, and its request aborted.
let generation = 0;
let sending = null;      // the send loop running: {generation, controller}
let opening = 0;         // opens in flight: the page stays busy until the photo is shown
let lastStatus = "";     // the status of the last state the server answered
let maxUploadMiB = null;  // the server's upload limit (from /api/config)
const attentionCache = new Map();
const roundTrips = [];   // ms from sending a state to having its picture, per answer

function emptyState() { return {from_sample: null, points: [], links: []}; }
function clone(value) { return JSON.parse(JSON.stringify(value)); }
function same(a, b) { return JSON.stringify(a) === JSON.stringify(b); }

// ------------------------------------------------------------------------------ messages

function showError(message) {
  $("error-text").textContent = message;
  $("error").hidden = false;
}
function clearError() { $("error").hidden = true; }
$("error-close").addEventListener("click", clearError);

function setBusy(busy, text) {
  document.body.dataset.busy = busy || opening > 0 || sending !== null ? "1" : "0";
  if (text) $("status").textContent = text;
}

// The status of a state the server answered (restored when a later change is refused); while
// another photo is being opened the status keeps saying so.
function setStatus(text) {
  lastStatus = text;
  if (opening === 0) $("status").textContent = text;
}

async function api(path, options) {
  const sep = path.includes("?") ? "&" : "?";
  let response;
  try {
    response = await fetch(path + sep + "tab=" + TAB, options);
  } catch (err) {
    throw new Error("the studio server does not answer (was it stopped?)");
  }
  const type = response.headers.get("Content-Type") || "";
  if (!response.ok) {
    if (type.startsWith("application/json")) throw new Error((await response.json()).error);
    throw new Error(`HTTP ${response.status} ${response.statusText}`);
  }
  return type.startsWith("application/json") ? response.json() : response.blob();
}

// ------------------------------------------------------------------------------ opening

async function openPhoto(body, name) {
  clearError();
  // A file above the server's limit is refused here, before its bytes are sent.
  if (body !== null && maxUploadMiB !== null && body.size > maxUploadMiB * 1048576) {
    showError(`${name}: upload too large (${(body.size / 1048576).toFixed(1)} MiB): ` +
              `the limit is ${maxUploadMiB} MiB`);
    return;
  }
  opening += 1;
  setBusy(true, `opening ${name} and drawing its samples ...`);
  const started = performance.now();
  const openedBefore = generation;
  try {
    const opened = body === null
      ? await api("/api/open?name=" + encodeURIComponent(name), {method: "POST"})
      : await api("/api/open", {method: "POST", body, headers: {"X-Filename": encodeURIComponent(name)}});
    // From here on, answers about the previous photo are stale: dropped, their requests aborted.
    generation += 1;
    if (sending !== null) sending.controller.abort();
    sending = null;
    photo = opened;
    state = emptyState();
    acknowledged = emptyState();
    history = [];
    future = [];
    selected = null;
    attentionCache.clear();
    $("photo-name").textContent = `${opened.name} (${opened.width}x${opened.height})`;
    $("after").src = opened.gray;
    $("before").src = opened.gray;
    await $("after").decode().catch(() => {});  // busy until the new photo is shown
    $("stage").hidden = false;
    $("placeholder").hidden = true;
    renderSamples();
    render();
    fit();
    updateDownloads();
    version += 1;
    document.body.dataset.version = String(version);
    lastStatus = `opened in ${Math.round(performance.now() - started)} ms ` +
      `(${opened.samples.length} samples: ${Math.round(opened.ms)} ms on the server)`;
    $("status").textContent = lastStatus;
  } catch (err) {
    // The status said "opening <name> ..."; the photo open before (if any) stays (unless
    // another open answered meanwhile: its status stays).
    if (generation === openedBefore) {
      $("status").textContent = photo ? `${photo.name} is still open` : "Open a photo, or drop one on the page.";
    }
    // The server's decoding messages name the photo already; others get its name in front.
    showError(err.message.includes(name) ? err.message : `${name}: ${err.message}`);
  } finally {
    opening -= 1;
    setBusy(false);
  }
}

$("file").addEventListener("change", (event) => {
  const file = event.target.files[0];
  if (file) openPhoto(file, file.name);
  event.target.value = "";
});

$("folder").addEventListener("change", (event) => {
  if (event.target.value) openPhoto(null, event.target.value);
});

document.addEventListener("dragover", (event) => {
  event.preventDefault();
  document.body.classList.add("dragging");
});
document.addEventListener("dragleave", (event) => {
  if (event.target === document.documentElement || event.clientX <= 0) document.body.classList.remove("dragging");
});
document.addEventListener("drop", (event) => {
  event.preventDefault();
  document.body.classList.remove("dragging");
  const file = event.dataTransfer.files[0];
  if (file) openPhoto(file, file.name);
  else showError("drop an image file");
});

async function loadConfig() {
  try {
    const config = await api("/api/config");
    maxUploadMiB = config.max_upload_mib;
    if (config.photos.length) {
      const select = $("folder");
      for (const name of config.photos) {
        const option = document.createElement("option");
        option.value = option.textContent = name;
        select.appendChild(option);
      }
      select.hidden = false;
      if (config.photos.length === 1) {
        select.value = config.photos[0];
        openPhoto(null, config.photos[0]);
      }
    }
  } catch (err) {
    showError(err.message);
  }
}

// ------------------------------------------------------------------------------ samples

function renderSamples() {
  const list = $("sample-list");
  list.replaceChildren();
  const only = document.createElement("button");
  only.className = "tile points-only";
  only.dataset.start = "";
  only.textContent = "the points alone (gray photo)";
  list.appendChild(only);
  for (const sample of photo.samples) {
    const tile = document.createElement("button");
    tile.className = "tile";
    tile.dataset.start = String(sample.index);
    const image = document.createElement("img");
    image.src = sample.thumb;
    image.alt = `sample ${sample.index}`;
    const label = document.createElement("span");
    label.textContent = `sample ${sample.index} \u00b7 weight ${sample.weight.toFixed(3)}`;
    tile.append(image, label);
    list.appendChild(tile);
  }
  for (const tile of list.children) {
    tile.addEventListener("click", () => {
      const start = tile.dataset.start === "" ? null : Number(tile.dataset.start);
      if (start !== state.from_sample) change((next) => { next.from_sample = start; });
    });
  }
}

function beforeImage() {
  return state.from_sample === null ? photo.gray : photo.samples[state.from_sample].image;
}

// ------------------------------------------------------------------------------ state

function change(edit) {
  const next = clone(state);
  edit(next);
  if (same(next, state)) return;
  history.push(state);
  future = [];
  state = next;
  render();
  send();
}

function undo() {
  if (!history.length) return;
  future.push(state);
  state = history.pop();
  render();
  send();
}

function redo() {
  if (!future.length) return;
  history.push(state);
  state = future.pop();
  render();
  send();
}

function rememberColor(color) {
  let recent = JSON.parse(localStorage.getItem("tfgcrf-recent") || "[]");
  recent = [color, ...recent.filter((c) => c !== color)].slice(0, 10);
  localStorage.setItem("tfgcrf-recent", JSON.stringify(recent));
  renderRecent();
}

function renderRecent() {
  const box = $("recent");
  box.replaceChildren();
  for (const color of JSON.parse(localStorage.getItem("tfgcrf-recent") || "[]")) {
    const swatch = document.createElement("button");
    swatch.style.background = color;
    swatch.title = color;
    swatch.addEventListener("click", () => { $("color").value = color; recolorSelected(color); });
    box.appendChild(swatch);
  }
}

function recolorSelected(color) {
  if (selected === null) return;
  change((next) => {
    const point = next.points.find((p) => p.id === selected);
    if (point) point.color = color;
  });
  rememberColor(color);
}
$("color").addEventListener("change", (event) => recolorSelected(event.target.value));

function addPoint(x, y) {
  const color = $("color").value;
  const id = "p" + nextId++;
  selected = null;
  change((next) => { next.points.push({id, x, y, color}); });
  rememberColor(color);
}

function removePoint(id) {
  change((next) => { next.points = next.points.filter((p) => p.id !== id); });
  if (selected === id) selected = null;
  render();
}

function removeLink(id) {
  change((next) => { next.links = next.links.filter((l) => l.id !== id); });
}

// ------------------------------------------------------------------------------ server

async function send() {
  if (!photo) return;
  // The latest state is sent when the answer in flight (about this photo) arrives.
  if (sending !== null && sending.generation === generation) return;
  const mine = {generation, controller: new AbortController()};
  sending = mine;
  setBusy(true, opening ? null : "solving ...");
  const current = () => mine.generation === generation;
  let sentState = null;
  while (current() && (!same(state, acknowledged) || sentState === null)) {
    sentState = clone(state);
    const started = performance.now();
    try {
      const answer = await api("/api/edit?photo=" + encodeURIComponent(photo.photo), {
        method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(sentState),
        signal: mine.controller.signal,
      });
      if (!current()) break;  // about a photo no longer open: dropped
      acknowledged = sentState;
      $("after").src = answer.image;
      const roundTrip = Math.round(performance.now() - started);
      roundTrips.push(roundTrip);
      const waited = answer.wait_ms >= 1 ? `, after waiting ${answer.wait_ms} ms for the ` +
        `server (the edit session being prepared or another tab's work)` : "";
      $("timing").textContent = `re-solved in ${answer.solve_ms} ms on the server${waited} ` +
        `(${answer.updates} update${answer.updates === 1 ? "" : "s"}; ${answer.total_ms} ms with ` +
        `encoding, ${roundTrip} ms round trip)`;
      setStatus(`${answer.points} point${answer.points === 1 ? "" : "s"}, ` +
        `${answer.links} link${answer.links === 1 ? "" : "s"}: ${answer.solve_ms} ms`);
      clearError();
    } catch (err) {
      if (!current()) break;
      showError(err.message);
      // The server kept its previous state: so does the page.
      if (!same(state, sentState)) continue;
      state = clone(acknowledged);
      if (history.length && same(history[history.length - 1], state)) history.pop();
      render();
      // Not "solving ..." any more: the last state the server answered, which the page shows.
      if (!opening) $("status").textContent = `not applied; ${lastStatus}`;
      break;
    }
  }
  if (!current()) return;  // the open of another photo took over the page
  sending = null;
  version += 1;
  document.body.dataset.version = String(version);
  setBusy(false);
  updateDownloads();
}

function updateDownloads() {
  const stem = photo.name.replace(/\.[^.]*$/, "") || "photo";
  const png = $("download-png");
  const edit = $("download-json");
  png.href = `/api/result.png?tab=${TAB}&v=${version}`;
  png.download = stem + "_edit.png";
  edit.href = `/api/edit.json?tab=${TAB}&v=${version}`;
  edit.download = stem + "_edit.json";
  png.classList.remove("disabled");
  edit.classList.remove("disabled");
}

// ------------------------------------------------------------------------------ drawing

function scale() {
  const rect = $("marks").getBoundingClientRect();
  return rect.width / photo.width;
}

function render() {
  if (!photo) return;
  $("undo").disabled = !history.length;
  $("redo").disabled = !future.length;
  $("before").src = beforeImage();
  for (const tile of $("sample-list").children) {
    const start = tile.dataset.start === "" ? null : Number(tile.dataset.start);
    tile.classList.toggle("selected", start === state.from_sample);
  }
  // The attention map shown is of a point still there, at its place; else it is hidden (a point
  // removed with Delete or a right click, or undone, while the pointer rests on it).
  const shown = $("attention").dataset.point;
  if (shown !== undefined && !showsAttention(shown, $("attention").dataset.key)) hideAttention();
  drawMarks();
  renderList();
}

function drawMarks(preview) {
  const svg = $("marks");
  svg.setAttribute("viewBox", `0 0 ${photo.width} ${photo.height}`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.replaceChildren();
  const r = MARK_RADIUS / (scale() || 1);
  const compare = Number($("compare").value);
  if (compare > 0) {
    const x = photo.width * compare / 100;
    line(svg, x, 0, x, photo.height, "compare-line", r / 3).id = "compare-line";
  }
  const links = preview && preview.link ? state.links.concat([preview.link]) : state.links;
  for (const link of links) {
    const group = document.createElementNS(SVG, "g");
    group.dataset.link = link.id;
    line(group, link.from[0] + 0.5, link.from[1] + 0.5, link.to[0] + 0.5, link.to[1] + 0.5, "link-shadow", r / 2.2);
    line(group, link.from[0] + 0.5, link.from[1] + 0.5, link.to[0] + 0.5, link.to[1] + 0.5, "link", r / 3.5);
    for (const end of [link.from, link.to]) {
      const dot = circle(group, end[0] + 0.5, end[1] + 0.5, r * 0.55, "link-end");
      dot.setAttribute("stroke-width", r / 6);
    }
    group.addEventListener("contextmenu", (event) => { event.preventDefault(); removeLink(link.id); });
    svg.appendChild(group);
  }
  for (const point of state.points) {
    const moved = preview && preview.point && preview.point.id === point.id ? preview.point : point;
    const group = document.createElementNS(SVG, "g");
    group.classList.add("point");
    if (point.id === selected) group.classList.add("selected");
    group.dataset.point = point.id;
    const x = moved.x + 0.5;
    const y = moved.y + 0.5;
    circle(group, x, y, r + r / 3, "outer").setAttribute("stroke-width", r / 4);
    circle(group, x, y, r + r / 10, "ring").setAttribute("stroke-width", r / 4);
    circle(group, x, y, r, "fill").setAttribute("fill", point.color);
    svg.appendChild(group);
  }
}

function line(parent, x1, y1, x2, y2, cls, width) {
  const element = document.createElementNS(SVG, "line");
  for (const [key, value] of Object.entries({x1, y1, x2, y2})) element.setAttribute(key, value);
  element.setAttribute("class", cls);
  element.setAttribute("stroke-width", width);
  parent.appendChild(element);
  return element;
}

function circle(parent, cx, cy, r, cls) {
  const element = document.createElementNS(SVG, "circle");
  element.setAttribute("cx", cx);
  element.setAttribute("cy", cy);
  element.setAttribute("r", r);
  element.setAttribute("class", cls);
  parent.appendChild(element);
  return element;
}

function renderList() {
  const list = $("item-list");
  list.replaceChildren();
  for (const point of state.points) {
    const item = document.createElement("li");
    item.dataset.point = point.id;
    item.innerHTML = `<span class="swatch" style="background:${point.color}"></span>` +
      `point (${point.x}, ${point.y}) ${point.color}`;
    const remove = document.createElement("button");
    remove.textContent = "\u00d7";
    remove.title = "remove";
    remove.addEventListener("click", () => removePoint(point.id));
    item.appendChild(remove);
    list.appendChild(item);
  }
  for (const link of state.links) {
    const item = document.createElement("li");
    item.dataset.link = link.id;
    item.textContent = `same color: (${link.from}) \u2194 (${link.to})`;
    const remove = document.createElement("button");
    remove.textContent = "\u00d7";
    remove.title = "remove";
    remove.addEventListener("click", () => removeLink(link.id));
    item.appendChild(remove);
    list.appendChild(item);
  }
}

// ------------------------------------------------------------------------------ pointer

let gesture = null;  // {kind: "add"|"move"|"link", start: [x, y], id, moved}

function toPhoto(event) {
  const rect = $("marks").getBoundingClientRect();
  const x = Math.floor((event.clientX - rect.left) / rect.width * photo.width);
  const y = Math.floor((event.clientY - rect.top) / rect.height * photo.height);
  return [Math.min(Math.max(x, 0), photo.width - 1), Math.min(Math.max(y, 0), photo.height - 1)];
}

function pointAt(event) {
  const group = event.target.closest ? event.target.closest("g.point") : null;
  return group ? group.dataset.point : null;
}

$("marks").addEventListener("contextmenu", (event) => {
  event.preventDefault();
  const id = pointAt(event);
  if (id !== null) removePoint(id);
});

$("marks").addEventListener("pointerdown", (event) => {
  if (!photo || event.button !== 0) return;
  hideAttention();
  const at = toPhoto(event);
  const id = pointAt(event);
  if (tool === "link") {
    gesture = {kind: "link", start: at, moved: false};
  } else if (id !== null) {
    gesture = {kind: "move", id, start: at, moved: false};
  } else {
    gesture = {kind: "add", start: at, moved: false};
  }
  $("marks").setPointerCapture(event.pointerId);
});

$("marks").addEventListener("pointermove", (event) => {
  if (!gesture) return;
  const at = toPhoto(event);
  gesture.moved = gesture.moved || at[0] !== gesture.start[0] || at[1] !== gesture.start[1];
  if (gesture.kind === "move") {
    const point = state.points.find((p) => p.id === gesture.id);
    drawMarks({point: {...point, x: at[0], y: at[1]}});
  } else if (gesture.kind === "link") {
    drawMarks({link: {id: "new", from: gesture.start, to: at}});
  }
});

$("marks").addEventListener("pointerup", (event) => {
  if (!gesture) return;
  const done = gesture;
  gesture = null;
  const at = toPhoto(event);
  if (done.kind === "add") {
    addPoint(at[0], at[1]);
  } else if (done.kind === "move") {
    if (done.moved) {
      change((next) => {
        const point = next.points.find((p) => p.id === done.id);
        point.x = at[0];
        point.y = at[1];
      });
    } else {
      selected = done.id;
      const point = state.points.find((p) => p.id === done.id);
      if (point) $("color").value = point.color;
      render();
    }
  } else if (done.kind === "link") {
    if (at[0] !== done.start[0] || at[1] !== done.start[1]) {
      const id = "l" + nextId++;
      change((next) => { next.links.push({id, from: done.start, to: at}); });
    } else {
      drawMarks();
    }
  }
});

// ------------------------------------------------------------------------------ attention

let hoverTimer = null;

$("marks").addEventListener("pointerover", (event) => {
  const id = pointAt(event);
  if (id === null || gesture) return;
  clearTimeout(hoverTimer);
  hoverTimer = setTimeout(() => showAttention(id), 150);
});

$("marks").addEventListener("pointerout", (event) => {
  if (pointAt(event) !== null) hideAttention();
});

async function showAttention(id) {
  const point = state.points.find((p) => p.id === id);
  if (!point) return;
  const key = `${point.x},${point.y}`;
  const asked = generation;
  try {
    if (!attentionCache.has(key)) {
      const blob = await api(`/api/attention?x=${point.x}&y=${point.y}`);
      if (asked !== generation) return;  // of the photo open before
      attentionCache.set(key, URL.createObjectURL(blob));
    }
    if (gesture || asked !== generation || !showsAttention(id, key)) return;
    $("attention").src = attentionCache.get(key);
    $("attention").hidden = false;
    $("attention").dataset.point = id;
    $("attention").dataset.key = key;
  } catch (err) {
    if (asked === generation) showError(err.message);
  }
}

function hideAttention() {
  clearTimeout(hoverTimer);
  $("attention").hidden = true;
  delete $("attention").dataset.point;
  delete $("attention").dataset.key;
}

// Whether point `id` is in the state at the place `key` ("x,y") of its attention map.
function showsAttention(id, key) {
  const point = state.points.find((p) => p.id === id);
  return point !== undefined && `${point.x},${point.y}` === key;
}

// ------------------------------------------------------------------------------ controls

function setTool(name) {
  tool = name;
  $("tool-point").classList.toggle("active", name === "point");
  $("tool-link").classList.toggle("active", name === "link");
}
$("tool-point").addEventListener("click", () => setTool("point"));
$("tool-link").addEventListener("click", () => setTool("link"));
$("undo").addEventListener("click", undo);
$("redo").addEventListener("click", redo);

$("compare").addEventListener("input", (event) => {
  const value = Number(event.target.value);
  $("before").style.clipPath = `inset(0 ${100 - value}% 0 0)`;
  if (photo) drawMarks();
});

document.addEventListener("keydown", (event) => {
  if (event.target.tagName === "INPUT" && event.target.type !== "range") return;
  const key = event.key.toLowerCase();
  if ((event.ctrlKey || event.metaKey) && key === "z" && !event.shiftKey) { event.preventDefault(); undo(); }
  else if ((event.ctrlKey || event.metaKey) && (key === "y" || (key === "z" && event.shiftKey))) { event.preventDefault(); redo(); }
  else if ((key === "delete" || key === "backspace") && selected !== null) { event.preventDefault(); removePoint(selected); }
  else if (key === "p" && !event.ctrlKey) setTool("point");
  else if (key === "l" && !event.ctrlKey) setTool("link");
});

// The picture fills the free space (small photos are enlarged, large ones shrunk).
function fit() {
  if (!photo) return;
  const wrap = $("stage-wrap");
  // A narrow window stacks the columns (studio.css): the picture takes the full width, up to 80%
  // of the window's height; else it fills the middle column.
  const narrow = window.matchMedia("(max-width: 800px)").matches;
  const room = narrow ? window.innerHeight * 0.8 : wrap.clientHeight - 24;
  const scale = Math.min((wrap.clientWidth - (narrow ? 16 : 24)) / photo.width, room / photo.height);
  $("after").style.width = `${Math.max(1, Math.floor(photo.width * scale))}px`;
  $("after").style.height = `${Math.max(1, Math.floor(photo.height * scale))}px`;
  drawMarks();
}

window.addEventListener("resize", fit);
$("after").addEventListener("load", () => { if (photo) drawMarks(); });

renderRecent();
loadConfig();
