// The vidsearch page: search box, filters, result cards that play in place, query by image, index status.
// Every string from the index or the user reaches the page through el() as a text node or an attribute value,
// never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
let imageFile = null; // the image of the current query by example, if any
let searchCount = 0; // to drop answers that arrive after a newer search started
let lastAsked = null; // the options of the last search, so a filter's change event does not repeat it

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function clock(seconds, tenths, round = Math.round) {
  const scale = tenths ? 10 : 1;
  const total = round(seconds * scale);
  const whole = Math.floor(total / scale), tenth = total % scale;
  const h = Math.floor(whole / 3600), m = Math.floor((whole % 3600) / 60), s = whole % 60;
  const text = h ? `${h}:${String(m).padStart(2, "0")}:${String(s).padStart(2, "0")}` : `${m}:${String(s).padStart(2, "0")}`;
  return tenths ? `${text}.${tenth}` : text;
}

function span(start, end) { // as report.clock_span: tenths for short videos and short spans, rounded outward
  if (!(end < 10 || end - start < 1)) return `${clock(start)}–${clock(end)}`;
  return `${clock(start + 1e-6, true, Math.floor)}–${clock(end - 1e-6, true, Math.ceil)}`;
}

function say(text, isError = false) {
  const message = $("message");
  message.textContent = text;
  message.classList.toggle("error", isError);
}

function options() {
  const params = new URLSearchParams();
  const q = $("q").value.trim();
  if (q) params.set("q", q);
  params.set("k", $("k").value || "12");
  for (const glob of $("path").value.split(/\s*,\s*/)) if (glob) params.append("path", glob);
  if ($("group").checked) params.set("group_by", "video");
  if ($("mode").value !== "auto") params.set("mode", $("mode").value);
  if ($("min-score").value !== "") params.set("min_score", $("min-score").value);
  return params;
}

function fromURL() {
  const params = new URLSearchParams(location.search);
  $("q").value = params.get("q") || "";
  if (params.get("k")) $("k").value = params.get("k");
  $("path").value = params.getAll("path").join(", ");
  $("group").checked = params.get("group_by") === "video";
  $("mode").value = ["visual", "speech", "both"].includes(params.get("mode")) ? params.get("mode") : "auto";
  $("min-score").value = params.get("min_score") || "";
  return Boolean(params.get("q"));
}

async function search({ push = true } = {}) {
  const params = options();
  if (!params.get("q") && !imageFile) {
    say("Type what to look for, or drop an image.");
    return;
  }
  if (push) {
    const url = `${location.pathname}?${params}`;
    if (url !== location.pathname + location.search) history.pushState(null, "", url);
  }
  lastAsked = params.toString();
  const mine = ++searchCount;
  say("searching…");
  let response;
  try {
    response = imageFile
      ? await fetch(`/api/search?${params}`, { method: "POST", body: imageFile,
          headers: { "content-type": imageFile.type || "application/octet-stream" } })
      : await fetch(`/api/search?${params}`);
  } catch (err) {
    say(`the server did not answer (${err})`, true);
    return;
  }
  const answer = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (mine !== searchCount) return;
  if (!response.ok) {
    say(answer.error || `HTTP ${response.status}`, true);
    $("results").replaceChildren();
    return;
  }
  render(answer.hits);
  refreshStatus();
}

function render(hits) {
  say(hits.length ? `${hits.length} moment${hits.length === 1 ? "" : "s"}` : "no matches");
  $("results").replaceChildren(...hits.map(card));
  checkPlayable(hits);
}

function said(text) {
  const pieces = [];
  let done = 0;
  for (const [begin, end] of text.marks) {
    pieces.push(text.line.slice(done, begin), el("mark", {}, text.line.slice(begin, end)));
    done = end;
  }
  pieces.push(text.line.slice(done));
  return el("p", { class: "said" }, "“", pieces, "”", el("span", { class: "source" }, text.source));
}

