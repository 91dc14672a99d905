// Single-beat classification page: plot of the selected row's beat (uPlot) with its class
// probabilities; rows are chosen with the number field, the ‹ › buttons, the arrow keys or a click
// on a table row (the table is paged by htmx, so clicks are delegated).
"use strict";
(() => {
  const el = document.getElementById("beat-chart");
  if (!el || !window.uPlot) return;
  const rid = el.dataset.id;
  const n = parseInt(el.dataset.n, 10) || 1;
  const CLASSES = ["N", "S", "V", "F", "Q"];
  const COLORS = { N: "#1f8a4c", S: "#1565c0", V: "#d84315", F: "#6d4c41", Q: "#6d4c41" };
  const input = document.getElementById("beat-input");
  const label = document.getElementById("beat-row");
  const info = document.getElementById("beat-info");
  let plot = null;
  let row = parseInt(el.dataset.row, 10) || 1;
  let seq = 0;

  const width = () => Math.max(320, el.clientWidth);

  function draw(d) {
    const color = COLORS[d.cls] || "#14202e";
    const data = [d.t_ms, d.y];
    if (plot) {
      plot.series[1].stroke = () => color;
      plot.setData(data);
      plot.redraw();
      return;
    }
    plot = new uPlot({
      width: width(), height: 240, legend: { show: false }, cursor: { drag: { x: false, y: false } },
      scales: { x: { time: false, range: [0, 1488] }, y: { range: [-0.02, 1.02] } },
      axes: [
        { label: "ms from the R peak", size: 40 },
        { label: "scaled amplitude", size: 50, values: (u, v) => v.map((x) => x.toFixed(1)) },
      ],
      series: [{}, { label: "beat", stroke: color, width: 1.6, points: { show: false } }],
    }, data, el);
  }

  function showInfo(d) {
    const bars = CLASSES.map((c) => {
      const p = d.probs[c];
      return `<span><span class="cls cls-${c}">${c}</span></span>` +
        `<span class="track"><span class="fill" style="display:block;width:${(100 * p).toFixed(1)}%;background:${COLORS[c]}"></span></span>` +
        `<span class="num">${p.toFixed(3)}</span>`;
    }).join("");
    const ref = d.label === null ? "" :
      ` · in the file <span class="cls cls-${d.label}">${d.label}</span>` +
      (d.label === d.cls ? " (agrees)" : ' <span class="miss">misclassified</span>');
    info.innerHTML = `Row ${d.row} of ${d.n}: predicted <span class="cls cls-${d.cls}">${d.cls}</span>${ref}` +
      `<div class="probs">${bars}</div>`;
  }

  function mark() {
    document.querySelectorAll("table.kaggle-rows tr.beat-row").forEach((tr) => {
      tr.classList.toggle("selected", parseInt(tr.dataset.row, 10) === row);
    });
  }

  async function select(r) {
    r = Math.min(Math.max(1, r | 0), n);
    row = r;
    input.value = r;
    label.textContent = r;
    mark();
    const mine = ++seq;
    try {
      const res = await fetch(`/upload/kaggle/${rid}/beats/${r}`, { headers: { Accept: "application/json" } });
      if (!res.ok) throw new Error(`${res.status}`);
      const d = await res.json();
      if (mine !== seq) return;
      draw(d);
      showInfo(d);
      el.dataset.shown = String(d.row);
    } catch (e) {
      if (mine === seq) info.textContent = `Row ${r} could not be loaded (${e.message}).`;
    }
  }

  input.addEventListener("change", () => select(parseInt(input.value, 10)));
  document.getElementById("beat-prev").addEventListener("click", () => select(row - 1));
  document.getElementById("beat-next").addEventListener("click", () => select(row + 1));
  document.addEventListener("click", (ev) => {
    const tr = ev.target.closest("table.kaggle-rows tr.beat-row");
    if (tr) select(parseInt(tr.dataset.row, 10));
  });
  document.addEventListener("keydown", (ev) => {
    if (ev.target.closest("input, select, textarea")) return;
    if (ev.key === "ArrowLeft") select(row - 1);
    if (ev.key === "ArrowRight") select(row + 1);
  });
  document.body.addEventListener("htmx:afterSwap", mark);
  window.addEventListener("resize", () => { if (plot) plot.setSize({ width: width(), height: 240 }); });
  select(row);
})();
