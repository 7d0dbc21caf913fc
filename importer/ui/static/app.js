// allobrain-import ui: the little the page needs a script for. Everything works without it, but the live
// progress (server-sent events) and the column examples.
"use strict";

function followRun(root) {
  const labels = JSON.parse(document.getElementById("labels").textContent);
  const source = new EventSource(root.dataset.events);
  const show = (id, on) => { const el = document.getElementById(id); if (el) el.hidden = !on; };
  source.addEventListener("progress", (event) => {
    const snap = JSON.parse(event.data);
    document.getElementById("run-state").textContent = labels[snap.state] || snap.state;
    for (const phase of ["agents", "uploads"]) {
      const p = snap.phases[phase];
      if (!p) continue;
      const bar = document.getElementById("bar-" + phase);
      bar.max = Math.max(p.total, 1);
      bar.value = p.done;
      document.getElementById("text-" + phase).textContent = p.done + " / " + p.total;
    }
    for (const [status, n] of Object.entries(snap.counts)) {
      const el = document.getElementById("c-" + status);
      if (el) el.textContent = n;
    }
    document.getElementById("elapsed").textContent = snap.elapsed;
    const error = document.getElementById("run-error");
    error.textContent = snap.error || "";
    show("run-error", Boolean(snap.error));
    document.getElementById("stopped-why").textContent = labels[snap.stopped] || snap.stopped || "";
    show("run-stopped", Boolean(snap.stopped));
    const finished = snap.state === "done" || snap.state === "failed";
    show("stop-form", snap.state === "running");
    show("to-results", finished);
  });
  source.addEventListener("end", () => {
    source.close();
    const link = document.querySelector("#to-results a");
    if (link) link.focus();
  });
}

function followExamples() {
  const data = document.getElementById("samples");
  if (!data) return;
  const samples = JSON.parse(data.textContent);
  for (const select of document.querySelectorAll("select[data-example]")) {
    select.addEventListener("change", () => {
      document.getElementById(select.dataset.example).textContent = samples[select.value] || "";
    });
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const run = document.getElementById("run");
  if (run && document.getElementById("to-results").hidden) followRun(run);
  followExamples();
});
