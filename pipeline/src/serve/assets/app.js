// kelp serve: the dataset browser's page. Plain browser JavaScript, no framework, no network
// access beyond this server. Every value from the dataset is put in the page as text
// (textContent), never as markup.
"use strict";

const PAGE_CARDS = 60;
const PAGE_ROWS = 200;

const state = {
  info: null,
  sql: "",
  offset: 0,
  limit: PAGE_CARDS,
  view: "auto", // auto | cards | table
  page: null,   // the last /api/query answer
  preset: null,
};

// ---- helpers ---------------------------------------------------------------------------------

const $ = (sel, root = document) => root.querySelector(sel);

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(e.dataset, v);
    // Through CSSOM: the Content-Security-Policy forbids style attributes.
    else if (k === "style") e.style.cssText = v;
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

async function api(path, body) {
  const init = body === undefined ? {} : {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  };
  const res = await fetch(path, init);
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { /* not JSON */ }
  if (!res.ok) {
    const msg = data && data.error ? data.error : (text || res.statusText);
    const err = new Error(msg);
    err.status = res.status;
    throw err;
  }
  return data;
}

function fileName(uri) {
  if (!uri) return "";
  const parts = String(uri).split(/[\\/]/);
  return parts[parts.length - 1] || uri;
}

function secs(x, digits = 2) {
  return x === null || x === undefined ? "?" : Number(x).toFixed(digits);
}

function duration(s) {
  if (s < 120) return `${Math.round(s * 10) / 10} s`;
  if (s < 7200) return `${Math.round(s / 6) / 10} min`;
  return `${Math.round(s / 360) / 10} h`;
}

function fmtNumber(v) {
  if (typeof v !== "number") return String(v);
  if (Number.isInteger(v)) return v.toLocaleString("en-US");
  const a = Math.abs(v);
  if (a !== 0 && (a < 0.001 || a >= 1e6)) return v.toExponential(3);
  return String(Math.round(v * 10000) / 10000);
}

function fmtValue(v) {
  if (v === null || v === undefined) return "null";
  if (typeof v === "object") return JSON.stringify(v);
  if (typeof v === "number") return fmtNumber(v);
  return String(v);
}

function mediaUrl(id, file) {
  return `/media/${id}/${file}`;
}

// ---- header, presets -------------------------------------------------------------------------

function renderSummary(info) {
  $("#dataset-uri").textContent = info.uri;
  $("#dataset-uri").title = `${info.uri} (DAG ${info.dag})`;
  const c = info.counts;
  const chips = [];
  const chip = (cls, n, label) => el("span", { class: `chip ${cls}` }, el("b", { text: fmtNumber(n) }), ` ${label}`);
  if (c.videos !== null) chips.push(chip("", c.videos, "videos"));
  if (c.kept !== null) chips.push(chip("kept", c.kept, "clips kept"));
  if (c.kept_hours !== null && c.kept_hours !== undefined)
    chips.push(el("span", { class: "chip" }, el("b", { text: duration(c.kept_hours * 3600) }), " of kept clips"));
  if (c.rejected !== null) chips.push(chip("rejected", c.rejected, "clips rejected"));
  if (c.duplicate_groups !== null) chips.push(chip("dup", c.duplicate_groups, "near-duplicate groups"));
  if (!info.complete) chips.push(el("span", { class: "chip warn", text: "unfinished run: committed partitions only" }));
  $("#summary").replaceChildren(...chips);

  const tl = $("#table-list");
  tl.replaceChildren("tables:", ...info.tables.map(t =>
    el("code", { title: `${t.rows} rows in ${t.shards} shard(s); click to query`, text: t.name,
      onclick: () => { setSql(`SELECT * FROM ${t.name}`); run(0); } })));

  const toggle = $("#status-toggle");
  const statusKeys = [["kept", "Kept"], ["rejected", "Rejected"], ["all", "Both"]];
  toggle.replaceChildren(...statusKeys
    .filter(([k]) => info.presets.some(p => p.key === k))
    .map(([k, label]) => el("button", { dataset: { preset: k }, text: label, onclick: () => usePreset(k) })));
  $("#presets").replaceChildren(...info.presets
    .filter(p => !statusKeys.some(([k]) => k === p.key))
    .map(p => el("button", { dataset: { preset: p.key }, text: p.label, onclick: () => usePreset(p.key) })));
}

