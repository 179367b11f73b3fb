// TinyOTA dashboard: keeps the server-rendered pages live and runs the actions.
//
// Data comes from one EventSource on /api/events (a snapshot, then changes), shared by all open
// tabs (see share()). Changes go through
// the admin JSON API with fetch/XMLHttpRequest from this origin, which is what the server's
// CSRF check (Origin / Sec-Fetch-Site) lets through.
//
// Rule of this file: it decides nothing about how a device looks. Each device view carries
// "show" and each attempt "show" (fleet/views.py: display, attempt_display): words, badges, row
// classes, which buttons apply, the progress. This script only puts them on the page, so the
// server-rendered first paint and the live updates cannot disagree.
//
// Safety rule for this file: data is only ever written with textContent, .value, or
// setAttribute on non-URL attributes (URLs are built with encodeURIComponent). Never innerHTML:
// a device name or a release note is text, whatever characters it contains.
"use strict";

(() => {
  const $ = (selector, root = document) => root.querySelector(selector);
  const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));
  const page = document.body.dataset.page;

  const state = { devices: new Map(), releases: {}, running: {}, health: null, ready: false };

  // -- small helpers ----------------------------------------------------------------------------

  const deviceHref = (id) => "/devices/" + encodeURIComponent(id);
  const sel = (name, value) => `[${name}="${CSS.escape(value)}"]`;

  // Only for the upload's own progress line: device sizes come worded from the server.
  function formatSize(n) {
    if (n == null) return "";
    if (n < 1024) return `${n} bytes`;
    return n < 1024 * 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1048576).toFixed(1)} MiB`;
  }

  function ago(ts) {
    const s = Math.max(0, Math.round(Date.now() / 1000 - ts));
    if (s < 5) return "just now";
    if (s < 60) return `${s} s ago`;
    if (s < 3600) return `${Math.floor(s / 60)} min ago`;
    if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
    return `${Math.floor(s / 86400)} d ago`;
  }

  function setTime(el, ts) {
    if (!ts) {
      el.removeAttribute("datetime");
      delete el.dataset.ts;
      el.textContent = "never";
      el.removeAttribute("title");
      return;
    }
    el.dataset.ts = String(ts);
    el.dateTime = new Date(ts * 1000).toISOString();
    el.title = new Date(ts * 1000).toLocaleString();
    el.textContent = ago(ts);
  }

  function fields(root, name, fn) {
    for (const el of $$(`[data-field="${name}"]`, root)) fn(el);
  }

  function setText(root, name, text) {
    fields(root, name, (el) => { el.textContent = text; });
  }

  // -- notices and the activity log -------------------------------------------------------------

  let noticeTimer = 0;
  function notice(text, hint) {
    const el = $("#notice");
    el.textContent = hint ? `${text} (${hint})` : text;
    el.hidden = false;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => { el.hidden = true; }, 10000);
  }

  function activity(deviceId, text, kind) {
    const list = $("#activity");
    if (!list) return;
    const item = document.createElement("li");
    item.className = kind || "";
    const time = document.createElement("time");
    time.dateTime = new Date().toISOString();
    time.textContent = new Date().toLocaleTimeString();
    item.append(time, " ");
    if (deviceId) {
      const link = document.createElement("a");
      link.href = deviceHref(deviceId);
      link.textContent = (state.devices.get(deviceId) || { name: deviceId }).name;
      item.append(link, " ");
    }
    item.append(text);
    list.prepend(item);
    while (list.children.length > 100) list.lastElementChild.remove();
    const empty = $("#activity-empty");
    if (empty) empty.hidden = true;
  }

  // -- devices ----------------------------------------------------------------------------------

  function fillDevice(root, v) {
    const show = v.show;
    setText(root, "name", v.name);
    fields(root, "id", (el) => { el.textContent = v.id; el.hidden = v.name === v.id; });
    fields(root, "pick", (el) => { el.value = v.id; el.setAttribute("aria-label", `Select ${v.name}`); });
    fields(root, "online", (el) => { el.textContent = show.online; el.dataset.value = show.online; });
    setText(root, "installed", v.installed || "—");
    setText(root, "target", v.target || "—");
    fields(root, "outdated", (el) => { el.hidden = !show.outdated; });
    fields(root, "state", (el) => { el.textContent = v.state || "—"; el.dataset.value = v.state || ""; });
    fields(root, "progress", (el) => {
      el.hidden = !show.busy;
      el.value = show.progress;
      el.textContent = `${show.progress}%`;
    });
    fields(root, "attempt", (el) => {
      el.textContent = show.attempt || (el.tagName === "DD" ? "none yet" : "");
      el.dataset.value = show.attempt_state;
    });
    fields(root, "last_seen", (el) => setTime(el, v.last_seen));
    setText(root, "last_error", v.last_error || "");
    setText(root, "platform", v.platform || "—");
    fields(root, "kind", (el) => {
      el.dataset.value = v.kind || "";
      if (el.tagName === "DD") el.textContent = show.kind || "—";
      else { el.textContent = show.kind; el.hidden = !show.kind; }
    });
    setText(root, "free_space", show.free_space);
    setText(root, "held", show.held);
    for (const button of $$('[data-action="install"]', root)) button.hidden = !show.installable;
    for (const button of $$('[data-action="cancel"]', root)) button.hidden = !show.updating;
    if (root.tagName === "TR") root.className = show.classes;
  }

  function newRow(v) {
    const template = $("#device-row");
    const table = $("#fleet");
    if (!template || !table) return null;
    const row = template.content.firstElementChild.cloneNode(true);
    row.dataset.device = v.id;
    row.dataset.group = v.group || "";
    fields(row, "name", (el) => { if (el.tagName === "A") el.href = deviceHref(v.id); });
    const key = v.known ? (v.group ? `group:${v.group}` : "ungrouped") : "unknown";
    const body = $(sel("data-section", key), table) || $('[data-section="unknown"]', table);
    for (const placeholder of $$("tr.none", body)) placeholder.remove();
    body.hidden = false;
    body.append(row);
    const empty = $("#fleet-empty");
    if (empty) empty.hidden = true;
    return row;
  }

  function renderDevice(v) {
    state.devices.set(v.id, v);
    const roots = $$(sel("data-device", v.id));
    if (page === "fleet" && !roots.some((el) => el.tagName === "TR")) {
      const row = newRow(v);
      if (row) roots.push(row);
    }
    for (const root of roots) fillDevice(root, v);
  }

  function afterDevices() {
    if (page === "fleet") {
      updateSummary();
      applyFilters();
    }
    if (page === "releases") updateRunning();
  }

  function updateSummary() {
    const all = Array.from(state.devices.values());
    const counts = {
      devices: all.length,
      online: all.filter((v) => v.show.online === "online").length,
      outdated: all.filter((v) => v.show.outdated).length,
      updating: all.filter((v) => v.show.updating).length,
      failed: all.filter((v) => v.show.failed).length,
    };
    for (const [name, count] of Object.entries(counts)) {
      const el = $(sel("data-count", name));
      if (el) el.textContent = String(count);
    }
  }

  // -- the fleet: filters and selection ---------------------------------------------------------

  function applyFilters() {
    const group = $("#filter-group").value;
    const onlyOutdated = $("#filter-outdated").checked;
    const text = $("#filter-text").value.trim().toLowerCase();
    const filtering = Boolean(group || onlyOutdated || text);
    for (const body of $$("#fleet tbody")) {
      let shown = 0;
      for (const row of $$("tr.device", body)) {
        const v = state.devices.get(row.dataset.device);
        const hide = (onlyOutdated && !(v ? v.show.outdated : row.classList.contains("outdated")))
          || (text && !(row.dataset.device.toLowerCase().includes(text)
            || (v && v.name.toLowerCase().includes(text))));
        row.hidden = Boolean(hide);
        if (!hide) shown += 1;
      }
      const otherGroup = group && body.dataset.group !== group;
      body.hidden = Boolean(otherGroup || (shown === 0 && (filtering || body.dataset.section === "unknown")));
    }
    const query = new URLSearchParams();
    if (group) query.set("group", group);
    if (onlyOutdated) query.set("outdated", "1");
    const url = query.toString() ? `/?${query}` : "/";
    if (url !== location.pathname + location.search) history.replaceState(null, "", url);
    updateSelection();
  }

  function selectedIds() {
    return $$('#fleet tr.device:not([hidden]) input[name="device"]:checked')
      .filter((box) => !box.closest("tbody").hidden)
      .map((box) => box.value);
  }

  function updateSelection() {
    const ids = selectedIds();
    $("#selection").hidden = ids.length === 0;
    $("#selection-count").textContent = `${ids.length} selected`;
  }

  // -- the confirmation dialog ------------------------------------------------------------------

  function ask({ title, text, devices, versions, note, ok }) {
    const dialog = $("#confirm");
    $("#confirm-title").textContent = title;
    $("#confirm-text").textContent = text;
    const list = $("#confirm-list");
    list.replaceChildren();
    for (const v of devices.slice(0, 12)) {
      const item = document.createElement("li");
      item.textContent = `${v.name} — runs ${v.installed || "an unknown version"}`;
      list.append(item);
    }
    if (devices.length > 12) {
      const more = document.createElement("li");
      more.textContent = `and ${devices.length - 12} more`;
      list.append(more);
    }
    const row = $("#confirm-version-row");
    const select = $("#confirm-version");
    select.replaceChildren();
    row.hidden = !versions;
    if (versions) {
      const newest = versions[versions.length - 1];
      select.append(new Option(`latest (${newest.version})`, ""));
      for (const r of versions.slice(0, -1).reverse()) {
        select.append(new Option(`${r.version} — older release (roll back)`, r.version));
      }
    }
    $("#confirm-note").textContent = note || "";
    $("#confirm-ok").textContent = ok;
    dialog.returnValue = "";
    dialog.showModal();
    return new Promise((resolve) => {
      dialog.addEventListener("close", () => {
        resolve(dialog.returnValue === "ok" ? { version: select.value || null } : null);
      }, { once: true });
    });
  }

  // -- actions through the JSON API -------------------------------------------------------------

  async function api(method, path, body) {
    const options = { method, credentials: "same-origin", headers: {} };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    const response = await fetch(path, options);
    let data = null;
    try {
      data = await response.json();
    } catch (_) {
      data = null;
    }
    if (!response.ok) {
      const error = new Error((data && data.error) || `${response.status} ${response.statusText}`);
      error.hint = data && data.hint;
      throw error;
    }
    return data;
  }

  function reportFailure(error, deviceId) {
    notice(error.message, error.hint);
    activity(deviceId || null, `refused: ${error.message}`, "bad");
  }

  async function install(ids, group) {
    const devices = ids.map((id) => state.devices.get(id)).filter(Boolean);
    const images = new Set(devices.map((v) => v.image).filter(Boolean));
    if (images.size === 0) {
      notice("These devices are in no group, so they have no image to install.");
      return;
    }
    let versions = null;
    if (images.size === 1) {
      const [image] = images;
      versions = state.releases[image] || [];
      if (versions.length === 0) {
        notice(`No releases of ${image} yet — upload one on the Releases page.`);
        return;
      }
    }
    const name = group ? `group ${group}` : devices.length === 1 ? devices[0].name : `${devices.length} devices`;
    const answer = await ask({
      title: `Install on ${name}?`,
      text: "Each device is told over MQTT, downloads the image with its own credentials and reports "
        + "back; its row shows the progress and the outcome. Devices that already run the release are left alone.",
      devices,
      versions,
      note: versions ? "Choosing an older release rolls the devices back to it."
        : "The devices run different images: each gets the latest release of its own.",
      ok: "Install",
    });
    if (!answer) return;
    // One request for all of them (POST /api/install): a group's outdated devices, or the ticked rows.
    const body = answer.version ? { version: answer.version } : {};
    if (group) body.group = group;
    else body.devices = ids;
    try {
      const result = await api("POST", "/api/install", body);
      const told = new Set(result.attempts.map((a) => a.device));
      if (group && told.size === 0) {
        activity(null, `every device of group ${group} already runs that release`, "info");
      }
      for (const id of group ? [] : ids) {
        if (!told.has(id)) activity(id, "already runs that release: nothing to install", "info");
      }
    } catch (error) {
      reportFailure(error, ids.length === 1 ? ids[0] : null);
    }
  }

  // -- rollouts (the Rollouts page) -------------------------------------------------------------

  function renderRollout(r) {
    if (page !== "rollouts") return;
    const root = $(sel("data-rollout", r.id));
    if (!root) {
      window.location.reload();  // a new rollout: the server renders its section
      return;
    }
    root.dataset.state = r.state;
    setText(root, "state", r.state);
    setText(root, "wave", String(r.wave));
    fields(root, "reason", (el) => { el.textContent = r.reason || ""; el.hidden = !r.reason; });
    for (const w of r.waves) {
      const row = $(sel("data-wave", String(w.wave)), root);
      if (!row) continue;
      for (const key of ["succeeded", "failed", "announced", "cancelled"]) setText(row, key, String(w[key]));
      setText(row, "waiting", String(w.queued));
    }
    // Which controls apply is the server's rule (core/rollout.py: controls), as for the API's 409.
    for (const button of $$('button[data-action="rollout"]', root)) {
      button.disabled = !r.controls[button.dataset.op];
    }
  }

  async function controlRollout(id, op) {
    if (op === "abort") {
      const answer = await ask({
        title: `Abort rollout ${id}?`,
        text: "No device is told anything more by this rollout; announcements no device has started are "
          + "withdrawn. Devices already updating finish. An aborted rollout cannot be resumed.",
        devices: [], versions: null, note: "", ok: "Abort rollout",
      });
      if (!answer) return;
    }
    try {
      renderRollout(await api("POST", `/api/rollouts/${encodeURIComponent(id)}/${op}`));
    } catch (error) {
      reportFailure(error, null);
    }
  }

  async function cancel(ids, group) {
    const devices = ids.map((id) => state.devices.get(id)).filter(Boolean);
    const answer = await ask({
      title: group ? `Cancel pending updates in group ${group}?` : "Cancel the pending update?",
      text: "The announcement is withdrawn (its retained MQTT message is cleared) and the devices are held: "
        + "nothing new is announced to them until the next install. A device already flashing finishes on its own.",
      devices,
      versions: null,
      note: "",
      ok: "Cancel update",
    });
    if (!answer) return;
    const targets = group ? [["groups", group]] : ids.map((id) => ["devices", id]);
    for (const [kind, name] of targets) {
      try {
        const result = await api("POST", `/api/${kind}/${encodeURIComponent(name)}/cancel`);
        if (result.cancelled.length === 0) {
          activity(kind === "devices" ? name : null, "had nothing pending to cancel", "info");
        }
      } catch (error) {
        reportFailure(error, kind === "devices" ? name : null);
      }
    }
  }

  function groupMembers(group) {
    return Array.from(state.devices.values()).filter((v) => v.group === group).map((v) => v.id);
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    const action = button.dataset.action;
    const owner = button.closest("[data-device]");
    const id = owner ? owner.dataset.device : null;
    if (action === "install" && id) install([id]);
    else if (action === "cancel" && id) cancel([id]);
    else if (action === "install-group") install(groupMembers(button.dataset.group), button.dataset.group);
    else if (action === "cancel-group") cancel(groupMembers(button.dataset.group), button.dataset.group);
    else if (action === "install-selected") install(selectedIds());
    else if (action === "rollout") controlRollout(button.closest("[data-rollout]").dataset.rollout, button.dataset.op);
    else if (action === "cancel-selected") cancel(selectedIds());
    else if (action === "clear-selection") {
      for (const box of $$('input[name="device"]')) box.checked = false;
      $("#select-all").checked = false;
      updateSelection();
    }
  });

  // -- attempts: the activity log (fleet) and the history table (device page) -------------------

  function renderAttempt(a) {
    if (page === "fleet") activity(a.device, a.show.activity, a.show.kind);
    const table = $(sel("data-history", a.device));
    if (!table) return;
    let row = $(sel("data-attempt", a.id), table);
    if (!row) {
      row = $("#attempt-row").content.firstElementChild.cloneNode(true);
      row.dataset.attempt = a.id;
      $("tbody", table).prepend(row);
      $("#history-empty").hidden = true;
    }
    fields(row, "created", (el) => setTime(el, a.created));
    fields(row, "updated", (el) => setTime(el, a.updated));
    setText(row, "from_version", a.from_version || "—");
    setText(row, "version", a.version);
    fields(row, "state", (el) => {
      el.textContent = a.show.outcome;
      el.dataset.value = a.state;
    });
    setText(row, "error", a.error || "");
  }

  // -- releases: which devices run each, and the upload form ------------------------------------

  // The server says which devices run each release (snapshot and "running" events); this
  // only prints it.
  function updateRunning() {
    for (const cell of $$("td[data-runs]")) {
      const ids = (state.running[cell.dataset.runs] || {})[cell.dataset.version] || [];
      const parts = [];
      ids.forEach((id, n) => {
        if (n) parts.push(", ");
        const link = document.createElement("a");
        link.href = deviceHref(id);
        link.textContent = id;
        parts.push(link);
      });
      if (ids.length === 0) {
        const none = document.createElement("span");
        none.className = "none";
        none.textContent = "no device";
        parts.push(none);
      }
      cell.replaceChildren(...parts);
    }
  }

  function setupUpload() {
    const form = $("#upload");
    if (!form) return;
    const progress = $("#up-progress");
    const status = $("#up-status");
    const submit = $("#up-submit");
    const showError = (message, hint) => {
      $("#up-error-message").textContent = message;
      $("#up-error-hint").textContent = hint || "";
      $("#up-error").hidden = false;
      status.textContent = "";
      progress.hidden = true;
    };
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      $("#up-error").hidden = true;
      const image = form.elements.image.value;
      const version = form.elements.version.value.trim();
      const file = form.elements.file.files[0];
      if (!version) return showError("enter the version of this build", "for example 1.4.0");
      if (!file) return showError("choose the firmware file to upload", "the .bin the build produced");
      const max = Number(form.dataset.maxBytes);
      if (file.size > max) {
        // The server refuses this too, but only after the browser started sending it.
        return showError(`release is larger than the ${max} byte limit`,
          "raise server.limits.max_upload_bytes if this image is really that big");
      }
      const query = new URLSearchParams({ image, version });
      const notes = form.elements.notes.value.trim();
      if (notes) query.set("notes", notes);
      if (form.elements.replace.checked) query.set("replace", "1");
      if (form.elements.force.checked) query.set("force", "1");
      const xhr = new XMLHttpRequest();  // fetch() cannot report upload progress
      xhr.open("POST", `/api/releases?${query}`);
      xhr.setRequestHeader("Content-Type", "application/octet-stream");
      xhr.upload.addEventListener("progress", (e) => {
        if (!e.lengthComputable) return;
        progress.value = Math.round((100 * e.loaded) / e.total);
        status.textContent = `${progress.value}% of ${formatSize(e.total)}`;
      });
      xhr.addEventListener("load", () => {
        submit.disabled = false;
        let data = null;
        try {
          data = JSON.parse(xhr.responseText);
        } catch (_) {
          data = null;
        }
        if (xhr.status === 201 && data) {
          status.textContent = "released";
          location.assign(`/releases?released=${encodeURIComponent(`${data.image}/${data.version}`)}`);
        } else {
          showError((data && data.error) || `upload failed: ${xhr.status} ${xhr.statusText}`, data && data.hint);
        }
      });
      xhr.addEventListener("error", () => {
        submit.disabled = false;
        showError("the upload was cut off", "check that the server is running, then try again");
      });
      submit.disabled = true;
      progress.value = 0;
      progress.hidden = false;
      status.textContent = "uploading…";
      xhr.send(file);
      return undefined;
    });
  }

  // -- the live stream --------------------------------------------------------------------------

  function setLive(word, stateName) {
    const el = $("#live");
    el.textContent = word;
    el.dataset.state = stateName;
  }

  function setHealth(health) {
    state.health = health;
    const el = $("#mqtt");
    el.textContent = `MQTT ${health.mqtt}`;
    el.dataset.state = health.mqtt;
  }

  const handlers = {
    snapshot: (data) => {
      state.releases = data.releases;
      state.running = data.running;
      data.devices.forEach(renderDevice);
      setHealth(data.health);
      afterDevices();
      state.ready = true;
      document.body.dataset.live = "1";  // tests and curious readers: the first snapshot is in
    },
    device: (v) => { renderDevice(v); afterDevices(); },
    attempt: renderAttempt,
    health: setHealth,
    rollout: (data) => renderRollout(data.rollout),
    releases: (data) => {
      state.releases = data.releases;
      data.devices.forEach(renderDevice);
      afterDevices();
      const changed = $("#releases-changed");
      if (changed) changed.hidden = false;
    },
    running: (data) => {
      state.running = data;
      if (page === "releases") updateRunning();
    },
    live: ([word, stateName]) => setLive(word, stateName),
  };

  // A browser keeps about six connections per server, and each EventSource holds one: six open
  // tabs would leave none for the pages themselves. So one tab, the holder of a Web Lock, keeps
  // the stream and passes every event on to the others over a BroadcastChannel. When it closes,
  // the lock goes to another tab, which opens the stream (and its fresh snapshot) itself.
  const SHARED = "tinyota-events";

  function share() {
    if (!("locks" in navigator) || typeof BroadcastChannel === "undefined") {
      connect(null);
      return;
    }
    const channel = new BroadcastChannel(SHARED);
    let leading = false;
    channel.addEventListener("message", (e) => {
      const msg = e.data;
      if (msg.hello) {  // a tab that just opened wants what we have
        if (leading && state.ready) {
          channel.postMessage({ name: "snapshot", data: { releases: state.releases, running: state.running,
            devices: Array.from(state.devices.values()), health: state.health } });
          channel.postMessage({ name: "live", data: [$("#live").textContent, $("#live").dataset.state] });
        }
        return;
      }
      if (!leading && handlers[msg.name]) handlers[msg.name](msg.data);
    });
    setLive("connecting…", "connecting");
    channel.postMessage({ hello: true });
    // The callback's promise never settles: the lock is held until this tab goes away.
    navigator.locks.request(SHARED, () => {
      leading = true;
      connect(channel);
      return new Promise(() => {});
    });
  }

  function connect(channel) {
    const source = new EventSource("/api/events");
    const live = (word, stateName) => {
      setLive(word, stateName);
      if (channel) channel.postMessage({ name: "live", data: [word, stateName] });
    };
    live("connecting…", "connecting");
    source.addEventListener("open", () => live("live", "live"));
    source.addEventListener("error", () => {
      if (source.readyState === EventSource.CLOSED) {
        // The server answered with an error (e.g. busy): EventSource gives up, so we retry.
        live("disconnected — retrying", "down");
        setTimeout(() => connect(channel), 5000);
      } else {
        live("reconnecting…", "down");
      }
    });
    for (const name of ["snapshot", "device", "attempt", "health", "rollout", "releases", "running"]) {
      source.addEventListener(name, (e) => {
        const data = JSON.parse(e.data);
        handlers[name](data);
        if (channel) channel.postMessage({ name, data });
      });
    }
  }

  // -- start ------------------------------------------------------------------------------------

  for (const el of $$("time[data-field][datetime]")) {
    const ts = Date.parse(el.dateTime) / 1000;
    if (!Number.isNaN(ts)) setTime(el, ts);
  }
  setInterval(() => {
    for (const el of $$("time[data-ts]")) el.textContent = ago(Number(el.dataset.ts));
  }, 5000);

  if (page === "fleet") {
    for (const id of ["#filter-group", "#filter-outdated", "#filter-text"]) {
      $(id).addEventListener("input", applyFilters);
    }
    $("#filters").addEventListener("submit", (event) => event.preventDefault());
    $("#fleet").addEventListener("change", (event) => {
      if (event.target.id === "select-all") {
        for (const box of $$('#fleet tr.device:not([hidden]) input[name="device"]')) {
          if (!box.closest("tbody").hidden) box.checked = event.target.checked;
        }
      }
      updateSelection();
    });
    applyFilters();
  }
  setupUpload();
  share();
})();
