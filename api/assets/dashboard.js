// Kiln dashboard: polls /admin/data and acts through /v1/admin/* with the session's CSRF token.
(function () {
  "use strict";
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const REFRESH_MS = 3000;
  let range = "hour";
  let charts = {};

  const $ = (selector) => document.querySelector(selector);
  const text = (value) => (value === null || value === undefined ? "–" : String(value));
  const ms = (value) => (value === null || value === undefined ? "–" : Math.round(value) + " ms");
  const when = (iso) => (iso ? new Date(iso).toLocaleString() : "–");
  const bytes = (n) => {
    const units = ["B", "KiB", "MiB", "GiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
    return n.toFixed(i ? 1 : 0) + " " + units[i];
  };

  function cell(row, value, testid) {
    const td = document.createElement("td");
    td.textContent = value;
    if (testid) td.dataset.testid = testid;
    row.appendChild(td);
    return td;
  }

  function fill(tbody, items, render) {
    tbody.replaceChildren();
    for (const item of items) {
      const row = document.createElement("tr");
      render(row, item);
      tbody.appendChild(row);
    }
  }

  function say(message, isError) {
    const el = $("#message");
    el.textContent = message;
    el.className = isError ? "error" : "";
  }

  async function act(method, url, label, body) {
    const headers = { "x-csrf-token": csrf };
    if (body !== undefined) headers["content-type"] = "application/json";
    const response = await fetch(url, {
      method,
      headers,
      credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (!response.ok) {
      let detail = response.status + "";
      try { detail = (await response.json()).error.message; } catch (_) { /* not JSON */ }
      say(label + " failed: " + detail, true);
      return;
    }
    say(label + " done");
    await refresh();
  }

  function renderHealth(health) {
    const el = $("#health");
    el.replaceChildren();
    for (const [name, check] of Object.entries(health.checks)) {
      const badge = document.createElement("span");
      badge.className = "badge " + (check.ok ? "ok" : "bad");
      badge.dataset.testid = "health-" + name;
      badge.textContent = name + (check.ok ? " ok" : " down");
      if (!check.ok) badge.title = check.error;
      el.appendChild(badge);
    }
  }

  function renderQueues(queues) {
    fill($("#queues tbody"), queues, (row, q) => {
      row.dataset.queue = q.queue;
      cell(row, q.queue, "queue-name");
      cell(row, text(q.ready), "queue-ready");
      cell(row, text(q.in_flight), "queue-in-flight");
      cell(row, text(q.consumers), "queue-consumers");
      cell(row, text(q.retrying), "queue-retrying");
      cell(row, text(q.dead), "queue-dead");
      cell(row, q.rate_in_per_min.toFixed(1), "queue-rate-in");
      cell(row, q.rate_out_per_min.toFixed(1), "queue-rate-out");
      cell(row, ms(q.duration_p50_ms) + " / " + ms(q.duration_p95_ms));
      cell(row, ms(q.wait_p50_ms) + " / " + ms(q.wait_p95_ms));
      cell(row, q.failure_rate === null ? "–" : (q.failure_rate * 100).toFixed(1) + "%", "queue-failure-rate");
      cell(row, text(q.workers_alive), "queue-workers");
      cell(row, q.oldest_live_age_seconds === null ? "–" : Math.round(q.oldest_live_age_seconds) + " s", "queue-oldest-live");
      cell(row, q.realtime_factor == null ? "–" : q.realtime_factor.toFixed(2) + "x", "queue-realtime");
    });
  }

  function renderWorkers(workers) {
    fill($("#workers tbody"), workers, (row, w) => {
      row.dataset.worker = w.id;
      cell(row, w.host, "worker-host");
      cell(row, text(w.pid), "worker-pid");
      cell(row, w.queues.join(", "), "worker-queues");
      cell(row, text(w.running), "worker-running");
      cell(row, new Date(w.started_at).toLocaleString());
      cell(row, new Date(w.heartbeat_at).toLocaleTimeString(), "worker-heartbeat");
    });
  }

  function renderWebhooks(endpoints) {
    fill($("#webhooks tbody"), endpoints, (row, e) => {
      row.dataset.endpointId = e.id;
      cell(row, e.tenant);
      cell(row, e.url).className = "url";
      cell(row, e.events.join(", "));
      const state = e.enabled ? "enabled" : "disabled: " + text(e.disabled_reason);
      cell(row, state, "webhook-state").className = e.enabled ? "" : "error-text";
      const rate = e.finished_24h === 0 ? "–"
        : Math.round((100 * e.succeeded_24h) / e.finished_24h) + "% (" + e.succeeded_24h + "/" + e.finished_24h + ")";
      cell(row, rate, "webhook-success");
      cell(row, when(e.failing_since));
      const actions = cell(row, "");
      const replay = document.createElement("button");
      replay.textContent = "Replay failed (24 h)";
      replay.dataset.testid = "replay-" + e.id;
      replay.disabled = !e.enabled;
      const since = new Date(Date.now() - 24 * 3600 * 1000).toISOString();
      replay.onclick = () =>
        act("POST", "/v1/admin/webhooks/" + e.id + "/replay", "Replay", { since });
      actions.appendChild(replay);
    });
  }

  function renderTaskQueues(queues) {
    fill($("#task-queues tbody"), queues, (row, q) => {
      row.dataset.queue = q.tenant + "/" + q.name;
      cell(row, q.tenant);
      cell(row, q.name);
      cell(row, q.rate_per_sec === null ? "unlimited" : q.rate_per_sec + "/s (burst " + q.burst + ")", "task-queue-rate");
      cell(row, text(q.max_concurrent));
      cell(row, q.paused ? "paused" : "running", "task-queue-state");
      cell(row, text(q.waiting), "task-queue-waiting");
      cell(row, text(q.sent), "task-queue-sent");
    });
  }

  function renderDead(dead) {
    fill($("#dead tbody"), dead, (row, job) => {
      row.dataset.jobId = job.id;
      cell(row, job.id.slice(0, 8) + "…").title = job.id;
      cell(row, job.kind);
      cell(row, text(job.tenant));
      cell(row, job.attempts + "/" + job.max_attempts);
      cell(row, text(job.last_error), "dead-error").className = "error-text";
      cell(row, when(job.finished_at));
      const actions = cell(row, "");
      const retry = document.createElement("button");
      retry.textContent = "Retry";
      retry.dataset.testid = "retry-" + job.id;
      retry.onclick = () => act("POST", "/v1/admin/jobs/" + job.id + "/retry", "Retry");
      const discard = document.createElement("button");
      discard.textContent = "Discard";
      discard.className = "danger";
      discard.dataset.testid = "discard-" + job.id;
      discard.onclick = () => {
        if (confirm("Discard job " + job.id + " for good?")) {
          act("DELETE", "/v1/admin/jobs/" + job.id, "Discard");
        }
      };
      actions.append(retry, discard);
    });
  }

  function renderFailures(failures) {
    fill($("#failures tbody"), failures, (row, job) => {
      row.dataset.jobId = job.id;
      cell(row, job.id.slice(0, 8) + "…").title = job.id;
      cell(row, job.kind);
      cell(row, job.status);
      cell(row, job.attempts + "/" + job.max_attempts);
      cell(row, text(job.last_error)).className = "error-text";
    });
  }

  function renderSchedules(schedules) {
    fill($("#schedules tbody"), schedules, (row, s) => {
      row.dataset.schedule = s.name;
      cell(row, s.name);
      cell(row, s.cron);
      cell(row, s.kind);
      cell(row, when(s.last_tick), "schedule-last");
      cell(row, when(s.next_tick), "schedule-next");
      cell(row, s.missed_ticks + " (" + s.missed_policy + ")");
    });
  }

  function renderBackups(backups) {
    const last = backups.last_good;
    $("#last-backup").textContent = last
      ? "Last good backup: " + when(last.created_at) + " (" + bytes(last.bytes) + ")"
      : "No backup yet.";
    fill($("#backups tbody"), backups.recent, (row, b) => {
      cell(row, when(b.created_at));
      cell(row, bytes(b.bytes));
      cell(row, (b.duration_ms / 1000).toFixed(1) + " s");
      cell(row, b.server_version);
    });
  }

  // One series per queue, aligned on the minutes that have samples.
  function seriesBy(samples, value) {
    const minutes = [...new Set(samples.map((s) => Date.parse(s.at) / 1000))].sort((a, b) => a - b);
    const queues = [...new Set(samples.map((s) => s.queue))].sort();
    const index = new Map(minutes.map((m, i) => [m, i]));
    const data = [minutes];
    for (const queue of queues) {
      const column = new Array(minutes.length).fill(null);
      for (const s of samples) {
        if (s.queue === queue) column[index.get(Date.parse(s.at) / 1000)] = value(s);
      }
      data.push(column);
    }
    return { queues, data };
  }

  const COLORS = ["#2563eb", "#16a34a", "#d97706", "#9333ea", "#dc2626", "#0891b2"];

  function drawChart(id, samples, value) {
    const { queues, data } = seriesBy(samples, value);
    const el = document.getElementById(id);
    const key = queues.join(",");
    const width = Math.max(280, el.clientWidth || 360);
    if (charts[id] && charts[id].key === key) {
      charts[id].plot.setData(data);
      return;
    }
    if (charts[id]) charts[id].plot.destroy();
    const opts = {
      width,
      height: 180,
      series: [{}].concat(
        queues.map((q, i) => ({ label: q, stroke: COLORS[i % COLORS.length], width: 2, spanGaps: true })),
      ),
      // Always the whole window (last hour or day), however few samples there are yet.
      scales: {
        x: {
          time: true,
          range: () => {
            const now = Date.now() / 1000;
            return [now - (range === "day" ? 86400 : 3600), now];
          },
        },
        y: { range: (_u, _min, max) => [0, Math.max(1, max || 0) * 1.1] },
      },
      axes: [{}, { size: 60 }],
    };
    charts[id] = { key, plot: new uPlot(opts, data, el) };
  }

  function renderCharts(samples) {
    if (typeof uPlot === "undefined") return;
    drawChart("chart-throughput", samples, (s) => s.succeeded + s.dead);
    drawChart("chart-latency", samples, (s) => s.duration_p95_ms);
    drawChart("chart-depth", samples, (s) => s.ready);
  }

  function renderUsage(usage) {
    fill($("#usage-tenants tbody"), usage.tenants, (row, t) => {
      cell(row, t.tenant, "usage-tenant");
      cell(row, t.totals.uploads);
      cell(row, bytes(t.totals.stored_bytes));
      cell(row, t.totals.processing_seconds.toFixed(1) + " s");
      cell(row, t.totals.emails_accepted);
      cell(row, t.totals.emails_sent);
    });
    if (typeof uPlot === "undefined") return;
    const days = usage.daily.map((d) => Date.parse(d.day + "T00:00:00Z") / 1000);
    const data = [days, usage.daily.map((d) => d.uploads), usage.daily.map((d) => d.emails_accepted)];
    if (charts.usage) {
      charts.usage.setData(data);
      return;
    }
    const el = document.getElementById("chart-usage");
    charts.usage = new uPlot({
      width: Math.max(280, el.clientWidth || 360),
      height: 180,
      series: [
        {},
        { label: "uploads", stroke: COLORS[0], width: 2 },
        { label: "emails", stroke: COLORS[1], width: 2 },
      ],
      scales: { y: { range: (_u, _min, max) => [0, Math.max(1, max || 0) * 1.1] } },
      axes: [{}, { size: 60 }],
    }, data, el);
  }

  async function refresh() {
    try {
      const response = await fetch("/admin/data?range=" + range, { credentials: "same-origin" });
      if (response.status === 401 || response.status === 403) {
        window.location.reload();
        return;
      }
      if (!response.ok) throw new Error("HTTP " + response.status);
      const data = await response.json();
      renderHealth(data.health);
      renderQueues(data.queues);
      renderWorkers(data.workers);
      $("#outbox").textContent =
        "Outbox: " + data.outbox.unpublished + " unpublished" +
        (data.outbox.oldest_age_seconds ? ", oldest " + Math.round(data.outbox.oldest_age_seconds) + " s" : "") +
        (data.broker_reachable ? "" : " · RabbitMQ unreachable: depths unknown");
      renderDead(data.dead);
      renderWebhooks(data.webhooks);
      renderTaskQueues(data.task_queues);
      renderFailures(data.failures);
      renderSchedules(data.schedules);
      renderBackups(data.backups);
      renderCharts(data.samples);
      renderUsage(data.usage);
      $("#updated").textContent = "updated " + new Date(data.generated_at).toLocaleTimeString();
      document.body.dataset.loaded = "true";
    } catch (error) {
      $("#updated").textContent = "update failed: " + error.message;
    }
  }

  for (const button of document.querySelectorAll("[data-range]")) {
    button.onclick = () => {
      range = button.dataset.range;
      for (const b of document.querySelectorAll("[data-range]")) b.classList.toggle("active", b === button);
      refresh();
    };
  }
  const kindFilter = () => {
    const kind = $("#dead-kind").value;
    return kind ? "?kind=" + encodeURIComponent(kind) : "";
  };
  $("#retry-all").onclick = () => act("POST", "/v1/admin/jobs/retry" + kindFilter(), "Retry all");
  $("#discard-all").onclick = () => {
    if (confirm("Discard every matching dead job for good?")) {
      act("POST", "/v1/admin/jobs/discard" + kindFilter(), "Discard all");
    }
  };

  refresh();
  setInterval(refresh, REFRESH_MS);
})();
