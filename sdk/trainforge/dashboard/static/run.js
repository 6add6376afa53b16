// One run: summary, status timeline, live curves and logs (server-sent
// events), hyperparameters, artifacts, the spec, and a stop button.
"use strict";
(() => {
  const {h, api} = TF;
  const name = decodeURIComponent(location.pathname.split("/")[2] || "");
  const MAX_LOG_LINES = 5000;
  const main = document.getElementById("main");
  TF.header("runs");
  document.title = name + " · trainforge";

  const title = h("h1", {}, h("span", {id: "run-name", text: name}));
  const errors = h("div");
  const summary = h("dl", {class: "kv", id: "summary"});
  const timeline = h("ol", {class: "timeline", id: "timeline"});
  const charts = h("div", {class: "charts", id: "charts"});
  const logs = h("pre", {class: "logs", id: "logs"});
  const hps = h("table", {class: "grid", id: "hyperparameters"});
  const artifacts = h("ul", {id: "artifacts"});
  const spec = h("pre", {class: "spec", id: "spec"});
  const stopBtn = h("button", {class: "danger hidden", id: "stop", text: "Stop run", onclick: stop});
  main.replaceChildren(title, errors,
    h("div", {class: "cols"},
      h("div", {class: "panel"}, h("h2", {text: "Summary"}), summary),
      h("div", {class: "panel"}, h("h2", {text: "Status timeline"}), timeline)),
    h("div", {class: "panel"}, h("h2", {text: "Metrics"}), charts),
    h("div", {class: "panel"}, h("h2", {text: "Logs"}), logs),
    h("div", {class: "cols"},
      h("div", {class: "panel"}, h("h2", {text: "Hyperparameters"}), hps),
      h("div", {class: "panel"}, h("h2", {text: "Artifacts"}), artifacts)),
    h("div", {class: "panel"}, h("h2", {text: "Spec"}), spec));
  title.appendChild(h("span", {id: "phase"}));
  title.appendChild(stopBtn);

  const plots = new Map();
  let finished = false;

  function renderSummary(s, conditions) {
    title.querySelector("#phase").replaceChildren(TF.badge(s.phase));
    finished = s.finished;
    stopBtn.classList.toggle("hidden", s.finished || !TF.token);
    const items = [["Status", TF.badge(s.phase)], ["Message", s.message || "–"], ["Instance", s.instance],
      ["Attempts", String(s.attempts)], ["Started", TF.when(s.start_time)], ["Ended", TF.when(s.end_time)],
      ["Duration", TF.duration(s.start_time, s.end_time)], ["Billable seconds", TF.num(s.billable_seconds)],
      ["Cost", TF.money(s.cost)], ["Image", s.image]];
    if (s.tuning_job) items.push(["Tuning job", h("span", {}, TF.tuningLink(s.tuning_job), ` (trial ${s.trial})`)]);
    const labels = Object.entries(s.labels || {}).map(([k, v]) => `${k}=${v}`).join(", ");
    if (labels) items.push(["Labels", labels]);
    summary.replaceChildren(...items.flatMap(([k, v]) => [h("dt", {text: k}), h("dd", {}, v)]));
    if (conditions) {
      timeline.replaceChildren(...(conditions.length ? conditions.map(c => h("li", {class: c.type},
        h("b", {text: c.type}), h("span", {class: "when", text: TF.when(c.lastTransitionTime)}),
        c.message ? h("div", {class: "msg", text: c.message}) : null))
        : [h("li", {text: "no transition yet"})]));
    }
  }

  function chartWidth() { return Math.max(320, Math.floor((charts.clientWidth - 16) / Math.max(1, Math.floor(charts.clientWidth / 476))) - 20); }

  let metricsSeq = 0;
  async function loadMetrics() {
    const mine = ++metricsSeq;
    const data = await api(`/api/runs/${encodeURIComponent(name)}/metrics?width=${chartWidth()}`);
    if (mine !== metricsSeq) return;
    const names = Object.keys(data.series);
    if (!names.length && !plots.size) {
      charts.replaceChildren(h("p", {class: "muted", text: finished ? "This run reported no metrics." : "No metrics yet…"}));
      return;
    }
    if (!plots.size) charts.replaceChildren();
    for (const metric of names) {
      const s = data.series[metric];
      const note = `${s.points.toLocaleString("en-US")} points` + (s.points > s.x.length ? ` (${s.x.length} shown, LTTB)` : "")
        + (s.last !== null ? ` · last ${TF.num(s.last)}` : "");
      let entry = plots.get(metric);
      if (!entry) {
        entry = TF.lineChart(charts, {title: metric, xLabel: "step", yLabel: metric, names: [metric], data: [s.x, s.y],
                                      width: chartWidth(), note, points: s.x.length < 60});
        entry.box.dataset.metric = metric;
        plots.set(metric, entry);
      } else {
        entry.update([s.x, s.y]);
        entry.box.querySelector(".note").textContent = note;
      }
      entry.box.dataset.points = String(s.points);
    }
  }

  function appendLogs(lines, skipped) {
    const atBottom = logs.scrollTop + logs.clientHeight >= logs.scrollHeight - 20;
    let text = "";
    if (skipped) text += `… ${skipped} lines skipped (a burst; trainforge logs ${name} has them all)\n`;
    text += lines.join("\n") + (lines.length ? "\n" : "");
    logs.appendChild(document.createTextNode(text));
    while (logs.childNodes.length > 400) logs.removeChild(logs.firstChild);
    if (atBottom) logs.scrollTop = logs.scrollHeight;
    logs.dataset.lines = String(+(logs.dataset.lines || 0) + lines.length);
  }

  async function stop() {
    if (!confirm(`Stop run ${name}? The trainer gets SIGTERM and its grace period to save a checkpoint.`)) return;
    stopBtn.disabled = true;
    try { await TF.post(`/api/runs/${encodeURIComponent(name)}/stop`); stopBtn.textContent = "Stopping…"; }
    catch (e) { TF.showError(errors, e); stopBtn.disabled = false; }
  }

  async function start() {
    let run;
    try { run = await api(`/api/runs/${encodeURIComponent(name)}`); } catch (e) { TF.showError(errors, e); return; }
    renderSummary(run.summary, run.status.conditions || []);
    const hp = Object.entries(run.summary.hyperparameters);
    hps.replaceChildren(h("tr", {}, h("th", {text: "name"}), h("th", {text: "value"})),
      ...(hp.length ? hp.map(([k, v]) => h("tr", {}, h("td", {text: k}), h("td", {class: "wrap", text: v})))
        : [h("tr", {}, h("td", {class: "muted", colspan: 2, text: "none"}))]));
    artifacts.replaceChildren(...(run.artifacts.length ? run.artifacts.map(a => h("li", {},
      h("a", {href: `/api/runs/${encodeURIComponent(name)}/artifacts/${a.kind}`, download: "", text: a.kind}),
      h("span", {class: "muted", text: "  " + a.uri}))) : [h("li", {class: "muted", text: "none yet"})]));
    spec.textContent = JSON.stringify(run.spec, null, 2);
    try { await loadMetrics(); } catch (e) { TF.showError(errors, e); }
    TF.ready();
    const events = new EventSource(`/api/runs/${encodeURIComponent(name)}/events`);
    events.addEventListener("logs", (e) => { const d = JSON.parse(e.data); appendLogs(d.lines, d.skipped); });
    events.addEventListener("status", (e) => { const d = JSON.parse(e.data); renderSummary(d.summary, d.conditions); });
    events.addEventListener("metrics", () => { loadMetrics().catch(err => TF.showError(errors, err)); });
    events.addEventListener("end", () => { events.close(); logs.dataset.ended = "true"; });
  }
  start();
})();
