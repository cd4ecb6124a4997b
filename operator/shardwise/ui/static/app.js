// shardwise ui: fix labels of one Experiment. Vanilla JS, talks only to this server's /api.
"use strict";

const $ = (sel) => document.querySelector(sel);
const state = { experiment: null, view: "candidates", offset: 0, info: null, busy: 0 };
const EXPLAIN = {
  candidates: "Samples whose out-of-shard prediction (the shards that never trained on them) disagrees with their label, most suspicious first. Score: higher = more likely mislabelled.",
  errors: "Samples of the Experiment's split that the published model gets wrong, lowest probability of the given label first. Score: 1 − probability of the given label.",
  browse: "Every sample still in the dataset, in dataset order, with its current label and the model's prediction.",
};

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) if (c != null) e.append(c);
  return e;
}

async function api(path, options) {
  const r = await fetch(path, options);
  let body;
  try { body = await r.json(); } catch { body = { error: `HTTP ${r.status} ${r.statusText}` }; }
  if (!r.ok) throw new Error(body.error || `HTTP ${r.status}`);
  return body;
}

function say(text, kind = "") {
  const m = $("#message");
  m.textContent = text;
  m.className = "message " + kind;
}

const fmt = (x, d = 2) => (x == null ? "–" : Number(x).toFixed(d));
const where = (it) => (it.shard < 0 ? "test split" : `shard ${it.shard} · slice ${it.slice}`);

// -- experiment and context -------------------------------------------------------------------
async function loadExperiments() {
  const doc = await api("/api/experiments");
  $("#who").textContent = `namespace ${doc.namespace} · acting as ${doc.user}`;
  const sel = $("#experiment");
  sel.replaceChildren(...doc.experiments.map((e) => el("option", { value: e.name, text: `${e.name} (${e.model} v${e.version})` })));
  if (!doc.default) {
    $("#shows").textContent = "No Experiment has a report yet: apply one (kind: Experiment) and run `shardwise reconcile`.";
    return false;
  }
  const wanted = new URLSearchParams(location.search).get("experiment");
  state.experiment = doc.experiments.some((e) => e.name === wanted) ? wanted : doc.default;
  sel.value = state.experiment;
  return true;
}

async function loadInfo() {
  const i = await api(`/api/info?experiment=${encodeURIComponent(state.experiment)}`);
  const first = !state.info || state.info.experiment !== i.experiment;
  state.info = i;
  const acc = i.accuracy == null ? "" : `, accuracy ${fmt(i.accuracy, 3)}`;
  $("#shows").replaceChildren(
    "Showing Experiment ", el("b", { text: i.experiment }),
    ": model ", el("b", { text: i.model }), " version ", el("b", { text: String(i.version) }),
    ` tested on the ${i.split} split (${i.samples} samples${acc}) of Dataset `, el("b", { text: i.dataset }),
    " at revision ", el("b", { text: String(i.datasetRevision) }),
    `; the dataset is now at revision ${i.currentRevision}.`);
  $("#notice").textContent = i.notice;
  $("#count-candidates").textContent = i.labelIssues.flagged == null ? "" : `(${i.labelIssues.flagged} flagged)`;
  $("#count-errors").textContent = `(${i.errors} wrong)`;
  $("#pending").textContent = i.pendingChanges
    ? `${i.pendingChanges} revision(s) since the report; run \`shardwise reconcile\` to retrain the affected shards.`
    : "None yet.";
  $("#change-list").replaceChildren(...i.changes.map((c) =>
    el("li", {}, el("b", { text: `r${c.revision} ${c.kind}` }), ` ${c.summary}`,
      el("div", { class: "muted", text: `${c.by ? "by " + c.by + ", " : ""}${c.at || ""}` }))));
  if (first) {
    const opts = (list) => list.map((c) => el("option", { value: c, text: c }));
    $("#f-label").replaceChildren(el("option", { value: "", text: "all" }), ...opts(i.classNames));
    const shards = Array.from({ length: i.shards }, (_, k) => el("option", { value: String(k), text: `shard ${k}` }));
    $("#f-shard").replaceChildren(el("option", { value: "", text: "all" }), el("option", { value: "test", text: "test split" }), ...shards);
    $("#classes").replaceChildren(...opts(i.classNames));
  }
}

// -- the list ---------------------------------------------------------------------------------
function query() {
  const q = new URLSearchParams({ experiment: state.experiment, view: state.view, offset: state.offset, limit: $("#f-limit").value });
  if ($("#f-label").value) q.set("label", $("#f-label").value);
  if ($("#f-shard").value) q.set("shard", $("#f-shard").value);
  if (state.view !== "browse" && $("#f-minscore").value !== "") q.set("minScore", $("#f-minscore").value);
  if (state.view !== "browse" && $("#f-fixed").checked) q.set("fixed", "true");
  return q;
}