function card(hit, index) {
  const videoId = hit.moment_id.split("-")[0];
  const name = hit.path.split("/").pop();
  const parts = hit.parts ? hit.parts.map((p, i) => `${i + 1} ${span(p.start, p.end)} (${p.score.toFixed(2)})`).join(" → ") : null;
  const strip = el("img", { class: "strip", src: `/api/strip/${encodeURIComponent(hit.moment_id)}`,
                            alt: `frames of ${name} ${span(hit.start, hit.end)}`, loading: "lazy" });
  strip.addEventListener("error", () => strip.replaceWith(el("p", { class: "strip missing" }, "no preview")));
  return el("article", {
      class: "card", tabindex: 0, id: `hit-${index + 1}`,
      dataset: { momentId: hit.moment_id, videoId, start: hit.start, end: hit.end, path: hit.path },
      onclick: (event) => { if (event.target.tagName !== "VIDEO") play(event.currentTarget); },
    },
    el("header", {},
      el("span", { class: "rank" }, `#${index + 1}`),
      el("span", { class: "score" }, hit.score.toFixed(3)),
      el("span", { class: "when" }, span(hit.start, hit.end)),
      parts && el("span", { class: "parts" }, parts),
      el("span", { class: "file" }, name)),
    el("div", { class: "body" }, strip),
    hit.text ? said(hit.text) : null,
    el("p", { class: "path" }, hit.path));
}

function play(cardNode) {
  for (const other of document.querySelectorAll("video")) if (!cardNode.contains(other)) other.pause();
  const start = Number(cardNode.dataset.start);
  let video = cardNode.querySelector("video");
  if (!video) {
    video = el("video", { controls: "", preload: "auto", src: `/media/${cardNode.dataset.videoId}` });
    video.addEventListener("error", () => unplayable(cardNode, null));
    video.addEventListener("loadedmetadata", () => {
      if (!video.videoWidth) unplayable(cardNode, null); // audio only: the browser cannot decode the picture
    });
    cardNode.querySelector(".body").append(video);
  }
  const go = () => {
    video.currentTime = start;
    video.play().catch(() => {}); // a browser may refuse to start sound without a gesture: the frame is shown anyway
  };
  if (video.readyState >= 1) go();
  else video.addEventListener("loadedmetadata", go, { once: true });
  select(cardNode, false);
}

// RFC 6381 strings for the codecs browsers may play; any other codec (mpeg4, mpeg2video, prores...) they do not.
const CODEC_TYPES = {
  h264: 'video/mp4; codecs="avc1.42E01E"', hevc: 'video/mp4; codecs="hvc1.1.6.L93.B0"',
  vp8: 'video/webm; codecs="vp8"', vp9: 'video/webm; codecs="vp9"', av1: 'video/mp4; codecs="av01.0.05M.08"',
  theora: 'video/ogg; codecs="theora"',
};

async function videoInfo(videoId, start) {
  const response = await fetch(`/api/videos/${videoId}?start=${start}`);
  return response.ok ? response.json() : null;
}

async function checkPlayable(hits) {
  const probe = document.createElement("video");
  for (const node of document.querySelectorAll(".card")) {
    const info = await videoInfo(node.dataset.videoId, node.dataset.start);
    if (!info || !node.isConnected) continue;
    const type = CODEC_TYPES[info.codec];
    if (!type || !probe.canPlayType(type)) unplayable(node, info);
  }
}

async function unplayable(node, info) {
  if (node.querySelector(".unplayable")) return;
  info = info || await videoInfo(node.dataset.videoId, node.dataset.start);
  const codec = info && info.codec ? ` (${info.codec})` : "";
  node.append(el("p", { class: "unplayable" }, `This browser cannot play this file${codec}. Play it with: `,
                 el("code", {}, info ? info.player : `mpv --start=${Number(node.dataset.start).toFixed(2)} -- ${node.dataset.path}`)));
}

