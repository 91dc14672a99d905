// Recording viewer: an overview of the whole recording (min/max envelope) and a detail chart at full
// resolution for the chosen window (drag to zoom on either, pan with the buttons or arrow keys), R peaks
// marked and coloured by their labels, unreadable spans shaded, beat info under the cursor.
"use strict";
(() => {
  const el = document.getElementById("recording-data");
  if (!el || !window.uPlot) return;
  const rid = el.dataset.id;
  const stream = el.dataset.stream;
  const duration = parseFloat(el.dataset.duration) || 10;
  const GROUPS = [
    { key: "N", label: "N", color: "#1f8a4c" },
    { key: "S", label: "S", color: "#1565c0" },
    { key: "V", label: "V", color: "#d84315" },
    { key: "F", label: "F/Q", color: "#6d4c41" },
    { key: "AF", label: "AF", color: "#8e24aa" },
    { key: "u", label: "unreadable", color: "#9e9e9e" },
  ];
  const groupOf = (b) => {
    // b = [t, class, af_prob, quality, beat_index, rr_prev, af]
    if (b[3] !== "ok") return 5;
    if (b[1] === "V") return 2;
    if (b[1] === "S") return 1;
    if (b[1] === "F" || b[1] === "Q") return 3;
    return b[6] ? 4 : 0;
  };
  const signalUrl = (q) => `/recordings/${rid}/signal?stream=${encodeURIComponent(stream)}&${q}`;
  let win = [0, Math.min(10, duration)];
  let detailBeats = [];
  let detailSpans = [];
  let overviewSpans = [];
  let inflight = null;

  function lowerBound(arr, v, key) {
    let lo = 0, hi = arr.length;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (key(arr[mid]) < v) lo = mid + 1; else hi = mid; }
    return lo;
  }

  function toData(d) {
    const x = d.x, y = d.y, n = x.length;
    const marks = GROUPS.map(() => new Array(n).fill(null));
    for (const b of d.beats) {
      let i = lowerBound(x, b[0], (v) => v);
      if (i >= n) i = n - 1;
      if (i > 0 && Math.abs(x[i - 1] - b[0]) < Math.abs(x[i] - b[0])) i -= 1;
      if (i < 0) continue;
      let top = y[i];
      for (let k = Math.max(0, i - 2); k <= Math.min(n - 1, i + 2); k++) top = Math.max(top, y[k]);
      marks[groupOf(b)][i] = top;
    }
    return [x, y, ...marks];
  }

  function shade(spans) {
    return (u) => {
      const { ctx, bbox } = u;
      ctx.save();
      ctx.fillStyle = "rgba(120, 120, 120, 0.22)";
      for (const [a, b] of spans()) {
        const x0 = u.valToPos(a, "x", true), x1 = u.valToPos(b, "x", true);
        if (x1 < bbox.left || x0 > bbox.left + bbox.width) continue;
        ctx.fillRect(Math.max(x0, bbox.left), bbox.top, Math.max(2, Math.min(x1, bbox.left + bbox.width) - Math.max(x0, bbox.left)), bbox.height);
      }
      ctx.restore();
    };
  }

  function series(size) {
    return [
      {},
      { label: "ECG (mV)", stroke: "#14202e", width: 1, points: { show: false } },
      ...GROUPS.map((g) => ({
        label: g.label, stroke: g.color, fill: g.color, width: 0, paths: () => null,
        points: { show: true, space: 0, size, fill: g.color, stroke: g.color },
      })),
    ];
  }

  const width = () => Math.max(320, document.getElementById("detail").clientWidth);
  let dragged = false;

  const overview = new uPlot({
    width: width(), height: 110, legend: { show: false },
    scales: { x: { time: false, range: [0, duration] } },
    axes: [{ size: 28, values: (u, v) => v.map((s) => `${s.toFixed(0)} s`) }, { show: false }],
    series: series(4),
    cursor: { drag: { x: true, y: false, setScale: false }, points: { show: false }, y: false },
    hooks: {
      drawClear: [shade(() => overviewSpans)],
      draw: [(u) => {
        const x0 = u.valToPos(win[0], "x", true), x1 = u.valToPos(win[1], "x", true);
        u.ctx.save();
        u.ctx.fillStyle = "rgba(29, 111, 209, 0.14)";
        u.ctx.strokeStyle = "#1d6fd1";
        u.ctx.fillRect(x0, u.bbox.top, Math.max(2, x1 - x0), u.bbox.height);
        u.ctx.strokeRect(x0, u.bbox.top, Math.max(2, x1 - x0), u.bbox.height);
        u.ctx.restore();
      }],
      setSelect: [(u) => {
        if (u.select.width > 3) {
          dragged = true;
          setWindow(u.posToVal(u.select.left, "x"), u.posToVal(u.select.left + u.select.width, "x"));
        }
        u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
      }],
    },
  }, [[], [], ...GROUPS.map(() => [])], document.getElementById("overview"));
  overview.over.addEventListener("click", (e) => {
    if (dragged) { dragged = false; return; }
    const t = overview.posToVal(e.offsetX, "x");
    const half = (win[1] - win[0]) / 2;
    setWindow(t - half, t + half);
  });

  const info = document.getElementById("beatinfo");
  const detail = new uPlot({
    width: width(), height: 300, legend: { show: false },
    scales: { x: { time: false } },
    axes: [{ values: (u, v) => v.map((s) => `${s.toFixed(win[1] - win[0] < 20 ? 1 : 0)} s`) },
      { label: "mV", size: 50 }],
    series: series(9),
    cursor: { drag: { x: true, y: false, setScale: false }, points: { show: false } },
    hooks: {
      drawClear: [shade(() => detailSpans)],
      setSelect: [(u) => {
        if (u.select.width > 3) setWindow(u.posToVal(u.select.left, "x"), u.posToVal(u.select.left + u.select.width, "x"));
        u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
      }],
      setCursor: [(u) => {
        if (u.cursor.left == null || u.cursor.left < 0 || !detailBeats.length) return;
        const t = u.posToVal(u.cursor.left, "x");
        let i = lowerBound(detailBeats, t, (b) => b[0]);
        if (i > 0 && (i >= detailBeats.length || Math.abs(detailBeats[i - 1][0] - t) < Math.abs(detailBeats[i][0] - t))) i -= 1;
        const b = detailBeats[i];
        if (!b || Math.abs(b[0] - t) > Math.max(0.15, (win[1] - win[0]) / 60)) return;
        const cls = b[3] !== "ok" ? "unreadable (no class, no rhythm)" : `class ${b[1] ?? "—"}`;
        const af = b[2] == null ? "—" : b[2].toFixed(2);
        info.innerHTML = "";
        const strong = document.createElement("b");
        strong.textContent = `Beat #${b[4]} at ${b[0].toFixed(3)} s`;
        const badge = document.createElement("span");
        badge.className = `cls cls-${["N", "S", "V", "F", "AF", "u"][groupOf(b)]}`;
        badge.textContent = b[3] !== "ok" ? "unreadable" : (b[6] ? `${b[1] ?? "—"} · AF` : (b[1] ?? "—"));
        info.append(strong, " ", badge, ` ${cls} · AF probability ${af}${b[6] ? " (AF)" : ""} · RR ${b[5].toFixed(3)} s · quality ${b[3]}`);
      }],
    },
  }, [[], [], ...GROUPS.map(() => [])], document.getElementById("detail"));

  async function setWindow(a, b) {
    let span = Math.max(0.5, Math.min(b - a, duration));
    a = Math.max(0, Math.min(a, duration - span));
    win = [a, a + span];
    if (inflight) inflight.abort();
    inflight = new AbortController();
    try {
      const r = await fetch(signalUrl(`t0=${win[0].toFixed(3)}&t1=${win[1].toFixed(3)}`), { signal: inflight.signal });
      if (!r.ok) throw new Error(`${r.status}`);
      const d = await r.json();
      detailBeats = d.beats;
      detailSpans = d.spans;
      detail.setData(toData(d), false);
      detail.setScale("x", { min: win[0], max: win[1] });
      document.getElementById("resolution").textContent = d.decimated
        ? "(zoom in for every sample)" : `(every sample, ${d.fs} Hz)`;
      overview.redraw(false);
    } catch (e) {
      if (e.name !== "AbortError") info.textContent = `Could not load the signal (${e.message}).`;
    }
  }

  const pan = (f) => { const s = win[1] - win[0]; setWindow(win[0] + f * s, win[1] + f * s); };
  const zoom = (f) => { const c = (win[0] + win[1]) / 2, h = (win[1] - win[0]) * f / 2; setWindow(c - h, c + h); };
  document.getElementById("pan-left").onclick = () => pan(-0.5);
  document.getElementById("pan-right").onclick = () => pan(0.5);
  document.getElementById("zoom-out").onclick = () => zoom(2);
  document.getElementById("zoom-in").onclick = () => zoom(0.5);
  document.addEventListener("keydown", (e) => {
    if (e.target.closest("input, textarea, select")) return;
    if (e.key === "ArrowLeft") pan(-0.5);
    else if (e.key === "ArrowRight") pan(0.5);
    else if (e.key === "-") zoom(2);
    else if (e.key === "+" || e.key === "=") zoom(0.5);
  });
  document.addEventListener("click", (e) => {
    const tr = e.target.closest("tr.beat-row");
    if (!tr) return;
    const t = parseFloat(tr.dataset.t), s = Math.min(win[1] - win[0], 10);
    setWindow(t - s / 2, t + s / 2);
    document.getElementById("detail").scrollIntoView({ behavior: "smooth", block: "center" });
  });
  window.addEventListener("resize", () => {
    overview.setSize({ width: width(), height: 110 });
    detail.setSize({ width: width(), height: 300 });
  });

  (async () => {
    const r = await fetch(signalUrl("overview=1"));
    if (r.ok) {
      const d = await r.json();
      overviewSpans = d.spans;
      overview.setData(toData(d), false);
      overview.setScale("x", { min: 0, max: Math.max(duration, d.extent[1]) });
    }
  })();
  setWindow(win[0], win[1]);
  window.StreamDxRecording = { setWindow, get window() { return win; }, overview, detail };
})();