function setSql(sql) {
  $("#sql").value = sql;
}

function usePreset(key) {
  const p = state.info.presets.find(p => p.key === key);
  if (!p) return;
  state.preset = key;
  setSql(p.sql);
  state.view = "auto";
  if (location.hash && location.hash !== "#/") location.hash = "#/";
  run(0);
}

function markPreset() {
  for (const b of document.querySelectorAll("#status-toggle button, #presets button")) {
    const p = state.info.presets.find(p => p.key === b.dataset.preset);
    b.classList.toggle("on", !!p && p.sql === state.sql);
  }
}

// ---- queries ---------------------------------------------------------------------------------

function clipColumn(page) {
  return page.columns.findIndex(c => c.name === "clip_id");
}

function showsCards(page) {
  return clipColumn(page) >= 0 && state.view !== "table";
}

async function run(offset) {
  const sql = $("#sql").value.trim();
  if (!sql) return;
  if (sql !== state.sql) state.view = "auto";
  state.sql = sql;
  state.offset = Math.max(0, offset);
  state.limit = state.view === "table" ? PAGE_ROWS : PAGE_CARDS;
  const results = $("#results");
  const btn = $("#run");
  btn.disabled = true;
  results.dataset.state = "loading";
  $("#error").hidden = true;
  markPreset();
  try {
    let page = await api("/api/query", { sql, offset: state.offset, limit: state.limit });
    // A table of non-clip rows reads better with more rows a page.
    if (clipColumn(page) < 0 && state.limit !== PAGE_ROWS && (page.has_more || state.offset > 0)) {
      state.limit = PAGE_ROWS;
      page = await api("/api/query", { sql, offset: state.offset, limit: state.limit });
    }
    state.page = page;
    await renderPage(page);
    results.dataset.state = "done";
  } catch (e) {
    results.replaceChildren();
    $("#result-bar").hidden = true;
    const box = $("#error");
    box.textContent = e.message;
    box.dataset.status = e.status || "";
    box.hidden = false;
    results.dataset.state = "error";
  } finally {
    btn.disabled = false;
  }
}

async function renderPage(page) {
  const bar = $("#result-bar");
  bar.hidden = false;
  const first = page.row_count ? page.offset + 1 : 0;
  const last = page.offset + page.row_count;
  $("#result-info").textContent =
    `rows ${fmtNumber(first)}–${fmtNumber(last)}${page.has_more ? " of more" : ""} · ${page.columns.length} columns · ${page.elapsed_ms} ms`;
  $("#page-label").textContent = `page ${Math.floor(page.offset / state.limit) + 1}`;
  $("#prev").disabled = page.offset === 0;
  $("#next").disabled = !page.has_more;
  const hasClips = clipColumn(page) >= 0;
  $("#view-switch").hidden = !hasClips;
  for (const b of document.querySelectorAll("#view-switch button"))
    b.classList.toggle("on", (b.dataset.view === "cards") === showsCards(page));

  const results = $("#results");
  results.dataset.rows = page.row_count;
  if (page.row_count === 0) {
    results.replaceChildren(el("div", { class: "empty", text: "No rows." }));
    return;
  }
  if (showsCards(page)) {
    results.replaceChildren(el("div", { class: "loading", text: "Loading clips…" }));
    results.replaceChildren(await renderCards(page));
  } else {
    results.replaceChildren(renderTable(page));
  }
}

