// avsearch gallery: plain JavaScript, no framework, no build step, nothing fetched but this server's API.
// Every string from the API reaches the page through textContent or setAttribute, never innerHTML:
// file names may hold <, quotes or \xNN escapes.
"use strict";

(function () {
  const API = "api/"; // relative, so the gallery also works behind a path prefix
  const LABELS = { image: "Pictures", audio: "Sounds", pointcloud: "Point clouds", text: "Text" };
  const NOUNS = { image: ["picture", "pictures"], audio: ["sound", "sounds"], pointcloud: ["point cloud", "point clouds"] };
  const PARAMS = ["text", "id", "k", "target", "where", "glob", "backend"];
  const BACKENDS = { cmcr: "C-MCR", cavmae: "CAV-MAE" };

  const $ = (id) => document.getElementById(id);
  const form = $("search");
  const fileInput = $("file");
  const drop = $("drop");
  const textInput = $("text");
  const statusLine = $("status");
  const errorLine = $("error");
  const queryLine = $("query");
  const resultsBox = $("results");

  let current = null; // the query on screen: {kind: "text"|"id"|"file", text?, id?, file?}
  let sequence = 0; // answers to older requests are dropped when a newer one was sent

  // ---- small helpers ------------------------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "text") node.textContent = String(value);
      else if (name === "className") node.className = value;
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children) if (child) node.append(child);
    return node;
  }

  function svgIcon(paths) {
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    svg.classList.add("icon");
    for (const d of paths) {
      const p = document.createElementNS(ns, "path");
      p.setAttribute("d", d);
      svg.append(p);
    }
    return svg;
  }

  const WAVE = ["M3 12h2M7 8v8M11 4v16M15 7v10M19 10v4M21 12h0"];

  function oneLine(text) {
    return String(text).replace(/\s+/g, " ").trim();
  }

  function baseName(path) {
    const parts = String(path || "").split("/");
    return parts[parts.length - 1] || String(path || "");
  }

  function setStatus(text) {
    statusLine.textContent = text;
  }

  function showError(text) {
    errorLine.textContent = oneLine(text);
    errorLine.hidden = !text;
  }

  function itemUrl(id, what) {
    return API + "items/" + encodeURIComponent(id) + (what ? "/" + what : "");
  }

  // A moment of a video or long recording: its range in seconds (null start: the whole file).
  function isMoment(hit) {
    return typeof hit.start === "number" && typeof hit.end === "number";
  }

  function hms(seconds) {
    const whole = Math.floor(seconds);
    const h = Math.floor(whole / 3600);
    const m = Math.floor((whole % 3600) / 60);
    const s = whole % 60;
    const two = (n) => String(n).padStart(2, "0");
    return h ? `${h}:${two(m)}:${two(s)}` : `${two(m)}:${two(s)}`;
  }

  // As the CLI prints it (01:23-01:33), with an en dash.
  function clock(start, end) {
    return `${hms(start)}–${hms(end)}`;
  }

  // The file played from the moment's start to its end: a W3C media fragment, which the browser seeks
  // to (with HTTP Range requests, which /media answers) before it plays.
  function momentUrl(hit) {
    return itemUrl(hit.id, "media") + `#t=${hit.start},${hit.end}`;
  }

  // ---- the form and the URL -----------------------------------------------------------------------

  function filters() {
    const k = parseInt($("k").value, 10);
    return {
      k: Number.isFinite(k) && k > 0 ? String(k) : "12",
      target: $("target").value || "all",
      where: $("where").value.trim(),
      glob: $("glob").value.trim(),
      backend: $("backend").value,
    };
  }

  function setFilters(params) {
    if (params.get("k")) $("k").value = params.get("k");
    const target = params.get("target");
    if (target && [...$("target").options].some((o) => o.value === target)) $("target").value = target;
    $("where").value = params.get("where") || "";
    $("glob").value = params.get("glob") || "";
    const backend = params.get("backend") || "";
    $("backend").value = [...$("backend").options].some((o) => o.value === backend) ? backend : "";
  }

  // The query string holds everything but an uploaded file (a URL cannot carry one): a text or an id
  // search reloads from it, an upload search keeps only its filters.
  function urlFor(query, f) {
    const params = new URLSearchParams();
    if (query && query.kind === "text") params.set("text", query.text);
    if (query && query.kind === "id") params.set("id", query.id);
    params.set("k", f.k);
    params.set("target", f.target);
    if (f.where) params.set("where", f.where);
    if (f.glob) params.set("glob", f.glob);
    if (f.backend) params.set("backend", f.backend);
    return "?" + params.toString();
  }

  function searchParams(f) {
    const params = new URLSearchParams({ k: f.k, target: f.target });
    if (f.where) params.set("where", f.where);
    if (f.glob) params.set("glob", f.glob);
    if (f.backend) params.set("backend", f.backend);
    return params;
  }

  // ---- searching ----------------------------------------------------------------------------------

  async function run(query, { push = true, focusResults = false } = {}) {
    const f = filters();
    const mine = ++sequence;
    current = query;
    if (push) {
      const url = urlFor(query, f);
      if (url !== location.search) history.pushState(null, "", url);
    }
    showError("");
    setStatus("Searching…");
    resultsBox.setAttribute("aria-busy", "true");
    showQuery(query);
    let request;
    if (query.kind === "text") {
      const params = searchParams(f);
      params.set("text", query.text);
      request = fetch(API + "search?" + params.toString());
    } else if (query.kind === "id") {
      request = fetch(itemUrl(query.id, "similar") + "?" + searchParams(f).toString());
    } else {
      const body = new FormData();
      body.append("file", query.file, query.file.name);
      for (const [name, value] of searchParams(f)) body.append(name, value);
      request = fetch(API + "search", { method: "POST", body });
    }
    const started = performance.now();
    let answer;
    try {
      answer = await readJson(await request);
    } catch (err) {
      if (mine !== sequence) return;
      resultsBox.setAttribute("aria-busy", "false");
      setStatus("");
      resultsBox.replaceChildren(); // no stale results under an error
      showError(err.message || String(err));
      return;
    }
    if (mine !== sequence) return;
    query.modality = answer.query && answer.query.modality; // a sound's picture results can be localised
    render(answer.results || []);
    resultsBox.setAttribute("aria-busy", "false");
    const hits = (answer.results || []).reduce((n, r) => n + (r.hits ? r.hits.length : 0), 0);
    const seconds = ((performance.now() - started) / 1000).toFixed(2);
    setStatus(`${hits} result${hits === 1 ? "" : "s"} in ${(answer.results || []).length} group(s), ${seconds} s`);
    if (focusResults) {
      const first = resultsBox.querySelector("h2");
      if (first) first.focus();
    }
  }

  // A failed request becomes one line: the API's {"error": ...} when it sent one, else the HTTP status.
  async function readJson(response) {
    let data = null;
    try {
      data = await response.json();
    } catch (_) {
      data = null;
    }
    if (!response.ok) {
      const reason = data && typeof data.error === "string" ? data.error : `${response.status} ${response.statusText}`;
      throw new Error(reason);
    }
    if (data === null) throw new Error("the server sent an answer that is not JSON");
    return data;
  }

  function showQuery(query) {
    queryLine.replaceChildren();
    queryLine.hidden = false;
    if (query.kind === "text") {
      queryLine.append("Text: ", el("q", { text: query.text }));
    } else if (query.kind === "id") {
      const name = el("span", { className: "name", text: query.id });
      queryLine.append("More like ", name);
      // The item's own name and preview, when the index still has it (the id alone is not much to look at).
      fetch(itemUrl(query.id))
        .then((r) => (r.ok ? r.json() : null))
        .then((item) => {
          if (!item || current !== query) return;
          name.textContent = item.name || baseName(item.path);
          name.title = item.path || "";
          if (isMoment(item)) {
            name.after(el("span", { className: "range", text: " " + clock(item.start, item.end) }));
            queryLine.append(el("img", { className: "query-preview", alt: "", src: itemUrl(query.id, "thumbnail") }));
          } else if (item.modality === "audio") {
            queryLine.append(el("audio", { controls: true, preload: "none", src: itemUrl(query.id, "media") }));
          } else {
            queryLine.append(el("img", { className: "query-preview", alt: "", src: itemUrl(query.id, "thumbnail") }));
          }
        })
        .catch(() => {});
    } else {
      queryLine.append("File: ", el("span", { className: "name", text: query.file.name }));
      if (query.file.type.startsWith("image/")) {
        const preview = el("img", { className: "query-preview", alt: "", src: URL.createObjectURL(query.file) });
        preview.addEventListener("load", () => URL.revokeObjectURL(preview.src), { once: true });
        queryLine.append(preview);
      }
      queryLine.append(el("span", { className: "muted", text: " (uploaded: not kept in the link)" }));
    }
  }

  // ---- results ------------------------------------------------------------------------------------

  function render(resultSets) {
    resultsBox.replaceChildren();
    if (!resultSets.length) {
      resultsBox.append(el("p", { className: "empty", text: "Nothing in this index can answer that query." }));
      return;
    }
    // With two backends (C-MCR and CAV-MAE) a target has two lists: shown side by side, one column each.
    const byTarget = new Map();
    for (const set of resultSets) {
      if (!byTarget.has(set.target)) byTarget.set(set.target, []);
      byTarget.get(set.target).push(set);
    }
    let index = 0;
    for (const sets of byTarget.values()) {
      const sections = sets.map((set) => section(set, index++, sets.length > 1));
      resultsBox.append(sections.length > 1 ? el("div", { className: "pair" }, ...sections) : sections[0]);
    }
  }

  function section(set, index, named) {
    const label = LABELS[set.target] || set.target;
    const hits = set.hits || [];
    const headingId = "group-" + index;
    const backend = named && set.backend ? ` · ${BACKENDS[set.backend] || set.backend}` : "";
    const heading = el("h2", { id: headingId, tabindex: "-1", text: `${label} (${hits.length})${backend}` });
    const via = set.bridge && set.bridge.name ? `through the ${set.bridge.name} bridge` : `in ${set.space}`;
    const node = el(
      "section",
      { className: "group", "data-target": set.target, "data-backend": set.backend || "", "aria-labelledby": headingId },
      heading,
      el("p", { className: "muted small", text: `${via}, ${set.index_kind} index, ${set.engine}` }),
    );
    // A calibrated list (the bridge says from which score a hit is more likely related than not) shows
    // its strong hits; the weaker ones wait behind a button. An uncalibrated list shows every hit, and says so.
    const level = set.calibration ? set.calibration.score_at_50 : null;
    const strong = level === null ? hits : hits.filter((hit) => hit.score >= level);
    const weak = hits.slice(strong.length);
    node.append(
      el("p", {
        className: "muted small calibration",
        text: set.calibration
          ? `Scores calibrated from ${set.calibration.source}.`
          : "Scores uncalibrated: they rank this list, they do not say whether a hit is related.",
      }),
    );
    if (!hits.length) {
      node.append(el("p", { className: "empty", text: "No matches." }));
      return node;
    }
    const list = el("ol", { className: "grid" });
    for (const hit of strong) list.append(card(hit, false));
    if (!strong.length) node.append(el("p", { className: "empty", text: "No strong matches." }));
    node.append(list);
    if (weak.length) {
      const show = el("button", { type: "button", className: "more weaker", "aria-expanded": "false" });
      show.textContent = `Show ${weak.length} weaker match${weak.length === 1 ? "" : "es"}`;
      show.addEventListener("click", () => {
        for (const hit of weak) list.append(card(hit, true));
        show.remove();
      }, { once: true });
      node.append(show);
    }
    return node;
  }

  function card(hit, weak) {
    const name = baseName(hit.path);
    const score = typeof hit.score === "number" ? hit.score.toFixed(3) : "?";
    const item = el("li", { className: weak ? "card weak" : "card", "data-id": hit.id, "data-modality": hit.modality });
    if (isMoment(hit)) {
      // A video moment shows its frame at the moment's start (a recording's moment, its stretch of waveform)
      // and plays the file from there; a <video> plays a sound too, its poster staying on screen.
      const at = clock(hit.start, hit.end);
      item.classList.add("moment");
      item.dataset.start = String(hit.start);
      item.dataset.end = String(hit.end);
      item.append(
        el("video", {
          className: "moment",
          controls: true,
          preload: "none",
          poster: itemUrl(hit.id, "thumbnail"),
          src: momentUrl(hit),
          "aria-label": `Play ${name} from ${at}`,
        }),
      );
    } else if (hit.modality === "audio") {
      // Its waveform (a thumbnail like a picture's), the generic icon where none can be drawn.
      const wave = el("img", { className: "waveform", src: itemUrl(hit.id, "thumbnail"), alt: `Waveform of ${name}`, loading: "lazy" });
      const box = el("div", { className: "wave" }, wave);
      wave.addEventListener("error", () => wave.replaceWith(svgIcon(WAVE)), { once: true });
      item.append(
        box,
        el("audio", { controls: true, preload: "none", src: itemUrl(hit.id, "media"), "aria-label": `Play ${name}` }),
      );
    } else {
      // Pictures and point clouds both have a thumbnail (a cloud's is a rendered preview).
      const img = el("img", {
        src: itemUrl(hit.id, "thumbnail"),
        alt: name,
        loading: "lazy",
        decoding: "async",
      });
      img.addEventListener("error", () => img.replaceWith(el("span", { className: "nothumb", text: "no preview" })), {
        once: true,
      });
      item.append(
        el("a", { className: "thumb", href: itemUrl(hit.id, "media"), target: "_blank", rel: "noopener" }, img),
      );
    }
    item.append(
      el(
        "p",
        { className: "meta" },
        el("span", { className: "rank", text: `#${hit.rank}` }),
        el("span", { className: "name", title: hit.path, text: name }),
        el("span", {
          className: "score",
          title: typeof hit.probability === "number"
            ? `cosine similarity; about ${Math.round(hit.probability * 100)}% likely to belong with the query`
            : "cosine similarity (uncalibrated)",
          text: typeof hit.probability === "number" ? `${score} · ${Math.round(hit.probability * 100)}%` : score,
        }),
      ),
    );
    if (isMoment(hit)) {
      const more = hit.more ? ` · ${hit.more} more moment${hit.more === 1 ? "" : "s"} in this file` : "";
      item.append(el("p", { className: "range", text: clock(hit.start, hit.end) + more }));
    }
    const more = el("button", { type: "button", className: "more", "aria-label": `More like ${name}` });
    more.textContent = "More like this";
    more.addEventListener("click", () => {
      textInput.value = "";
      fileInput.value = "";
      run({ kind: "id", id: hit.id }, { focusResults: true });
    });
    item.append(more);
    if (hit.modality === "image" && current && current.modality === "audio" && current.kind !== "text") {
      item.append(whereButton(hit, name, item));
    }
    return item;
  }

  // "Where is it?": the heat map of the query sound over this picture (POST for an uploaded sound).
  function whereButton(hit, name, item) {
    const query = current;
    const where = el("button", { type: "button", className: "more where", "aria-label": `Where is the sound in ${name}?` });
    where.textContent = "Where is it?";
    where.addEventListener("click", async () => {
      where.disabled = true;
      setStatus(`Looking for the sound in ${name}…`);
      let request;
      if (query.kind === "file") {
        const body = new FormData();
        body.append("file", query.file, query.file.name);
        body.append("image_id", hit.id);
        request = fetch(API + "localize", { method: "POST", body });
      } else {
        request = fetch(API + "localize?" + new URLSearchParams({ audio_id: query.id, image_id: hit.id }).toString());
      }
      try {
        const found = await readJson(await request);
        const img = item.querySelector("img");
        const video = item.querySelector("video");
        if (video) {
          // A video moment: the overlay is drawn on the frame at its start, shown as the player's poster.
          video.pause();
          video.poster = found.overlay;
          video.load();
          video.setAttribute("aria-label", `${name}: where the sound is (best box score ${found.best.score.toFixed(3)})`);
        } else if (img) {
          img.src = found.overlay;
          img.alt = `${name}: where the sound is (best box score ${found.best.score.toFixed(3)})`;
        }
        item.classList.add("localized");
        where.textContent = `Best box ${found.best.score.toFixed(3)}`;
        setStatus(`Best box in ${name}: score ${found.best.score.toFixed(3)} (whole picture ${found.whole_image_score.toFixed(3)})`);
      } catch (err) {
        where.disabled = false;
        showError(err.message || String(err));
      }
    });
    return where;
  }

  // ---- events -------------------------------------------------------------------------------------

  function searchFile(file) {
    if (!file) return;
    textInput.value = "";
    run({ kind: "file", file });
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = textInput.value.trim();
    if (text) {
      fileInput.value = "";
      run({ kind: "text", text });
    } else if (current && current.kind !== "text") {
      run(current); // new filters for the same id or file
    } else if (fileInput.files && fileInput.files[0]) {
      searchFile(fileInput.files[0]);
    } else {
      showError("Type some text, or drop or choose a file.");
    }
  });

  fileInput.addEventListener("change", () => searchFile(fileInput.files && fileInput.files[0]));

  // Drops anywhere on the page search (and never make the browser leave the page to open the file).
  for (const type of ["dragenter", "dragover"]) {
    document.addEventListener(type, (event) => {
      event.preventDefault();
      drop.classList.add("over");
    });
  }
  document.addEventListener("dragleave", (event) => {
    if (!event.relatedTarget) drop.classList.remove("over");
  });
  document.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    const files = event.dataTransfer && event.dataTransfer.files;
    if (files && files.length) searchFile(files[0]);
  });

  window.addEventListener("popstate", () => fromUrl());

  function fromUrl() {
    const params = new URLSearchParams(location.search);
    setFilters(params);
    const id = params.get("id");
    const text = params.get("text");
    if (id) {
      textInput.value = "";
      run({ kind: "id", id }, { push: false });
    } else if (text) {
      textInput.value = text;
      run({ kind: "text", text }, { push: false });
    } else {
      current = null;
      resultsBox.replaceChildren();
      queryLine.hidden = true;
      setStatus("");
    }
  }

  // ---- index info ---------------------------------------------------------------------------------

  function modalityCounts(info) {
    const counts = [];
    const m = info.modalities || info.counts || {};
    if (Array.isArray(m)) {
      for (const x of m) counts.push([x.modality || x.name, x.files ?? x.count ?? x.rows]);
    } else {
      for (const [name, x] of Object.entries(m)) {
        counts.push([name, typeof x === "number" ? x : (x && (x.files ?? x.count ?? x.rows))]);
      }
    }
    return counts.filter(([name, n]) => name && typeof n === "number" && NOUNS[name]);
  }

  function bridgeNames(info) {
    const b = info.bridges || (info.manifest && info.manifest.bridges) || [];
    if (Array.isArray(b)) return b.map((x) => (typeof x === "string" ? x : x && x.name)).filter(Boolean);
    return Object.keys(b);
  }

  async function loadInfo() {
    const box = $("info");
    try {
      const info = await readJson(await fetch(API + "info"));
      const parts = modalityCounts(info).map(([name, n]) => `${n} ${(NOUNS[name] || [name, name])[n === 1 ? 0 : 1]}`);
      const bridges = bridgeNames(info);
      if (bridges.length) parts.push("bridges: " + bridges.join(", "));
      if (info.version) parts.push("avsearch " + info.version);
      box.textContent = parts.join(" · ") || "empty index";
      // The backend choice only where the index has a second one (CAV-MAE tables).
      const backends = (info.backends || []).map((b) => b.backend);
      $("backend-field").hidden = !backends.includes("cavmae");
    } catch (err) {
      box.textContent = "index info unavailable: " + oneLine(err.message || err);
    }
  }

  loadInfo();
  fromUrl();
})();
