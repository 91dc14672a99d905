// StreamDx console: small helpers shared by the pages (no build step).
"use strict";
window.StreamDx = {
  csrf() { return document.querySelector('meta[name="csrf-token"]').content; },
  beatColor(cls, af, quality) {
    if (quality !== "ok") return "#9e9e9e";
    if (cls === "V") return "#d84315";
    if (cls === "S") return "#1565c0";
    if (cls === "F" || cls === "Q") return "#6d4c41";
    return af ? "#8e24aa" : "#1f8a4c";
  },
};