async function renderCards(page) {
  const ci = clipColumn(page);
  const gi = page.columns.findIndex(c => c.name === "group_id");
  const ids = page.rows.map(r => r[ci]).filter(id => typeof id === "string");
  const unique = [...new Set(ids)];
  const cards = unique.length ? await api("/api/cards", { ids: unique }) : [];
  const byId = new Map(cards.map(c => [c.clip_id, c]));
  if (gi >= 0) {
    // Rows of near-duplicate groups: one row of cards per group, side by side.
    const groups = new Map();
    for (const r of page.rows) {
      const g = r[gi];
      if (!groups.has(g)) groups.set(g, []);
      const card = byId.get(r[ci]);
      if (card) groups.get(g).push(card);
    }
    return el("div", { class: "groups" }, [...groups].map(([g, members]) =>
      el("div", { class: "group", dataset: { groupId: String(g) } },
        el("h4", {}, `Group of ${members.length} `, el("span", { text: `${String(g).slice(0, 12)}…` })),
        el("div", { class: "group-row" }, members.map(c => cardElement(c, { group: true }))))));
  }
  return el("div", { class: "grid" }, ids.map(id => cardElement(byId.get(id) || { clip_id: id, status: "unknown", rejections: [], scores: [] })));
}

function cardElement(c, opts = {}) {
  const thumb = el("div", { class: "thumb" });
  const img = el("img", { src: mediaUrl(c.clip_id, "thumbnail.jpg"), alt: "", loading: "lazy", decoding: "async" });
  let animated = true;
  img.addEventListener("error", () => {
    if (img.dataset.showing === "animation") {
      animated = false;
      img.dataset.showing = "thumbnail";
      img.src = mediaUrl(c.clip_id, "thumbnail.jpg");
    } else {
      img.replaceWith(el("span", { class: "none", text: "no preview" }));
    }
  });
  thumb.append(img);
  thumb.append(el("span", { class: `badge status ${c.status}`, text: c.status }));
  if (c.duration_s !== null && c.duration_s !== undefined)
    thumb.append(el("span", { class: "badge dur", text: `${secs(c.duration_s, 1)} s` }));
  if (c.duplicate && c.duplicate.members > 1)
    thumb.append(el("span", { class: "badge dup", title: `near-duplicate group ${c.duplicate.group_id}`,
      text: c.duplicate.kept ? `keeps ${c.duplicate.members - 1} dup` : `duplicate` }));
  thumb.append(el("span", { class: "badge play", text: "▶ preview" }));

  const meta = el("div", { class: "meta" });
  meta.append(el("div", { class: "title", title: c.uri || c.clip_id },
    fileName(c.uri) || c.clip_id.slice(0, 12), " ",
    el("span", { class: "time", text: c.start_s !== null && c.start_s !== undefined ? `${secs(c.start_s)}–${secs(c.end_s)} s` : "" })));
  if (c.caption) meta.append(el("div", { class: "caption", title: c.caption, text: c.caption }));
  for (const r of c.rejections || [])
    meta.append(el("div", { class: "reason" }, "rejected by ", el("b", { text: r.node }), `: ${r.reason}`));
  const facts = [];
  if (c.width && c.height) facts.push(`${c.width}×${c.height}`);
  if (c.fps) facts.push(`${fmtNumber(Math.round(c.fps * 100) / 100)} fps`);
  if (c.bucket) facts.push(c.bucket);
  if (facts.length) meta.append(el("div", { class: "facts", text: facts.join(" · ") }));
  if (c.scores && c.scores.length)
    meta.append(el("div", { class: "scores" }, c.scores.map(s => el("span", {}, `${s.name} `, el("b", { text: fmtNumber(Math.round(s.value * 100) / 100) })))));

  const cls = ["card", c.status];
  if (opts.group && c.duplicate && c.duplicate.kept) cls.push("group-kept");
  const a = el("a", { class: cls.join(" "), href: `#/clip/${c.clip_id}`, dataset: { clipId: c.clip_id } }, thumb, meta);
  a.addEventListener("mouseenter", () => {
    if (!animated || !img.isConnected) return;
    img.dataset.showing = "animation";
    img.src = mediaUrl(c.clip_id, "animation.webp");
  });
  a.addEventListener("mouseleave", () => {
    if (!img.isConnected || img.dataset.showing !== "animation") return;
    img.dataset.showing = "thumbnail";
    img.src = mediaUrl(c.clip_id, "thumbnail.jpg");
  });
  return a;
}

