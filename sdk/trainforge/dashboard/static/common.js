// trainforge dashboard: helpers shared by every page. Everything shown comes
// from trainers (untrusted): the DOM is built with textContent only, never
// innerHTML, and links are built from encodeURIComponent'd names.
"use strict";
const TF = (() => {
  const token = (document.querySelector('meta[name="tf-token"]') || {}).content || "";
  const PALETTE = ["#2f6fde", "#e4572e", "#17a398", "#9b5de5", "#f4a259", "#3b8132", "#d62f7f", "#5c6b7a",
                   "#00a6ed", "#b8860b", "#7f4f24", "#1b998b"];

  function h(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = String(v);
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  async function api(path, options) {
    const response = await fetch(path, Object.assign({headers: {"Accept": "application/json"}}, options || {}));
    let body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    if (!response.ok) throw new Error((body && body.error) || `${response.status} ${response.statusText}`);
    return body;
  }

  async function post(path) {
    return api(path, {method: "POST", headers: {"X-Trainforge-Token": token, "Accept": "application/json"}});
  }

  function runLink(name) { return h("a", {href: "/run/" + encodeURIComponent(name), text: name}); }
  function tuningLink(name) { return h("a", {href: "/tuning/" + encodeURIComponent(name), text: name}); }
  function badge(phase) { return h("span", {class: "badge " + String(phase).replace(/[^A-Za-z]/g, ""), text: phase}); }

  function num(v) {
    if (v === null || v === undefined || v === "") return "–";
    if (typeof v !== "number") return String(v);
    if (Number.isInteger(v)) return v.toLocaleString("en-US");
    const a = Math.abs(v);
    return (a !== 0 && (a < 1e-3 || a >= 1e6)) ? v.toExponential(3).replace(/\.?0+e/, "e")
      : v.toPrecision(5).replace(/(\.\d*?)0+$/, "$1").replace(/\.$/, "");
  }
  // Axis ticks: short (12k, 1.5M) so long axes never overlap.
  function tick(v) {
    if (v === null || v === undefined) return "";
    const a = Math.abs(v);
    if (a >= 1e9) return +(v / 1e9).toPrecision(3) + "G";
    if (a >= 1e6) return +(v / 1e6).toPrecision(3) + "M";
    if (a >= 1e4) return +(v / 1e3).toPrecision(3) + "k";
    return num(v);
  }
  function money(v) { return v === null || v === undefined ? "–" : "$" + v.toFixed(v < 1 ? 4 : 2); }
  function when(iso) {
    if (!iso) return "–";
    const d = new Date(iso);
    return isNaN(d) ? String(iso) : d.toLocaleString("en-GB", {hour12: false});
  }
  function duration(start, end) {
    if (!start) return "–";
    const s = ((end ? new Date(end) : new Date()) - new Date(start)) / 1000;
    if (!(s >= 0)) return "–";
    if (s < 60) return s.toFixed(0) + " s";
    if (s < 3600) return Math.floor(s / 60) + " min " + Math.round(s % 60) + " s";
    return Math.floor(s / 3600) + " h " + Math.round((s % 3600) / 60) + " min";
  }

  function header(active) {
    const backend = (document.querySelector('meta[name="tf-backend"]') || {}).content || "";
    const link = (href, label, key) => h("a", {href, class: active === key ? "active" : "", text: label});
    document.body.prepend(h("header", {class: "top"},
      h("a", {class: "brand", href: "/", text: "trainforge"}),
      h("nav", {}, link("/", "Runs", "runs"), link("/compare", "Compare", "compare"), link("/tuning", "Tuning", "tuning")),
      h("span", {class: "backend", text: backend ? backend + " backend" : ""})));
  }

  function showError(where, error) {
    where.replaceChildren(h("div", {class: "error", text: String(error.message || error)}));
  }

  function ready() {
    if (!document.body.dataset.ready) document.body.dataset.ready = String(performance.now());
  }

  // A line chart (uPlot) with labelled axes; data = [xs, ys1, ys2, ...].
  function lineChart(container, {title, xLabel, yLabel, names, data, points, width, height, note, seriesOpts}) {
    const box = h("div", {class: "chart"}, h("div", {class: "title", text: title}));
    if (note) box.appendChild(h("div", {class: "note", text: note}));
    const target = h("div");
    box.appendChild(target);
    container.appendChild(box);
    const w = width || Math.max(300, box.clientWidth - 16);
    const series = [{label: xLabel}].concat(names.map((n, i) => Object.assign({
      label: n, stroke: PALETTE[i % PALETTE.length], width: 1.6, spanGaps: true,
      points: {show: points === undefined ? "auto" : points},
      value: (u, v) => v === null || v === undefined ? "–" : num(v),
    }, (seriesOpts || [])[i] || {})));
    const opts = {
      width: w, height: height || 240, series, legend: {live: true},
      scales: {x: {time: false}},
      axes: [{label: xLabel, labelSize: 20, size: 36, grid: {stroke: "#eef1f5"},
              values: (u, vals) => vals.map(tick), incrs: [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1e3, 2e3, 2.5e3, 5e3, 1e4, 2e4, 5e4, 1e5, 2e5, 5e5, 1e6, 2e6, 5e6, 1e7]},
             {label: yLabel.length > 26 ? yLabel.slice(0, 25) + "…" : yLabel, labelSize: 20, size: 62, grid: {stroke: "#eef1f5"}, values: (u, vals) => vals.map(tick)}],
      cursor: {drag: {x: true, y: false}},
    };
    const plot = new uPlot(opts, data, target);
    return {box, plot, update(newData) { plot.setData(newData); }};
  }

  return {h, api, post, runLink, tuningLink, badge, num, money, when, duration, header, showError, ready, lineChart,
          PALETTE, token};
})();
