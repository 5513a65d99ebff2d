// Live counts on the overview: refresh each sync's row every two seconds
// from the JSON API (same origin, the session cookie authenticates reads).
(function () {
  const table = document.getElementById("syncs");
  if (!table) return;
  const fmt = (s) => s < 1 ? Math.round(s * 1000) + " ms" : s < 120 ? s.toFixed(1) + " s" : s < 7200 ? Math.round(s / 60) + " min" : (s / 3600).toFixed(1) + " h";
  async function tick() {
    try {
      const res = await fetch("/api/syncs", { credentials: "same-origin" });
      if (!res.ok) return;
      for (const s of await res.json()) {
        const row = table.querySelector(`tr[data-sync="${CSS.escape(s.name)}"]`);
        if (!row) continue;
        for (const k of ["in_sync", "excluded", "deleted", "waiting"]) {
          const cell = row.querySelector(`[data-count="${k}"]`);
          if (cell) cell.textContent = s.counts[k];
        }
        const failed = row.querySelector('[data-count="failed"]');
        if (failed && failed.textContent.trim() !== String(s.counts.failed)) {
          failed.textContent = s.counts.failed;
        }
        const p = row.querySelector('[data-live="progress"]');
        if (p) {
          const l = s.state.live;
          p.textContent = l ? `${l.phase}: ${l.done || l.records} · ${Math.round(l.records_per_sec)} records/s` : "";
        }
        const lag = row.querySelector('[data-live="lag"]');
        if (lag && s.lag_secs != null) lag.textContent = fmt(s.lag_secs);
      }
    } catch (e) { /* the next tick tries again */ }
  }
  setInterval(tick, 2000);
})();
