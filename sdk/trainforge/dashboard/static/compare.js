// Compare runs: one chart per metric with every selected run overlaid, and
// a table of hyperparameters and final metrics with the differences marked.
"use strict";
(() => {
  const {h, api} = TF;
  const main = document.getElementById("main");
  TF.header("compare");
  const runs = (new URLSearchParams(location.search).get("runs") || "").split(",").filter(Boolean);
  const errors = h("div");
  const picker = h("input", {type: "text", id: "runs-input", placeholder: "run names, separated by commas",
                             value: runs.join(","), size: 60});
  const charts = h("div", {class: "charts", id: "charts"});
  const legendBox = h("div");
  const table = h("table", {class: "grid", id: "differences"});
  const onlyDiff = h("input", {type: "checkbox", id: "only-differences", checked: true});
  main.replaceChildren(h("h1", {text: "Compare runs"}), errors,
    h("div", {class: "panel"}, h("div", {class: "toolbar"}, picker,
      h("button", {class: "primary", text: "Compare", onclick: () => {
        location.search = "?runs=" + picker.value.split(",").map(s => s.trim()).filter(Boolean).map(encodeURIComponent).join(",");
      }}), h("span", {class: "muted", text: "or tick runs on the Runs page"}))),
    h("div", {class: "panel"}, h("h2", {text: "Curves"}), legendBox, charts),
    h("div", {class: "panel"}, h("h2", {}, "Differences ", h("label", {class: "muted"}, onlyDiff, " only rows that differ")), table));

  function legend(list) {
    return h("div", {class: "toolbar"}, ...list.map((r, i) => h("span", {},
      h("span", {class: "legend-swatch c" + (i % 12)}), TF.runLink(r.name), " ", TF.badge(r.phase))));
  }

  function render(data) {
    legendBox.replaceChildren(legend(data.runs));
    charts.replaceChildren();
    const names = data.runs.map(r => r.name);
    const metrics = Object.keys(data.curves).sort();
    if (!metrics.length) charts.appendChild(h("p", {class: "muted", text: "None of these runs reported metrics."}));
    const width = Math.max(320, Math.floor((charts.clientWidth - 16) / Math.max(1, Math.floor(charts.clientWidth / 476))) - 20);
    for (const metric of metrics) {
      const per = data.curves[metric];
      const tables = names.map(n => per[n] ? [per[n].x, per[n].y] : [[], []]);
      const joined = uPlot.join(tables);
      const entry = TF.lineChart(charts, {title: metric, xLabel: "step", yLabel: metric, names, data: joined, width,
                                          points: joined[0].length < 60});
      entry.box.dataset.metric = metric;
      entry.box.dataset.series = String(names.filter(n => per[n]).length);
    }
    const rows = [];
    let section = null;
    for (const d of data.differences) {
      if (onlyDiff.checked && !d.differs) continue;
      if (d.section !== section) {
        section = d.section;
        rows.push(h("tr", {}, h("th", {colspan: names.length + 1, text: section === "metrics" ? "Final metrics" : "Hyperparameters"})));
      }
      rows.push(h("tr", {}, h("td", {class: "wrap", text: d.key}),
        ...d.values.map(v => h("td", {class: (d.differs ? "differs " : "") + (typeof v === "number" ? "num" : "wrap"),
                                      text: TF.num(v)}))));
    }
    if (!rows.length) rows.push(h("tr", {}, h("td", {class: "muted", colspan: names.length + 1, text: "No differences."})));
    table.replaceChildren(h("tr", {}, h("th", {text: ""}), ...names.map((n, i) => h("th", {},
      h("span", {class: "legend-swatch c" + (i % 12)}), n))), ...rows);
    TF.ready();
  }

  async function start() {
    if (!runs.length) { charts.replaceChildren(h("p", {class: "muted", text: "Choose runs to compare."})); TF.ready(); return; }
    let data;
    try { data = await api("/api/compare?width=800&runs=" + runs.map(encodeURIComponent).join(",")); }
    catch (e) { TF.showError(errors, e); return; }
    render(data);
    onlyDiff.addEventListener("change", () => render(data));
  }
  start();
})();
