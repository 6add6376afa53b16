// The runs table: server-side filter, sort, pagination and column choice;
// state lives in the URL so a filtered view can be shared or reloaded.
"use strict";
(() => {
  const {h, api} = TF;
  const PHASES = ["Pending", "Queued", "Staging", "Training", "Uploading", "Completed", "Failed", "Stopped"];
  const params = new URLSearchParams(location.search);
  const state = {
    status: new Set((params.get("status") || "").split(",").filter(Boolean)),
    q: params.get("q") || "", label: params.get("label") || "", tuning: params.get("tuning") || "",
    sort: params.get("sort") || "-start_time", offset: +(params.get("offset") || 0), limit: +(params.get("limit") || 50),
    columns: params.get("columns"), selected: new Set(),
  };
  let catalog = null;
  const main = document.getElementById("main");
  TF.header("runs");

  const statusChips = h("span", {class: "chips", id: "status-filter"});
  const search = h("input", {type: "search", id: "q", placeholder: "name, hyperparameter, label…", value: state.q});
  const label = h("input", {type: "text", id: "label", placeholder: "label key=value", value: state.label});
  const tuning = h("select", {id: "tuning"}, h("option", {value: "", text: "all runs"}));
  const columnsBox = h("div");
  const columnsMenu = h("details", {class: "columns"}, h("summary", {text: "Columns"}), columnsBox);
  const compareBtn = h("button", {class: "primary", id: "compare", disabled: true, text: "Compare selected",
                                  onclick: () => { location.href = "/compare?runs=" + [...state.selected].map(encodeURIComponent).join(","); }});
  const count = h("span", {class: "muted", id: "count"});
  const table = h("table", {class: "grid", id: "runs"});
  const pager = h("div", {class: "pager"});
  const errors = h("div");
  main.replaceChildren(h("h1", {text: "Runs"}), errors,
    h("div", {class: "panel"},
      h("div", {class: "toolbar"}, h("label", {text: "Status"}), statusChips, search, label,
        h("span", {}, h("label", {text: "Tuning job "}), tuning), columnsMenu, compareBtn, count),
      h("div", {class: "scroll"}, table), pager));

  for (const phase of PHASES) {
    const chip = h("span", {class: "chip" + (state.status.has(phase) ? " on" : ""), "data-phase": phase, text: phase,
      onclick: () => { state.status.has(phase) ? state.status.delete(phase) : state.status.add(phase);
                       chip.classList.toggle("on"); state.offset = 0; load(); }});
    statusChips.appendChild(chip);
  }
  let typing = null;
  const later = (fn) => { clearTimeout(typing); typing = setTimeout(fn, 250); };
  search.addEventListener("input", () => later(() => { state.q = search.value; state.offset = 0; load(); }));
  label.addEventListener("input", () => later(() => { state.label = label.value; state.offset = 0; load(); }));
  tuning.addEventListener("change", () => { state.tuning = tuning.value; state.offset = 0; load(); });

  function defaultColumns() {
    return ["instance", "billable_seconds"].concat(catalog.hyperparameters.slice(0, 4).map(n => "hp:" + n),
                                                   catalog.metrics.slice(0, 3).map(n => "metric:" + n));
  }
  function columns() { return state.columns !== null ? state.columns.split(",").filter(Boolean) : defaultColumns(); }
  function columnTitle(c) {
    if (c.startsWith("hp:")) return c.slice(3);
    if (c.startsWith("metric:")) return c.slice(7);
    return {instance: "instance", billable_seconds: "billable s", cost: "cost", attempts: "attempts",
            end_time: "ended", tuning_job: "tuning job"}[c] || c;
  }

  function buildColumnMenu() {
    const chosen = new Set(columns());
    const box = (c) => h("label", {}, h("input", {type: "checkbox", checked: chosen.has(c), "data-column": c, onchange: (e) => {
      const now = columns().filter(x => x !== c);
      if (e.target.checked) now.push(c);
      state.columns = now.join(","); load();
    }}), " ", columnTitle(c));
    columnsBox.replaceChildren(
      h("h3", {text: "Run"}), ...["instance", "billable_seconds", "cost", "attempts", "end_time", "tuning_job"].map(box),
      h("h3", {text: "Hyperparameters"}), ...catalog.hyperparameters.map(n => box("hp:" + n)),
      h("h3", {text: "Final metrics"}), ...catalog.metrics.map(n => box("metric:" + n)));
  }

  function syncUrl() {
    const p = new URLSearchParams();
    if (state.status.size) p.set("status", [...state.status].join(","));
    for (const k of ["q", "label", "tuning"]) if (state[k]) p.set(k, state[k]);
    if (state.sort !== "-start_time") p.set("sort", state.sort);
    if (state.offset) p.set("offset", state.offset);
    if (state.limit !== 50) p.set("limit", state.limit);
    if (state.columns !== null) p.set("columns", state.columns);
    history.replaceState(null, "", p.toString() ? "?" + p : location.pathname);
  }

  function sortHeader(column, title) {
    const key = state.sort.replace(/^-/, "");
    const desc = state.sort.startsWith("-");
    return h("th", {class: "sortable", title: "sort by " + title, "data-sort": column, onclick: () => {
      state.sort = key === column && desc ? column : "-" + column; state.offset = 0; load();
    }}, title, key === column ? h("span", {class: "arrow", text: desc ? "▼" : "▲"}) : null);
  }

  let seq = 0;
  async function load() {
    const mine = ++seq;
    syncUrl();
    const cols = columns();
    const p = new URLSearchParams({sort: state.sort, offset: state.offset, limit: state.limit, columns: cols.join(",")});
    if (state.status.size) p.set("status", [...state.status].join(","));
    for (const k of ["q", "label", "tuning"]) if (state[k]) p.set(k, state[k]);
    let data;
    try { data = await api("/api/runs?" + p); } catch (e) { TF.showError(errors, e); return; }
    if (mine !== seq) return;
    errors.replaceChildren();
    render(data, cols);
  }

  function render(data, cols) {
    const head = h("tr", {}, h("th", {text: ""}), sortHeader("name", "run"), sortHeader("phase", "status"),
                   sortHeader("start_time", "started"), h("th", {text: "duration"}),
                   ...cols.map(c => sortHeader(c, columnTitle(c))));
    const body = document.createDocumentFragment();
    for (const row of data.rows) {
      const check = h("input", {type: "checkbox", checked: state.selected.has(row.name), "data-run": row.name, onchange: (e) => {
        e.target.checked ? state.selected.add(row.name) : state.selected.delete(row.name);
        compareBtn.disabled = state.selected.size < 1;
        compareBtn.textContent = state.selected.size ? `Compare ${state.selected.size} selected` : "Compare selected";
      }});
      body.appendChild(h("tr", {"data-name": row.name},
        h("td", {}, check), h("td", {}, TF.runLink(row.name),
          row.tuning_job ? h("span", {class: "muted", text: "  trial " + row.trial}) : null),
        h("td", {}, TF.badge(row.phase)), h("td", {text: TF.when(row.start_time)}),
        h("td", {class: "num", text: TF.duration(row.start_time, row.end_time)}),
        ...row.cells.map((v, i) => cols[i] === "tuning_job" && v ? h("td", {}, TF.tuningLink(v)) :
          h("td", {class: typeof v === "number" || (v !== null && v !== "" && !isNaN(+v)) ? "num" : "", title: v === null ? null : String(v),
                   text: cols[i] === "cost" ? TF.money(v) : cols[i] === "end_time" ? TF.when(v) : TF.num(v)}))));
    }
    if (!data.rows.length) body.appendChild(h("tr", {}, h("td", {colspan: cols.length + 5, class: "muted",
      text: data.total === 0 && !state.status.size && !state.q && !state.label && !state.tuning
        ? "No runs yet: submit one with `trainforge submit` or `trainforge quickstart`." : "No run matches these filters."})));
    table.replaceChildren(h("thead", {}, head), h("tbody", {}, body));
    count.textContent = `${data.total.toLocaleString("en-US")} run${data.total === 1 ? "" : "s"}`;
    const last = Math.min(data.offset + data.limit, data.total);
    pager.replaceChildren(
      h("button", {id: "prev", disabled: data.offset === 0, text: "← Previous",
                   onclick: () => { state.offset = Math.max(0, state.offset - state.limit); load(); }}),
      h("span", {text: data.total ? `${data.offset + 1}–${last} of ${data.total.toLocaleString("en-US")}` : ""}),
      h("button", {id: "next", disabled: last >= data.total, text: "Next →",
                   onclick: () => { state.offset += state.limit; load(); }}));
    TF.ready();
  }

  async function start() {
    try { catalog = await api("/api/columns"); } catch (e) { TF.showError(errors, e); return; }
    for (const name of catalog.tuning_jobs) tuning.appendChild(h("option", {value: name, text: name, selected: name === state.tuning}));
    buildColumnMenu();
    await load();
    setInterval(() => { if (!document.hidden) load(); }, 5000);
  }
  start();
})();
