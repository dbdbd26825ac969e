// paxsim live dashboard: one server-sent event per second carries every panel's data (see dashboard/panels.py).
"use strict";
(function () {
  const HISTORY = 120; // points kept per time series (one per snapshot)
  const COLORS = { edge: "#5794f2", gate: "#b877d9", matcher: "#73bf69", dashboard: "#ff9830" };
  const LAYOUT = {
    paper_bgcolor: "#181b1f", plot_bgcolor: "#181b1f", font: { color: "#d8d9da", size: 11 },
    margin: { l: 44, r: 10, t: 6, b: 28 }, legend: { orientation: "h", y: -0.18, font: { size: 10 } },
    xaxis: { gridcolor: "#2c3235", zeroline: false }, yaxis: { gridcolor: "#2c3235", zeroline: false, rangemode: "tozero" },
  };
  const CONFIG = { displayModeBar: false, responsive: true, staticPlot: false };
  const state = { snapshots: 0, times: [], stageRate: {}, stageLag: {}, last: null, updates: {} };
  window.paxsim = state;

  function layout(extra) { return Object.assign({}, JSON.parse(JSON.stringify(LAYOUT)), extra || {}); }
  function draw(id, traces, extra) {
    Plotly.react(id, traces, layout(extra), CONFIG);
    const panel = document.getElementById(id).closest(".panel");
    state.updates[panel.dataset.panel] = (state.updates[panel.dataset.panel] || 0) + 1;
    panel.dataset.updates = state.updates[panel.dataset.panel];
  }
  function push(series, key, value) {
    (series[key] = series[key] || []).push(value);
    if (series[key].length > HISTORY) series[key].shift();
  }
  function pill(id, text, ok) {
    const el = document.getElementById(id);
    el.textContent = text;
    el.className = "pill " + (ok === undefined ? "" : ok ? "ok" : "bad");
  }

  function render(s) {
    state.last = s;
    state.snapshots += 1;
    const t = new Date(s.t * 1000);
    state.times.push(t); if (state.times.length > HISTORY) state.times.shift();
    const targets = Object.entries(s.targets);
    pill("st-broker", s.broker_connected ? "broker connected" : "broker offline", s.broker_connected);
    pill("st-targets", `${targets.filter(([, v]) => v.up).length}/${targets.length} targets up`, targets.every(([, v]) => v.up));
    const decided = Object.values(s.decisions).reduce((a, b) => a + b, 0);
    pill("st-decided", `${decided.toLocaleString()} decided`);
    pill("st-clock", t.toLocaleTimeString());

    // throughput and lag: time series per stage, history kept here
    for (const st of s.stages) {
      push(state.stageRate, st.stage, st.events_per_s);
      if (st.lag !== null) push(state.stageLag, st.stage, st.lag);
    }
    const x = state.times;
    draw("plot-throughput", s.stages.map(st => ({
      x: x.slice(-state.stageRate[st.stage].length), y: state.stageRate[st.stage], name: st.stage, type: "scatter",
      mode: "lines", line: { color: COLORS[st.stage], width: 2 }, fill: "tozeroy", fillcolor: COLORS[st.stage] + "22",
    })));
    draw("plot-latency", ["p50_ms", "p99_ms"].map((k, i) => ({
      x: s.stages.map(st => `${st.stage}<br><sub>${st.latency_of}</sub>`), y: s.stages.map(st => st[k]), name: k.replace("_ms", ""),
      type: "bar", marker: { color: i ? "#f2495c" : "#73bf69" },
      text: s.stages.map(st => st[k] === null ? "" : st[k].toFixed(st[k] < 1 ? 3 : 1)), textposition: "outside",
    })), { barmode: "group", yaxis: { type: "log", gridcolor: "#2c3235", title: { text: "ms" } } });
    draw("plot-lag", Object.keys(state.stageLag).map(k => ({
      x: x.slice(-state.stageLag[k].length), y: state.stageLag[k], name: k, type: "scatter", mode: "lines",
      line: { color: COLORS[k], width: 2 },
    })));

    // unknown vs consented, per second, from the matches topic
    const tl = s.timeline, tx = tl.t.map(v => new Date(v * 1000));
    draw("plot-consent", [
      { x: tx, y: tl.match, name: "matched (consented)", stackgroup: "d", line: { color: "#73bf69" } },
      { x: tx, y: tl.unknown, name: "unknown (discarded)", stackgroup: "d", line: { color: "#8e8e8e" } },
      { x: tx, y: tl.refused, name: "refused (no consent)", stackgroup: "d", line: { color: "#f2495c" } },
    ]);

    // policy decisions by stage:rule
    const labels = s.rules.map(r => `${r.stage}:${r.rule}`);
    draw("plot-rules", [
      { y: labels, x: s.rules.map(r => r.allow), name: "allow", type: "bar", orientation: "h", marker: { color: "#73bf69" } },
      { y: labels, x: s.rules.map(r => r.deny), name: "deny", type: "bar", orientation: "h", marker: { color: "#f2495c" } },
    ], { barmode: "stack", margin: { l: 150, r: 10, t: 6, b: 28 } });

    // airport map: zones as nodes (size ~ faces), consented flows as lines (width ~ travellers)
    const nodes = s.zones.nodes, pos = Object.fromEntries(nodes.map(n => [n.zone, n]));
    const maxFlow = Math.max(1, ...s.zones.flows.map(f => f.n));
    const flowTraces = s.zones.flows.filter(f => pos[f.from] && pos[f.to]).map(f => ({
      x: [pos[f.from].x, pos[f.to].x], y: [pos[f.from].y, pos[f.to].y], mode: "lines", type: "scatter", hoverinfo: "text",
      text: `${f.from} → ${f.to}: ${f.n}`, line: { width: 1 + 9 * f.n / maxFlow, color: "rgba(87,148,242,0.55)" }, showlegend: false,
    }));
    const faces = nodes.map(n => n.matched + n.unknown + n.counted), maxFaces = Math.max(1, ...faces);
    draw("plot-map", flowTraces.concat([{
      x: nodes.map(n => n.x), y: nodes.map(n => n.y), mode: "markers+text", type: "scatter", showlegend: false,
      text: nodes.map((n, i) => `${n.zone}<br>${faces[i].toLocaleString()}`), textposition: "top center",
      hovertext: nodes.map(n => `${n.zone}: ${n.matched} matched, ${n.unknown} unknown/refused, ${n.counted} counted only`), hoverinfo: "text",
      marker: { size: faces.map(f => 14 + 36 * Math.sqrt(f / maxFaces)), color: nodes.map(n => n.biometric ? "#5794f2" : "#8e8e8e"),
                line: { color: "#d8d9da", width: 1 } },
    }]), { xaxis: { visible: false }, yaxis: { visible: false, range: [-1.6, 2.6] }, margin: { l: 10, r: 10, t: 10, b: 10 } });

    // data age vs TTL per purpose
    const purposes = Object.keys(s.retention);
    draw("plot-retention", [
      { x: purposes, y: purposes.map(p => s.retention[p].oldest_age_s), name: "oldest age", type: "bar", marker: { color: "#5794f2" } },
      { x: purposes, y: purposes.map(p => s.retention[p].ttl_s), name: "TTL", type: "scatter", mode: "markers",
        marker: { symbol: "line-ew-open", size: 30, color: "#f2495c", line: { width: 3 } } },
    ], { yaxis: { type: "log", gridcolor: "#2c3235", title: { text: "s" } } });

    // erasure latency
    const e = s.erasure;
    document.getElementById("erasure-stat").textContent = e.applied
      ? `${e.applied} · p50 ${(e.p50_s * 1000).toFixed(0)} ms · p99 ${(e.p99_s * 1000).toFixed(0)} ms` : "no erasure yet";
    draw("plot-erasure", [{ x: e.recent.map(r => r.latency_s * 1000), type: "histogram", marker: { color: "#b877d9" }, name: "ms" }],
      { xaxis: { title: { text: "ms" }, gridcolor: "#2c3235" } });

    // camera health table
    const body = document.querySelector("#cameras tbody");
    body.innerHTML = "";
    for (const c of s.cameras) {
      const tr = document.createElement("tr");
      const cells = [c.camera, c.zone, c.status, c.last_event_age_s === null ? "–" : `${c.last_event_age_s.toFixed(1)} s ago`,
        c.events_per_s.toFixed(1), c.sightings === null ? "–" : c.sightings, c.decided, c.counted, c.source_state || "virtual"];
      cells.forEach((v, i) => { const td = document.createElement("td"); td.textContent = v; if (i === 2) td.className = c.status; tr.appendChild(td); });
      body.appendChild(tr);
    }
    const cams = document.getElementById("panel-cameras");
    state.updates.cameras = (state.updates.cameras || 0) + 1;
    cams.dataset.updates = state.updates.cameras;
    document.getElementById("panel-erasure").dataset.updates = state.updates.erasure;
  }

  function connect() {
    const es = new EventSource("/api/stream");
    es.addEventListener("panels", ev => { pill("st-conn", "live", true); render(JSON.parse(ev.data)); });
    es.onerror = () => pill("st-conn", "reconnecting…", false);
  }
  connect();
})();