async function loadItems() {
  const ticket = ++state.busy;
  const doc = await api(`/api/items?${query()}`);
  if (ticket !== state.busy) return; // a newer request is on its way
  state.offset = doc.offset;
  const last = doc.offset + doc.items.length;
  const range = $("#range");
  range.textContent = doc.total ? `${doc.offset + 1}–${last} of ${doc.total}` : "0 of 0";
  range.dataset.total = doc.total;
  range.dataset.offset = doc.offset;
  $("#prev").disabled = doc.offset === 0;
  $("#next").disabled = last >= doc.total;
  $("#grid").replaceChildren(...(doc.items.length ? doc.items.map(card) : [el("p", { class: "empty", text: "Nothing to show with these filters." })]));
}

function card(it) {
  const info = state.info;
  const c = el("article", { class: "card", "data-id": it.id, "data-state": it.state });
  const visual = info.isImage
    ? el("img", { class: "thumb", alt: `sample ${it.id}`, width: 72, height: 72,
        src: `/api/thumb?dataset=${encodeURIComponent(info.dataset)}&id=${encodeURIComponent(it.id)}` })
    : null;
  const labels = el("div", { class: "labels" }, el("b", { class: "given", text: it.label ?? "?" }));
  if (it.suggested != null) labels.append(" → ", el("b", { class: "suggested", text: it.suggested }));
  const caption = { candidates: " given → suggested", errors: " given → predicted", browse: it.suggested != null ? " label → predicted" : " label" };
  labels.append(el("span", { class: "sub", text: caption[state.view] }));
  const text = el("div", { class: "text" }, el("code", { text: it.id }), labels,
    el("div", { class: "sub", text: `p(label) ${fmt(it.labelProb)}` + (it.suggested != null ? ` · p(${it.suggested}) ${fmt(it.suggestedProb)}` : "") }),
    el("div", { class: "sub", text: where(it) }));
  if (it.score != null) text.append(el("div", { class: "sub" }, "score ", el("meter", { min: 0, max: 1, value: Math.max(0, Math.min(1, it.score)) }), ` ${fmt(it.score, 3)}`));
  c.append(el("div", { class: "head" }, visual, text));
  if (it.features) c.append(el("div", { class: "features", text: `features: ${it.features.join(", ")}${info.featureCount > it.features.length ? ", …" : ""}` }));
  const msg = el("div", { class: "card-msg", role: "status" });
  if (it.state !== "open") {
    const now = it.state === "removed" ? `${it.removedBy || "removed"} at revision ${it.removedAt}` : `relabelled to ${it.current}`;
    c.append(el("div", { class: "state", text: `Fixed: ${now}` }), msg);
    return c;
  }
  const input = el("input", { name: "label", placeholder: "label", autocomplete: "off", "aria-label": `new label for ${it.id}` });
  input.setAttribute("list", "classes");
  const actions = el("div", { class: "actions" });
  if (it.suggested != null) {
    actions.append(el("button", { type: "button", class: "accept", text: `Accept ${it.suggested}`,
      onclick: () => act(c, msg, { id: it.id, action: "relabel", label: it.suggested }) }));
  }
  actions.append(
    el("form", { class: "set", onsubmit: (ev) => { ev.preventDefault(); act(c, msg, { id: it.id, action: "relabel", label: input.value.trim() }); } },
      input, el("button", { type: "submit", text: "Set" })),
    el("button", { type: "button", class: "drop", text: "Drop", onclick: () => act(c, msg, { id: it.id, action: "drop" }) }));
  c.append(actions, msg);
  return c;
}

async function act(c, msg, body) {
  for (const b of c.querySelectorAll("button")) b.disabled = true;
  try {
    const r = await api("/api/actions", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ experiment: state.experiment, ...body }),
    });
    say(r.message, "ok");
    await refresh();
  } catch (e) {
    msg.textContent = e.message;
    msg.className = "card-msg error";
    say(e.message, "error");
    for (const b of c.querySelectorAll("button")) b.disabled = false;
  }
}

async function refresh() {
  await loadInfo();
  await loadItems();
}

function run(promise) {
  promise.catch((e) => say(e.message, "error"));
}

function selectView(view) {
  state.view = view;
  state.offset = 0;
  for (const b of document.querySelectorAll(".tabs button")) b.setAttribute("aria-selected", String(b.dataset.view === view));
  $("#minscore-wrap").hidden = $("#fixed-wrap").hidden = view === "browse";
  $("#explain").textContent = EXPLAIN[view];
  run(loadItems());
}

document.addEventListener("DOMContentLoaded", () => {
  for (const b of document.querySelectorAll(".tabs button")) b.addEventListener("click", () => selectView(b.dataset.view));
  $("#filters").addEventListener("change", () => { state.offset = 0; say(""); run(loadItems()); });
  $("#filters").addEventListener("submit", (ev) => ev.preventDefault());
  $("#prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - Number($("#f-limit").value)); run(loadItems()); });
  $("#next").addEventListener("click", () => { state.offset += Number($("#f-limit").value); run(loadItems()); });
  $("#experiment").addEventListener("change", () => {
    state.experiment = $("#experiment").value;
    state.offset = 0;
    state.info = null;
    run(refresh());
  });
  $("#explain").textContent = EXPLAIN[state.view];
  run(loadExperiments().then((ok) => (ok ? refresh() : null)));
});
