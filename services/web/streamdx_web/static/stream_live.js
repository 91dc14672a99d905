// StreamDx console: the live stream page — 10-s ECG strip with beat marks and an HR trend,
// fed by server-sent events (/streams/{id}/events) carrying small deltas.
//
// The strip scrolls on the wall clock a little behind the newest sample (one chunk), so it
// moves smoothly between deltas; it stops when the data stops. Each redraw counts in
// window.__updates (the browser test measures updates/s), each delta in window.__deltas.
"use strict";
(function () {
  const el = document.getElementById("strip");
  if (!el || !window.uPlot) return;
  const streamId = el.dataset.stream;
  const WIN = parseFloat(el.dataset.window) || 10;
  const status = document.getElementById("strip-status");
  const frozenEl = document.getElementById("strip-frozen");
  const dpr = window.devicePixelRatio || 1;
  window.__updates = 0;
  window.__deltas = 0;
  window.__beatsDrawn = 0;

  let xs = [], ys = [];          // epoch s, mV (null breaks the line at a gap)
  let beats = [];                // [t, class, af, quality, rr_prev_s, index], oldest first
  let fs = 250;
  let target = null;             // time of the newest sample
  let edge = null;               // right edge of the strip
  let shownEdge = null;
  let chunkS = 0.1;              // seconds of signal per delta (smoothed): the display delay
  let yLo = -1, yHi = 1.5;
  let dataDirty = false, hrDirty = false;
  let frozen = false;
  let markAt = null;             // ?at= time, marked on the frozen strip

  const setStatus = (text) => { if (status) status.textContent = text; };
  const fmtTime = (t) => new Date(t * 1000).toLocaleTimeString([], {hour12: false});

  function yAt(t) {  // the sample nearest t (binary search)
    let lo = 0, hi = xs.length - 1;
    if (hi < 0) return 0;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (xs[mid] < t) lo = mid + 1; else hi = mid;
    }
    if (lo > 0 && Math.abs(xs[lo - 1] - t) < Math.abs(xs[lo] - t)) lo -= 1;
    const y = ys[lo];
    return y === null || y === undefined ? 0 : y;
  }

  function letter(b) {
    if (b[3] !== "ok") return "?";
    return b[1] || "·";
  }

  function drawBeats(u) {
    const ctx = u.ctx, lo = u.scales.x.min, hi = u.scales.x.max;
    const {left, top, width, height} = u.bbox;
    ctx.save();
    ctx.beginPath();
    ctx.rect(left, top, width, height);
    ctx.clip();
    ctx.font = `600 ${11 * dpr}px system-ui, sans-serif`;
    ctx.textAlign = "center";
    let n = 0;
    for (let i = beats.length - 1; i >= 0; i--) {
      const b = beats[i];
      if (b[0] > hi) continue;
      if (b[0] < lo) break;
      const color = window.StreamDx.beatColor(b[1], b[2], b[3]);
      const cx = u.valToPos(b[0], "x", true);
      const cy = u.valToPos(yAt(b[0]), "y", true);
      ctx.strokeStyle = color;
      ctx.globalAlpha = 0.25;
      ctx.lineWidth = 1 * dpr;
      ctx.beginPath();
      ctx.moveTo(cx, top + 16 * dpr);
      ctx.lineTo(cx, top + height);
      ctx.stroke();
      ctx.globalAlpha = 1;
      ctx.fillStyle = color;
      ctx.beginPath();
      ctx.arc(cx, cy, 4 * dpr, 0, 2 * Math.PI);
      ctx.fill();
      ctx.fillText(b[2] && b[3] === "ok" ? letter(b) + "·AF" : letter(b), cx, top + 12 * dpr);
      n++;
    }
    if (markAt !== null && markAt >= lo && markAt <= hi) {   // ?at=: the time asked for (an alarm)
      const x = u.valToPos(markAt, "x", true);
      ctx.strokeStyle = "#c62828";
      ctx.lineWidth = 2 * dpr;
      ctx.setLineDash([6 * dpr, 4 * dpr]);
      ctx.beginPath();
      ctx.moveTo(x, top + 18 * dpr);
      ctx.lineTo(x, top + height);
      ctx.stroke();
      ctx.setLineDash([]);
      ctx.fillStyle = "#c62828";
      ctx.textAlign = "left";
      ctx.fillText("event", x + 4 * dpr, top + height - 6 * dpr);
    }
    ctx.restore();
    window.__beatsDrawn = n;
  }

  function paperGrid(u) {  // ECG paper: 0.2 s and 0.5 mV boxes under the 1-s grid
    const ctx = u.ctx, {left, top, width, height} = u.bbox;
    const x0 = u.scales.x.min, x1 = u.scales.x.max, y0 = u.scales.y.min, y1 = u.scales.y.max;
    if (x0 === null || x1 === null || x1 - x0 > 30) return;
    ctx.save();
    ctx.strokeStyle = "#f6e0e0";
    ctx.lineWidth = 1;
    ctx.beginPath();
    for (let t = Math.ceil(x0 / 0.2) * 0.2; t <= x1; t += 0.2) {
      const x = Math.round(u.valToPos(t, "x", true)) + 0.5;
      ctx.moveTo(x, top); ctx.lineTo(x, top + height);
    }
    for (let v = Math.ceil(y0 / 0.5) * 0.5; v <= y1; v += 0.5) {
      const y = Math.round(u.valToPos(v, "y", true)) + 0.5;
      ctx.moveTo(left, y); ctx.lineTo(left + width, y);
    }
    ctx.stroke();
    ctx.restore();
  }

  const strip = new uPlot({
    width: el.clientWidth || 900, height: 280,
    legend: {show: false}, cursor: {show: false},
    scales: {x: {time: true, auto: false}, y: {auto: false}},
    axes: [
      {stroke: "#5d6b7a", grid: {stroke: "#e9b9b9", width: 1}, space: 60, incrs: [1, 2, 5, 10, 30, 60],
       values: (u, vals) => vals.map(fmtTime)},
      {stroke: "#5d6b7a", grid: {stroke: "#e9b9b9", width: 1}, incrs: [0.5, 1, 2, 5], label: "mV", size: 50},
    ],
    series: [{}, {stroke: "#14202e", width: 1.3, points: {show: false}, spanGaps: false}],
    hooks: {
      drawAxes: [paperGrid],
      draw: [(u) => { drawBeats(u); window.__updates++; }],
    },
  }, [[], []], el);

  const hrEl = document.getElementById("hrtrend");
  const hr = hrEl ? new uPlot({
    width: hrEl.clientWidth || 600, height: 200,
    legend: {show: false},
    scales: {x: {time: true}, y: {range: (u, lo, hi) => [Math.min(40, Math.floor(lo / 10) * 10), Math.max(120, Math.ceil(hi / 10) * 10)]}},
    axes: [{space: 80, incrs: [1, 2, 5, 10, 15, 30, 60, 120, 300, 600], values: (u, vals) => vals.map(fmtTime)},
           {label: "bpm", size: 50}],
    series: [{}, {stroke: "#c62828", width: 1.5, points: {show: true, size: 4, fill: "#c62828"}, spanGaps: true}],
  }, [[], []], hrEl) : null;

  function updateHr() {
    if (!hr) return;
    const tx = [], ty = [];
    for (const b of beats) {
      if (b[3] === "ok" && b[4] > 0.2 && b[4] < 3) { tx.push(b[0]); ty.push(60 / b[4]); }
    }
    hr.setData([tx, ty]);
  }

  function apply(d) {
    if (d.fs) fs = d.fs;
    if (d.reset) { xs = []; ys = []; beats = []; edge = null; }
    let added = 0;
    for (const [t0, uv] of d.s || []) {
      const last = xs.length ? xs[xs.length - 1] : null;
      if (last !== null && t0 <= last) continue;             // already have it
      if (last !== null && t0 - last > 1.5 / fs) { xs.push(last + 1 / fs); ys.push(null); }
      for (let i = 0; i < uv.length; i++) { xs.push(t0 + i / fs); ys.push(uv[i] / 1000); }
      added += uv.length;
    }
    if (added) {
      chunkS = 0.8 * chunkS + 0.2 * Math.min(2, added / fs);
      target = xs[xs.length - 1];
    }
    for (const b of d.b || []) {
      if (!beats.length || b[5] > beats[beats.length - 1][5]) beats.push(b);
    }
    if ((d.b || []).length) hrDirty = true;
    // keep 2 s more than the strip shows; labels for 10 min (the HR trend)
    const keepFrom = (target || 0) - WIN - 2;
    let cut = 0;
    while (cut < xs.length && xs[cut] < keepFrom) cut++;
    if (cut > 500) { xs = xs.slice(cut); ys = ys.slice(cut); }
    if (beats.length > 2000) beats = beats.slice(beats.length - 2000);
    // y range: grows at once, shrinks slowly
    let lo = Infinity, hi = -Infinity;
    for (let i = Math.max(0, xs.length - Math.round(WIN * fs)); i < xs.length; i++) {
      const y = ys[i];
      if (y === null) continue;
      if (y < lo) lo = y;
      if (y > hi) hi = y;
    }
    if (lo <= hi) {
      const pad = Math.max(0.2, 0.1 * (hi - lo));
      const wantLo = Math.min(-0.5, lo - pad), wantHi = Math.max(1.0, hi + pad);
      yLo = wantLo < yLo ? wantLo : yLo + 0.1 * (wantLo - yLo);
      yHi = wantHi > yHi ? wantHi : yHi + 0.1 * (wantHi - yHi);
    }
    dataDirty = true;
    window.__deltas++;
  }

  let lastFrame = null;
  function frame(now) {
    requestAnimationFrame(frame);
    if (lastFrame !== null && now - lastFrame < 38) return;   // ~25 frames/s at most
    const dt = lastFrame === null ? 0 : (now - lastFrame) / 1000;
    lastFrame = now;
    if (target === null) return;
    if (!frozen) {
      if (edge === null || target - edge > 3) edge = target - chunkS;
      const behind = target - edge;
      const rate = Math.min(3, Math.max(0.3, 1 + 0.8 * (behind - chunkS)));
      edge = Math.min(target, edge + dt * rate);
    }
    if (edge === shownEdge && !dataDirty) return;
    shownEdge = edge;
    window.__edge = edge;
    strip.batch(() => {
      if (dataDirty) { strip.setData([xs, ys], false); dataDirty = false; }
      strip.setScale("y", {min: yLo, max: yHi});
      strip.setScale("x", {min: edge - WIN, max: edge});
    });
  }

  window.addEventListener("resize", () => {
    strip.setSize({width: el.clientWidth, height: 280});
    if (hr && hrEl) hr.setSize({width: hrEl.clientWidth, height: 200});
  });
  setInterval(() => { if (hrDirty) { hrDirty = false; updateHr(); } }, 1000);

  if (frozenEl) {   // ?at=: a stored strip, no live updates
    frozen = true;
    const d = JSON.parse(frozenEl.textContent);
    markAt = typeof d.at === "number" ? d.at : null;
    apply(d);
    edge = d.frozen[1];
    strip.batch(() => {
      strip.setData([xs, ys], false);
      strip.setScale("y", {min: yLo, max: yHi});
      strip.setScale("x", {min: d.frozen[0], max: d.frozen[1]});
    });
    dataDirty = false;
    shownEdge = edge;
    updateHr();
    return;
  }

  requestAnimationFrame(frame);
  const src = new EventSource(`/streams/${encodeURIComponent(streamId)}/events`);
  src.onopen = () => setStatus("live");
  src.onmessage = (ev) => {
    const d = JSON.parse(ev.data);
    apply(d);
    const m = d.meta || {};
    setStatus(m.final ? "stream ended" : `live · newest sample ${target ? fmtTime(target) : "—"}`);
  };
  src.onerror = () => {
    setStatus(src.readyState === EventSource.CLOSED
      ? "disconnected (log-in expired?) — reload the page" : "reconnecting…");
  };
  window.addEventListener("pagehide", () => src.close());
})();