function cards() { return [...document.querySelectorAll(".card")]; }

function select(node, focus = true) {
  for (const other of cards()) other.classList.toggle("selected", other === node);
  if (focus) node.focus();
  node.scrollIntoView({ block: "nearest" });
}

document.addEventListener("keydown", (event) => {
  const typing = ["INPUT", "TEXTAREA"].includes(document.activeElement.tagName);
  if (event.key === "/" && !typing) {
    event.preventDefault();
    $("q").focus();
    $("q").select();
    return;
  }
  const all = cards();
  const current = all.indexOf(document.activeElement);
  if (event.key === "ArrowDown" && all.length && (current >= 0 || document.activeElement === $("q"))) {
    event.preventDefault();
    select(all[Math.min(current + 1, all.length - 1)]);
  } else if (event.key === "ArrowUp" && current >= 0) {
    event.preventDefault();
    if (current === 0) $("q").focus();
    else select(all[current - 1]);
  } else if (event.key === "Enter" && current >= 0) {
    event.preventDefault();
    play(all[current]);
  } else if (event.key === "Escape" && current >= 0) {
    $("q").focus();
  }
});

function useImage(file) {
  if (!file || !file.type.startsWith("image/")) {
    say("that is not an image", true);
    return;
  }
  imageFile = file;
  const shown = $("image-query");
  const url = URL.createObjectURL(file);
  shown.replaceChildren(el("img", { src: url, alt: "the query image" }), "Searching by this image ",
                        el("button", { type: "button", onclick: () => { imageFile = null; shown.hidden = true; search(); } },
                           "remove"));
  shown.hidden = false;
  search();
}

let dragDepth = 0;
window.addEventListener("dragenter", (event) => { event.preventDefault(); dragDepth++; $("drop").hidden = false; });
window.addEventListener("dragleave", () => { if (--dragDepth <= 0) { dragDepth = 0; $("drop").hidden = true; } });
window.addEventListener("dragover", (event) => event.preventDefault());
window.addEventListener("drop", (event) => {
  event.preventDefault();
  dragDepth = 0;
  $("drop").hidden = true;
  useImage(event.dataTransfer && event.dataTransfer.files[0]);
});

async function refreshStatus() {
  const response = await fetch("/api/status").catch(() => null);
  if (!response || !response.ok) {
    $("status").textContent = response && response.status === 401 ? "this server needs its token (open the login URL it printed)"
                                                                   : "index status unavailable";
    return;
  }
  const s = await response.json();
  const hours = s.seconds / 3600;
  const length = hours >= 1 ? `${hours.toFixed(1)} h` : `${Math.round(s.seconds / 60)} min`;
  const model = s.model ? s.model.name || s.model.spec : "no model yet";
  const last = s.last_indexed ? new Date(s.last_indexed).toLocaleString() : "never";
  const lines = s.text && s.text.lines ? ` · ${s.text.lines} text lines` : "";
  $("status").textContent = `${s.indexed + s.partial} videos (${length})${lines} · model ${model} · last indexed ${last}` +
    ` · ${s.index}`;
}

document.addEventListener("DOMContentLoaded", () => {
  $("search").addEventListener("submit", (event) => { event.preventDefault(); search(); });
  $("image").addEventListener("change", (event) => { lastAsked = null; useImage(event.target.files[0]); });
  const changed = () => { if (options().toString() !== lastAsked) search(); };
  for (const id of ["group", "mode", "min-score", "k", "path"]) $(id).addEventListener("change", changed);
  for (const id of ["path", "min-score", "k"]) {
    $(id).addEventListener("keydown", (event) => { if (event.key === "Enter") { event.preventDefault(); search(); } });
  }
  window.addEventListener("popstate", () => { if (fromURL()) search({ push: false }); });
  refreshStatus();
  setInterval(refreshStatus, 15000);
  if (fromURL()) search({ push: false });
  else $("q").focus();
});
