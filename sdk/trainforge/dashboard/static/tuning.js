// Tuning jobs: the list, and one job's page — objective per trial with the
// best so far, parallel coordinates coloured by the objective, the trial
// table. A trial that did not complete has no objective: it is drawn and
// listed as stopped/failed, never as zero.
"use strict";
(() => {
  const {h, api} = TF;
  const main = document.getElementById("main");
  TF.header("tuning");
  const name = decodeURIComponent(location.pathname.split("/")[2] || "");
  const errors = h("div");

  async function list() {
    const table = h("table", {class: "grid", id: "tuning-jobs"});
    main.replaceChildren(h("h1", {text: "Tuning jobs"}), errors, h("div", {class: "panel"}, table));
    let data;
    try { data = await api("/api/tuning"); } catch (e) { TF.showError(errors, e); return; }
    if (!data.available) { table.replaceChildren(h("tr", {}, h("td", {class: "muted", text: "Tuning jobs run on the local backends (process, container)."}))); TF.ready(); return; }
    table.replaceChildren(h("tr", {}, ...["tuning job", "status", "objective", "strategy", "completed", "running", "stopped", "failed", "best", "started"].map(t => h("th", {text: t}))),
      ...data.jobs.map(j => h("tr", {}, h("td", {}, TF.tuningLink(j.name)), h("td", {}, TF.badge(j.phase)),
        h("td", {text: `${j.type === "Maximize" ? "max" : "min"} ${j.objective}`}), h("td", {text: j.strategy}),
        h("td", {class: "num", text: j.trials.completed}), h("td", {class: "num", text: j.trials.running + j.trials.pending}),
        h("td", {class: "num", text: j.trials.stopped}), h("td", {class: "num", text: j.trials.failed}),
        h("td", {class: "num", text: j.best ? TF.num(j.best.objective) : "–"}), h("td", {text: TF.when(j.start_time)}))));
    if (!data.jobs.length) table.appendChild(h("tr", {}, h("td", {colspan: 10, class: "muted", text: "No tuning jobs yet: `trainforge quickstart --tune` starts one."})));
    TF.ready();
  }

  // Viridis-like ramp: worse objective dark purple, better bright yellow.
  const RAMP = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
  function ramp(t) {
    t = Math.min(1, Math.max(0, t)) * (RAMP.length - 1);
    const i = Math.min(RAMP.length - 2, Math.floor(t)), f = t - i;
    const c = RAMP[i].map((a, k) => Math.round(a + (RAMP[i + 1][k] - a) * f));
    return `rgb(${c[0]},${c[1]},${c[2]})`;
  }

  function parallel(canvas, data) {
    const dpr = window.devicePixelRatio || 1;
    const W = canvas.clientWidth, H = canvas.clientHeight;
    canvas.width = W * dpr; canvas.height = H * dpr;
    const ctx = canvas.getContext("2d");
    ctx.scale(dpr, dpr);
    ctx.font = "12px system-ui, sans-serif";
    const params = data.parameters;
    const axes = params.map(p => ({label: p.name, p})).concat([{label: data.objective.metric, objective: true}]);
    const top = 34, bottom = H - 46, left = 70, right = W - 90;
    const x = (i) => left + (right - left) * (axes.length === 1 ? 0.5 : i / (axes.length - 1));
    const done = data.trials.filter(t => t.objective !== null);
    const objs = done.map(t => t.objective);
    const lo = Math.min(...objs), hi = Math.max(...objs);
    const maximize = data.objective.type === "Maximize";
    for (const a of axes) {
      if (a.objective) { a.min = lo; a.max = hi; a.log = false; continue; }
      const p = a.p;
      if (p.type === "Categorical") { a.cats = p.values.map(String); continue; }
      a.log = p.scale === "Log" && p.min > 0;
      a.min = p.min; a.max = p.max;
    }
    const pos = (a, v) => {  // 0 (bottom) .. 1 (top), or null
      if (v === null || v === undefined) return null;
      if (a.cats) { const i = a.cats.indexOf(String(v)); return i < 0 ? null : (a.cats.length === 1 ? 0.5 : i / (a.cats.length - 1)); }
      let n = +v, mn = a.min, mx = a.max;
      if (a.log) { n = Math.log(n); mn = Math.log(mn); mx = Math.log(mx); }
      return mx === mn ? 0.5 : (n - mn) / (mx - mn);
    };
    const y = (t) => bottom - (bottom - top) * t;
    const STOPPED_Y = bottom + 22;
    // Trials that did not complete first, grey, ending on the "no objective" row.
    const ordered = data.trials.filter(t => t.objective === null).concat(
      done.slice().sort((a, b) => maximize ? a.objective - b.objective : b.objective - a.objective));
    for (const t of ordered) {
      ctx.beginPath();
      let started = false;
      axes.forEach((a, i) => {
        const v = a.objective ? t.objective : t.hyperparameters[a.p.name];
        const p = pos(a, v);
        const yy = a.objective && t.objective === null ? STOPPED_Y : (p === null ? null : y(p));
        if (yy === null) return;
        started ? ctx.lineTo(x(i), yy) : ctx.moveTo(x(i), yy);
        started = true;
      });
      if (t.objective === null) { ctx.strokeStyle = "rgba(150,150,150,0.55)"; ctx.setLineDash([4, 3]); ctx.lineWidth = 1; }
      else {
        const q = hi === lo ? 1 : (t.objective - lo) / (hi - lo);
        ctx.strokeStyle = ramp(maximize ? q : 1 - q); ctx.setLineDash([]); ctx.lineWidth = 1.6;
      }
      ctx.globalAlpha = data.trials.length > 300 ? 0.55 : 0.9;
      ctx.stroke();
    }
    ctx.globalAlpha = 1; ctx.setLineDash([]);
    ctx.fillStyle = "#1d2430"; ctx.strokeStyle = "#3a4556"; ctx.lineWidth = 1;
    axes.forEach((a, i) => {
      const xx = x(i);
      ctx.beginPath(); ctx.moveTo(xx, top); ctx.lineTo(xx, bottom); ctx.stroke();
      ctx.textAlign = "center"; ctx.font = "600 12px system-ui, sans-serif";
      ctx.fillText(a.label.length > 28 ? a.label.slice(0, 27) + "…" : a.label, xx, top - 14);
      ctx.font = "11px system-ui, sans-serif"; ctx.textAlign = "right";
      const ticks = a.cats ? a.cats.map((c, k) => [c, a.cats.length === 1 ? 0.5 : k / (a.cats.length - 1)])
        : (a.min === undefined || !isFinite(a.min)) ? [] : [0, 0.5, 1].map(f => {
          const v = a.log ? Math.exp(Math.log(a.min) + f * (Math.log(a.max) - Math.log(a.min))) : a.min + f * (a.max - a.min);
          return [TF.num(+v.toPrecision(3)), f];
        });
      for (const [label, f] of ticks) ctx.fillText(String(label).slice(0, 14), xx - 5, y(f) + 4);
      if (a.objective) { ctx.fillStyle = "#8a8f98"; ctx.fillText("stopped / failed", xx - 5, STOPPED_Y + 4); ctx.fillStyle = "#1d2430"; }
    });
    // Colour key.
    const kx = right + 30;
    for (let k = 0; k <= 40; k++) { ctx.fillStyle = ramp(1 - k / 40); ctx.fillRect(kx, top + (bottom - top) * k / 40, 12, (bottom - top) / 40 + 1); }
    ctx.fillStyle = "#1d2430"; ctx.textAlign = "left";
    ctx.fillText(maximize ? "best" : "best", kx - 2, top - 4);
    ctx.fillText("worst", kx - 6, bottom + 14);
  }

  async function detail() {
    document.title = name + " · tuning · trainforge";
    const title = h("h1", {}, h("span", {text: name}), h("span", {id: "phase"}));
    const stopBtn = h("button", {class: "danger hidden", id: "stop", text: "Stop tuning job", onclick: async () => {
      if (!confirm(`Stop tuning job ${name} and its running trials?`)) return;
      stopBtn.disabled = true;
      try { await TF.post(`/api/tuning/${encodeURIComponent(name)}/stop`); stopBtn.textContent = "Stopping…"; }
      catch (e) { TF.showError(errors, e); stopBtn.disabled = false; }
    }});
    title.appendChild(stopBtn);
    const stats = h("div", {id: "stats"});
    const progress = h("div", {id: "progress"});
    const canvas = h("canvas", {class: "pc", id: "parallel"});
    const table = h("table", {class: "grid", id: "trials"});
    main.replaceChildren(title, errors, h("div", {class: "panel"}, stats),
      h("div", {class: "cols"},
        h("div", {class: "panel"}, h("h2", {text: "Objective per trial, best so far"}), progress),
        h("div", {class: "panel"}, h("h2", {text: "Parameters (parallel coordinates, coloured by objective)"}), canvas)),
      h("div", {class: "panel"}, h("h2", {text: "Trials"}), h("div", {class: "scroll"}, table)));
    let plot = null;
    let renderSeq = 0;

    async function load() {
      let d;
      try { d = await api(`/api/tuning/${encodeURIComponent(name)}`); } catch (e) { TF.showError(errors, e); return null; }
      title.querySelector("#phase").replaceChildren(TF.badge(d.phase));
      const ended = ["Completed", "Failed", "Stopped"].includes(d.phase);
      stopBtn.classList.toggle("hidden", ended || !TF.token);
      const c = d.counts;
      const stat = (v, label) => h("span", {class: "stat"}, h("b", {text: v}), h("span", {text: label}));
      stats.replaceChildren(
        stat(`${d.objective.type === "Maximize" ? "max" : "min"} ${d.objective.metric}`, "objective"),
        stat(d.best ? TF.num(d.best.objective) : "–", d.best ? "best (" + d.best.name + ")" : "best"),
        stat(d.trials.length.toLocaleString("en-US"), "trials"), stat(String(c.completed || 0), "completed"),
        stat(String((c.running || 0) + (c.pending || 0)), "running"), stat(String(c.stopped || 0), "stopped"),
        stat(String(c.failed || 0), "failed"), stat(d.strategy, "strategy"),
        d.message ? h("div", {class: "muted", text: d.message}) : null);
      const xs = d.trials.map(t => t.number);
      const objective = d.trials.map(t => t.objective);
      const notDone = d.trials.filter(t => t.objective === null && t.end_time).length;
      const note = notDone ? `${notDone} trial${notDone === 1 ? "" : "s"} stopped or failed: no objective, not plotted` : null;
      if (!plot) {
        plot = TF.lineChart(progress, {title: d.objective.metric, xLabel: "trial", yLabel: d.objective.metric,
          names: ["trial objective", "best so far"], data: [xs, objective, d.best_so_far], note, width: Math.max(320, progress.clientWidth - 20),
          seriesOpts: [{paths: () => null, points: {show: true, size: 7, fill: TF.PALETTE[0]}, spanGaps: false},
                       {paths: uPlot.paths.stepped({align: 1}), points: {show: false}, width: 2}]});
      } else {
        plot.update([xs, objective, d.best_so_far]);
        const n = plot.box.querySelector(".note"); if (n) n.textContent = note || "";
      }
      parallel(canvas, d);
      const best = d.best ? d.best.number : null;
      const head = h("tr", {}, ...["trial", "run", "state", ...d.parameters.map(p => p.name), d.objective.metric, "billable s", "cost", "reason"].map(t => h("th", {text: t})));
      const row = (t) => h("tr", {class: t.number === best ? "best" : "", "data-trial": t.number},
          h("td", {class: "num", text: t.number}), h("td", {}, TF.runLink(t.name)), h("td", {}, TF.badge(t.state)),
          ...d.parameters.map(p => h("td", {class: "num", text: TF.num(t.hyperparameters[p.name] === null ? null : (isNaN(+t.hyperparameters[p.name]) ? t.hyperparameters[p.name] : +t.hyperparameters[p.name]))})),
          h("td", {class: "num objective", text: t.objective === null ? (t.end_time ? {EarlyStopped: "early-stopped"}[t.state] || t.state.toLowerCase() : "…") : TF.num(t.objective)}),
          h("td", {class: "num", text: TF.num(t.billable_seconds)}), h("td", {class: "num", text: TF.money(t.cost)}),
          h("td", {class: "wrap muted", text: t.reason || ""}));
      // The first rows now, the rest in chunks after the first paint (1,000 trials stay smooth).
      const FIRST = 100, CHUNK = 300;
      const tbody = h("tbody", {}, d.trials.slice(0, FIRST).map(row));
      table.replaceChildren(h("thead", {}, head), tbody);
      const mine = ++renderSeq;
      const more = (from) => {
        if (mine !== renderSeq || from >= d.trials.length) return;
        tbody.append(...d.trials.slice(from, from + CHUNK).map(row));
        setTimeout(() => more(from + CHUNK), 0);
      };
      setTimeout(() => more(FIRST), 0);
      TF.ready();
      return d;
    }
    const first = await load();
    if (first && !["Completed", "Failed", "Stopped"].includes(first.phase)) {
      const timer = setInterval(async () => {
        if (document.hidden) return;
        const d = await load();
        if (d && ["Completed", "Failed", "Stopped"].includes(d.phase)) clearInterval(timer);
      }, 3000);
    }
  }
  name ? detail() : list();
})();