function renderTable(page) {
  const ci = clipColumn(page);
  const numeric = page.columns.map(c => /^(U?Int|Float|Decimal)/.test(c.type));
  const head = el("tr", {}, page.columns.map(c => el("th", { title: c.type }, c.name, el("small", { text: c.type }))));
  const body = page.rows.map(r => el("tr", {}, r.map((v, i) => {
    const cls = v === null ? "null" : (numeric[i] ? "num" : "");
    if (i === ci && typeof v === "string")
      return el("td", { class: cls }, el("a", { href: `#/clip/${v}`, text: v }));
    return el("td", { class: cls, title: v === null ? null : fmtValue(v), text: fmtValue(v) });
  })));
  return el("div", { class: "table-wrap" }, el("table", { class: "data" }, el("thead", {}, head), el("tbody", {}, body)));
}

// ---- clip page -------------------------------------------------------------------------------

async function showClip(id) {
  const view = $("#clip-view");
  view.dataset.state = "loading";
  view.replaceChildren(el("div", { class: "loading", text: "Loading clip…" }));
  let p;
  try {
    p = await api(`/api/clip/${encodeURIComponent(id)}`);
  } catch (e) {
    view.replaceChildren(el("a", { class: "back", href: "#/", text: "← Back to results" }),
      el("div", { class: "error", text: e.message }));
    view.dataset.state = "error";
    return;
  }
  const c = p.card;
  const page = el("div", { class: "clip-page", id: "clip-page", dataset: { clipId: c.clip_id, status: c.status } });
  page.append(el("a", { class: "back", href: "#/", text: "← Back to results" }));
  page.append(el("h2", {},
    fileName(c.uri) || c.clip_id,
    el("span", { class: "time", text: `${secs(c.start_s)}–${secs(c.end_s)} s` }),
    el("span", { class: `pill ${c.status}`, text: c.status }),
    c.duplicate && c.duplicate.members > 1
      ? el("span", { class: "pill dup", text: c.duplicate.kept ? `kept for a group of ${c.duplicate.members}` : "near duplicate" })
      : null));

  // Preview and media.
  const files = new Map(p.files.map(f => [f.name, f]));
  const stage = el("div", { class: "stage" });
  const showAnimation = () => {
    const f = files.get("animation.webp") || files.get("thumbnail.jpg");
    stage.replaceChildren(f ? el("img", { src: f.url, alt: "preview", class: "preview" }) : el("span", { class: "none", text: "no preview" }));
  };
  const showVideo = () => {
    const f = files.get("clip.mp4");
    if (f) stage.replaceChildren(el("video", { src: f.url, controls: true, autoplay: true, muted: true, loop: true, playsinline: true }));
  };
  showAnimation();
  const controls = el("div", { class: "controls" });
  if (files.has("clip.mp4")) {
    const seg = el("div", { class: "segmented small" });
    const b1 = el("button", { class: "on", text: "Animation" });
    const b2 = el("button", { text: "Clip media" });
    b1.onclick = () => { b1.classList.add("on"); b2.classList.remove("on"); showAnimation(); };
    b2.onclick = () => { b2.classList.add("on"); b1.classList.remove("on"); showVideo(); };
    seg.append(b1, b2);
    controls.append(seg);
  }
  controls.append(el("div", { class: "media-links" }, p.files.map(f =>
    el("a", { class: "media-link", href: f.url, target: "_blank", rel: "noopener", text: f.name }))));
  const player = el("div", { class: "panel player" }, stage, controls);

  const side = el("div", { class: "panel" });
  if (c.status === "rejected") {
    const v = el("div", { class: "verdict rejected" });
    if (c.rejections.length === 0) v.append("Rejected.");
    for (const r of c.rejections) v.append(el("div", {}, "Rejected by node ", el("b", { text: r.node }), `: ${r.reason}`));
    side.append(v);
  } else {
    side.append(el("div", { class: "verdict kept" }, "Kept: it passed every node of the DAG."));
  }
  if (c.caption) side.append(el("p", { class: "caption-text", text: c.caption }));
  const facts = el("dl", { class: "facts" });
  const fact = (k, v) => { if (v !== null && v !== undefined && v !== "") facts.append(el("dt", { text: k }), el("dd", { text: v })); };
  fact("clip_id", c.clip_id);
  fact("duration", c.duration_s !== null && c.duration_s !== undefined ? `${secs(c.duration_s)} s` : null);
  fact("resolution", c.width && c.height ? `${c.width}×${c.height}` : null);
  fact("fps", c.fps ? fmtNumber(Math.round(c.fps * 1000) / 1000) : null);
  fact("bucket", c.bucket);
  for (const s of c.scores) fact(s.name, fmtNumber(Math.round(s.value * 1000) / 1000));
  if (c.duplicate) {
    fact("duplicate group", c.duplicate.group_id);
    fact("kept clip", c.duplicate.kept_clip_id);
    if (c.duplicate.distance !== null) fact("distance", fmtNumber(c.duplicate.distance));
  }
  fact("row in", p.table);
  side.append(facts);
  page.append(el("div", { class: "clip-grid" }, player, side));

  // Source video and timeline.
  page.append(el("h3", { text: "Source video" }));
  const v = p.video || {};
  const src = el("div", { class: "panel" });
  src.append(el("div", { class: "facts" },
    el("span", { style: "font-family: var(--mono)", text: c.uri || v.uri || "" }),
    v.duration_s ? ` · ${secs(v.duration_s)} s` : "",
    v.width && v.height ? ` · ${v.width}×${v.height}` : "",
    v.fps ? ` · ${fmtNumber(Math.round(v.fps * 100) / 100)} fps` : "",
    v.codec ? ` · ${v.codec}` : ""));
  src.append(renderTimeline(p.timeline, c));
  src.append(el("div", { class: "legend" },
    el("span", {}, el("i", { class: "kept" }), "kept clip"),
    el("span", {}, el("i", { class: "rejected" }), "rejected clip"),
    el("span", {}, el("i", { class: "cut" }), "cut"),
    el("span", {}, el("i", { class: "fade" }), "fade"),
    el("span", {}, el("i", { class: "dissolve" }), "dissolve"),
    el("span", { text: "this clip is outlined; click a clip to open it" })));
  page.append(src);

  if (p.group.length > 1) {
    page.append(el("h3", { text: `Near-duplicate group (${p.group.length} clips, kept first)` }));
    page.append(el("div", { class: "group" }, el("div", { class: "group-row" }, p.group.map(g => cardElement(g, { group: true })))));
  }

  page.append(el("h3", { text: `All columns${p.table ? ` (${p.table})` : ""}` }));
  const rows = p.columns.map(([k, val]) => el("tr", {}, el("td", { text: k }), el("td", { class: val === null ? "null" : "", text: fmtValue(val) })));
  page.append(el("div", { class: "panel columns-grid" }, el("table", { class: "kv", id: "clip-columns" }, el("tbody", {}, rows))));
  view.replaceChildren(page);
  view.dataset.state = "done";
  window.scrollTo(0, 0);
}

function renderTimeline(t, c) {
  const box = el("div", { class: "timeline", id: "timeline" });
  const dur = t.duration_s > 0 ? t.duration_s : 1;
  const pct = x => `${Math.max(0, Math.min(100, (x / dur) * 100)).toFixed(3)}%`;
  box.append(el("div", { class: "track" }));
  for (const b of t.boundaries) {
    if (b.end_s > b.start_s)
      box.append(el("div", { class: `span ${b.kind}`, style: `left:${pct(b.start_s)};width:calc(${pct(b.end_s)} - ${pct(b.start_s)})`,
        title: `${b.kind} ${secs(b.start_s)}–${secs(b.end_s)} s` }));
    box.append(el("div", { class: `bound ${b.kind}`, style: `left:${pct(b.time_s)}`, title: `${b.kind} at ${secs(b.time_s)} s` }));
  }
  for (const s of t.clips) {
    const current = s.clip_id === c.clip_id;
    const seg = el("div", {
      class: `seg ${s.status}${current ? " current" : ""}`,
      style: `left:${pct(s.start_s)};width:calc(${pct(s.end_s)} - ${pct(s.start_s)})`,
      title: `${s.status}${s.node ? ` by ${s.node}` : ""}: ${secs(s.start_s)}–${secs(s.end_s)} s`,
      dataset: { clipId: s.clip_id },
      onclick: () => { location.hash = `#/clip/${s.clip_id}`; },
    });
    box.append(seg);
    if (current) {
      box.append(el("div", { class: "mark", style: `left:${pct(s.start_s)}`, text: `${secs(s.start_s)} s` }));
      box.append(el("div", { class: "mark", style: `left:${pct(s.end_s)}`, text: `${secs(s.end_s)} s` }));
    }
  }
  const step = [0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600].find(s => dur / s <= 12) || 7200;
  for (let x = 0; x <= dur + 1e-9; x += step)
    box.append(el("div", { class: "tick", style: `left:${pct(x)}`, text: `${fmtNumber(x)}s` }));
  return box;
}

// ---- stats -----------------------------------------------------------------------------------

let statsLoaded = false;

async function showStats() {
  const view = $("#stats-view");
  if (statsLoaded) return;
  view.dataset.state = "loading";
  view.replaceChildren(el("div", { class: "loading", text: "Computing kelp stats…" }));
  try {
    const sections = await api("/api/stats");
    view.replaceChildren(el("div", { class: "stats" }, sections.map(s => el("div", { class: "stat", dataset: { key: s.key } },
      el("h2", { text: s.title }),
      el("div", { class: "sql" }, el("code", { text: s.sql }),
        el("button", { text: "Open in SQL box", onclick: () => { setSql(s.sql); location.hash = "#/"; run(0); } })),
      s.plot ? el("div", { class: "plot" }, el("img", { src: s.plot, alt: s.title })) : null,
      renderTable({ columns: s.columns, rows: s.rows })))));
    statsLoaded = true;
    view.dataset.state = "done";
  } catch (e) {
    view.replaceChildren(el("div", { class: "error", text: e.message }));
    view.dataset.state = "error";
  }
}

// ---- routing ---------------------------------------------------------------------------------

function route() {
  const hash = location.hash || "#/";
  const clip = hash.match(/^#\/clip\/([0-9a-f]{32})$/);
  $("#browse-view").hidden = !!clip || hash === "#/stats";
  $("#clip-view").hidden = !clip;
  $("#stats-view").hidden = hash !== "#/stats";
  $("#nav-browse").classList.toggle("active", !clip && hash !== "#/stats");
  $("#nav-stats").classList.toggle("active", hash === "#/stats");
  if (clip) showClip(clip[1]);
  else if (hash === "#/stats") showStats();
}

async function main() {
  $("#run").addEventListener("click", () => run(0));
  $("#sql").addEventListener("keydown", e => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); run(0); }
  });
  $("#prev").addEventListener("click", () => run(state.offset - state.limit));
  $("#next").addEventListener("click", () => run(state.offset + state.limit));
  for (const b of document.querySelectorAll("#view-switch button"))
    b.addEventListener("click", () => { state.view = b.dataset.view; run(0); });
  window.addEventListener("hashchange", route);
  try {
    state.info = await api("/api/info");
  } catch (e) {
    const box = $("#error");
    box.textContent = `Cannot read the dataset: ${e.message}`;
    box.hidden = false;
    return;
  }
  renderSummary(state.info);
  const first = state.info.presets[0];
  setSql(first ? first.sql : "SELECT * FROM videos");
  route();
  document.body.dataset.ready = "1";
  await run(0);
}

main();
