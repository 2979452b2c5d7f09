/* Answer service demo page: start a run, follow it live (EventSource first, polling as a
 * fallback), then show the answer, its evidence, gaps and a timeline. Talking to the API
 * (start, follow, cancel, reads) is answer-client.js, the module a frontend can copy.
 *
 * Everything that comes from documents or the API is either set as textContent or rendered
 * as markdown through marked and then DOMPurify: no script or event handler of a document
 * can run (the page's Content-Security-Policy also forbids inline scripts).
 */
import { AnswerClient, ApiError } from "./answer-client.js";

(() => {
  "use strict";

  const API = "/api/v1/runs";
  const ACTIVE = new Set(["queued", "running"]);
  const POLL_MS = 2000;
  const FIRST_EVENT_TIMEOUT_MS = 4000;
  const STATUS_LABEL = {
    queued: "queued",
    running: "running",
    completed: "completed",
    completed_with_gaps: "completed with gaps",
    failed: "failed",
    stopped: "stopped",
  };
  const STAGE_LABEL = {
    load_documents: "Loading documents",
    plan: "Planning",
    retrieve: "Retrieving",
    sql: "Querying tables",
    write: "Writing the answer",
    check: "Checking citations and gaps",
    save: "Saving",
  };

  const TIMELINE_LABEL = {
    load_documents: "Documents",
    plan: "Plan",
    retrieve: "Retrieve",
    sql: "SQL",
    write: "Write",
    check: "Check",
    save: "Save",
  };

  const $ = (id) => document.getElementById(id);
  const el = {
    form: $("ask-form"),
    question: $("question"),
    enableSql: $("enable-sql"),
    markdownPath: $("markdown-path"),
    start: $("start"),
    cancel: $("cancel"),
    formError: $("form-error"),
    runs: $("runs"),
    runsEmpty: $("runs-empty"),
    refreshRuns: $("refresh-runs"),
    welcome: $("welcome"),
    run: $("run"),
    status: $("run-status"),
    mode: $("run-mode"),
    runId: $("run-id"),
    runQuestion: $("run-question"),
    progress: $("progress"),
    stage: $("stage"),
    step: $("step"),
    progressFill: $("progress-fill"),
    message: $("run-message"),
    answer: $("answer"),
    answerEmpty: $("answer-empty"),
    gaps: $("gaps"),
    gapsList: $("gaps-list"),
    timeline: $("timeline"),
    timelineBars: $("timeline-bars"),
    timelineTotal: $("timeline-total"),
    evidence: $("evidence"),
    evidenceList: $("evidence-list"),
    evidenceCount: $("evidence-count"),
  };

  /** The run being shown; replaced (and its followers stopped) when another one opens. */
  let current = null;

  // ---------------------------------------------------------------- markdown, safely

  const PURIFY = {
    USE_PROFILES: { html: true },
    FORBID_TAGS: ["style", "form", "input", "button", "textarea", "select", "iframe", "object", "embed"],
    FORBID_ATTR: ["style", "id", "name"],
  };

  function markdownToFragment(markdown) {
    const html = window.marked.parse(markdown || "", { gfm: true, breaks: false, async: false });
    return window.DOMPurify.sanitize(html, { ...PURIFY, RETURN_DOM_FRAGMENT: true });
  }

  if (window.DOMPurify) {
    // Links from documents open in a new tab and cannot reach back into this page.
    window.DOMPurify.addHook("afterSanitizeAttributes", (node) => {
      const href = node.tagName === "A" ? node.getAttribute("href") : null;
      if (!href) return;
      if (/^(https?:|mailto:)/i.test(href)) {
        node.setAttribute("target", "_blank");
        node.setAttribute("rel", "noopener noreferrer");
      } else if (!href.startsWith("#")) {
        // A link between the documents ("../reference/cli.md#uv") would resolve against
        // this page and open an API 404: keep its text, say where it points.
        node.removeAttribute("href");
        node.setAttribute("class", "doc-link");
        node.setAttribute("title", `A link inside the documents: ${href}`);
      }
    });
  }

  function renderMarkdown(container, markdown) {
    const fragment = markdownToFragment(markdown);
    wrapTables(fragment);
    container.replaceChildren(fragment);
  }

  function wrapTables(root) {
    root.querySelectorAll("table").forEach((table) => {
      const wrap = document.createElement("div");
      wrap.className = "table-wrap";
      // It may scroll sideways: reachable by keyboard, named for screen readers.
      wrap.tabIndex = 0;
      wrap.setAttribute("role", "region");
      wrap.setAttribute("aria-label", "Table (scrolls sideways when wide)");
      table.replaceWith(wrap);
      wrap.appendChild(table);
    });
  }

  /** Turn every "[n]" in text (outside code and links) into a link to evidence item n. */
  function linkCitations(container, run) {
    const walker = document.createTreeWalker(container, NodeFilter.SHOW_TEXT, {
      acceptNode(node) {
        if (!/\[\d+\]/.test(node.nodeValue)) return NodeFilter.FILTER_REJECT;
        if (node.parentElement.closest("a, code, pre")) return NodeFilter.FILTER_REJECT;
        return NodeFilter.FILTER_ACCEPT;
      },
    });
    const nodes = [];
    while (walker.nextNode()) nodes.push(walker.currentNode);
    for (const node of nodes) {
      const fragment = document.createDocumentFragment();
      let last = 0;
      const text = node.nodeValue;
      for (const match of text.matchAll(/\[(\d+)\]/g)) {
        fragment.append(text.slice(last, match.index));
        const n = match[1];
        const link = document.createElement("a");
        link.className = "cite";
        link.href = `#evidence-${n}`;
        link.dataset.cite = n;
        link.dataset.testid = "citation";
        link.textContent = n;
        link.title = `Evidence ${n}`;
        link.addEventListener("click", (event) => {
          event.preventDefault();
          focusEvidence(n);
        });
        fragment.append(link);
        last = match.index + match[0].length;
        if (run) run.cited.add(n);
      }
      fragment.append(text.slice(last));
      node.replaceWith(fragment);
    }
  }

  function focusEvidence(n) {
    const item = document.getElementById(`evidence-${n}`);
    if (!item) return;
    document.querySelectorAll(".ev.highlight").forEach((node) => node.classList.remove("highlight"));
    item.classList.add("highlight");
    item.scrollIntoView({ behavior: "smooth", block: "nearest" });
  }

  // ---------------------------------------------------------------- API key

  // A server with APP_API_KEYS answers 401: ask for a key once, keep it for this tab only
  // (sessionStorage), send it as a Bearer header, and as ?access_token= where EventSource
  // cannot set headers.
  const KEY_STORAGE = "answer-service.api-key";
  const auth = {
    card: $("auth"),
    form: $("auth-form"),
    input: $("api-key"),
    error: $("auth-error"),
  };

  function apiKey() {
    try {
      return sessionStorage.getItem(KEY_STORAGE) || "";
    } catch {
      return "";
    }
  }

  function askForKey() {
    const rejected = apiKey();
    if (rejected) {
      sessionStorage.removeItem(KEY_STORAGE);
      auth.error.textContent = "That key was not accepted.";
    } else if (auth.card.hidden) {
      // Several requests may be refused at once: the first one's words stay.
      auth.error.textContent = "This server needs an API key.";
    }
    show(auth.card);
    auth.input.focus();
  }

  auth.form.addEventListener("submit", (event) => {
    event.preventDefault();
    const key = auth.input.value.trim();
    if (!key) return auth.input.focus();
    sessionStorage.setItem(KEY_STORAGE, key);
    auth.input.value = "";
    hide(auth.card);
    loadDocuments();
    loadRuns();
    if (current) openRun(current.id, { question: el.runQuestion.textContent });
  });

  // ---------------------------------------------------------------- HTTP

  const client = new AnswerClient({
    apiKey: () => apiKey(),
    pollMs: POLL_MS,
    firstEventMs: FIRST_EVENT_TIMEOUT_MS,
    onUnauthorized: () => askForKey(),
  });

  /** A client call as {ok, status, body, retryAfter}: the view code reads results that way. */
  async function settle(promise) {
    try {
      return { ok: true, status: 200, body: await promise, retryAfter: null };
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      return { ok: false, status: error.status, body: error.body, retryAfter: error.retryAfter };
    }
  }

  function api(path, options = {}) {
    return settle(client.request(path, options));
  }

  function errorText(result) {
    const body = result.body || {};
    let text = body.message || `The server answered ${result.status}.`;
    if (Array.isArray(body.detail) && body.detail.length) {
      const first = body.detail[0];
      const field = Array.isArray(first.loc) ? first.loc.filter((p) => p !== "body").join(".") : "";
      if (first.msg && !text.includes(first.msg)) text += ` (${field ? field + ": " : ""}${first.msg})`;
    }
    if (result.retryAfter) text += ` Retry in ${result.retryAfter} s.`;
    return text;
  }

  // ---------------------------------------------------------------- starting a run

  el.form.addEventListener("submit", async (event) => {
    event.preventDefault();
    hide(el.formError);
    const question = el.question.value.trim();
    if (!question) {
      showFormError("Type a question first.");
      el.question.focus();
      return;
    }
    el.start.disabled = true;
    el.start.textContent = "Starting…";
    try {
      const result = await settle(
        client.start({
          question,
          enable_sql: el.enableSql.checked,
          // Left out, the server reads its default folder.
          ...(el.markdownPath.value ? { markdown_path: el.markdownPath.value } : {}),
        }),
      );
      if (!result.ok) {
        showFormError(errorText(result), `Could not start the run (${result.status})`);
        return;
      }
      await openRun(result.body.run_id, { question, reveal: true });
      loadRuns();
    } catch (error) {
      showFormError(`The server could not be reached: ${error.message}`);
    } finally {
      el.start.disabled = false;
      el.start.textContent = "Start";
    }
  });

  el.question.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.metaKey || event.ctrlKey)) el.form.requestSubmit();
  });

  el.cancel.addEventListener("click", async () => {
    const run = current;
    if (!run) return;
    el.cancel.disabled = true;
    const result = await settle(client.cancel(run.id)).catch(() => null);
    if (run !== current) return;
    el.cancel.disabled = false;
    if (!result) return showMessage("error", "The cancel request did not reach the server.");
    if (!result.ok) return showMessage("error", errorText(result), "Could not cancel");
    applyStatus(run, result.body);
    if (!run.terminal) showMessage("info", "Stopping the run…");
  });

  function showFormError(text, title) {
    el.formError.replaceChildren();
    if (title) {
      const strong = document.createElement("strong");
      strong.textContent = title;
      el.formError.append(strong);
    }
    el.formError.append(text);
    show(el.formError);
  }

  // ---------------------------------------------------------------- opening and following

  async function openRun(runId, { question, reveal = false } = {}) {
    stopFollowing();
    const run = {
      id: runId,
      answer: "",
      status: null,
      terminal: false,
      finished: false,
      cited: new Set(),
      follower: null,
      mode: null,
      renderQueued: false,
      reveal: reveal && isNarrow(), // on a phone, bring the run into view once it has content
    };
    current = run;
    resetView(run, question);
    history.replaceState(null, "", `#run=${encodeURIComponent(runId)}`);
    markCurrentInList();

    const record = await api(`${API}/${encodeURIComponent(runId)}`).catch(() => null);
    if (run !== current) return;
    if (!record || !record.ok) {
      showMessage("error", record ? errorText(record) : "The server could not be reached.", "Could not open the run");
      return;
    }
    el.runQuestion.textContent = record.body.question;
    applyProgress(run, record.body.progress);
    applyStatus(run, record.body);
    if (!run.terminal) follow(run);
  }

  function stopFollowing() {
    if (current && current.follower) current.follower.stop();
  }

  function follow(run) {
    const mine = (handler) => (value, why) => {
      if (run === current && !run.terminal) handler(value, why);
    };
    run.follower = client.follow(run.id, {
      onStatus: mine((status) => applyStatus(run, status)),
      onProgress: mine((progress) => applyProgress(run, progress)),
      onDelta: mine((text) => {
        run.answer += text;
        scheduleAnswerRender(run);
      }),
      onMode: mine((mode, why) => {
        run.mode = mode === "polling" ? "polling" : "live";
        const label = {
          live: "live",
          reconnecting: "live · reconnecting",
          polling: `polling every ${POLL_MS / 1000} s`,
        };
        setMode(label[mode] || mode, why);
      }),
    });
    run.follower.done.catch((error) => {
      if (run !== current) return;
      const gone = error instanceof ApiError && error.status === 404;
      showMessage("error", gone ? error.message : String(error), gone ? "The run is gone" : "Following the run failed");
    });
  }

  // ---------------------------------------------------------------- applying updates

  function applyStatus(run, status) {
    // Terminal states never change: a late event (or a replayed one) must not undo the end
    // that the cancel answer or a poll has already shown.
    if (run.terminal) return;
    run.status = status.status;
    el.status.dataset.status = status.status;
    el.status.textContent = STATUS_LABEL[status.status] || status.status;
    const active = ACTIVE.has(status.status);
    el.cancel.hidden = !active;
    el.run.dataset.status = status.status;
    if (status.status === "queued") {
      el.stage.textContent = "Waiting for a free worker";
      show(el.progress);
    }
    if (!active) {
      run.terminal = true;
      if (run.follower) run.follower.stop();
      finish(run, status);
    }
  }

  function applyProgress(run, progress) {
    if (!progress || !progress.stage) return;
    show(el.progress);
    el.stage.textContent = STAGE_LABEL[progress.stage] || progress.stage;
    el.stage.title = progress.message || "";
    el.stage.dataset.stage = progress.stage;
    if (progress.step && progress.total_steps) {
      el.step.textContent = `step ${progress.step} of ${progress.total_steps}`;
      el.progressFill.style.width = `${Math.min(100, (100 * progress.step) / progress.total_steps)}%`;
    }
  }

  function scheduleAnswerRender(run) {
    if (run.renderQueued) return;
    run.renderQueued = true;
    requestAnimationFrame(() => {
      run.renderQueued = false;
      if (run !== current || run.terminal) return;
      el.answer.classList.add("streaming");
      renderMarkdown(el.answer, run.answer);
      linkCitations(el.answer, null);
      hide(el.answerEmpty);
      revealRun(run);
    });
  }

  async function finish(run, status) {
    el.cancel.hidden = true;
    // The label says how the run was followed, no longer that it is live.
    if (run.mode) el.mode.textContent = run.mode === "polling" ? "followed by polling" : "followed live";
    el.answer.classList.remove("streaming");
    hide(el.progress); // the timeline below shows the stages of a finished run
    const reason = status.finish_reason;
    if (status.status === "failed") {
      const message = status.error ? status.error.message : "The run failed.";
      const title = reason === "interrupted" ? "The server stopped while this run was active" : "The run failed";
      showMessage("error", message, title);
    } else if (status.status === "stopped") {
      const title = reason === "timeout" ? "The run hit its time limit" : "The run was cancelled";
      showMessage("warn", status.error ? status.error.message : "It stopped before the answer was finished.", title);
    } else if (status.status === "completed_with_gaps") {
      showMessage("warn", "Some part of the question is not covered by the documents; see the gaps below.", "Answered with gaps");
    }

    const base = `${API}/${encodeURIComponent(run.id)}`;
    const [output, context] = await Promise.all([
      api(`${base}/output`).catch(() => null),
      api(`${base}/context`).catch(() => null),
    ]);
    if (run !== current) return;
    run.finished = true;
    // On a phone the reader is at the answer: where it is on screen now, just before the
    // answer and the evidence are rendered again, it stays (measured after the fetches: the
    // reader may have scrolled meanwhile). A run not yet brought into view (its reveal is
    // still pending: see revealRun) is brought there below, after the final layout.
    const anchor = isNarrow() && !run.reveal ? el.answer.getBoundingClientRect().top : null;
    const bundle = context && context.ok ? context.body.context_bundle : null;
    if (bundle) renderEvidence(run, bundle);
    if (output && output.ok) {
      run.answer = output.body.content;
      renderMarkdown(el.answer, run.answer);
      markGapSection(el.answer);
      dropSources(el.answer);
      linkCitations(el.answer, run);
      hide(el.answerEmpty);
    } else {
      if (!run.answer) el.answer.replaceChildren();
      if (!run.answer) show(el.answerEmpty);
      if (output && output.status >= 500) showMessage("error", errorText(output), "The answer could not be read");
    }
    if (bundle) {
      markCited(run);
      renderGaps(bundle);
      renderTimeline(bundle.timings || {});
    }
    unlinkDeadCitations(el.answer);
    if (anchor !== null) {
      const moved = el.answer.getBoundingClientRect().top - anchor;
      if (Math.abs(moved) > 1) window.scrollBy(0, moved);
    }
    revealRun(run);
    el.run.dataset.ready = "true";
    loadRuns();
  }

  /** The answer's own "Sources" list repeats the evidence panel beside it: the page drops it
   *  (final.md keeps it, for readers of the file). */
  function dropSources(container) {
    for (const heading of container.querySelectorAll("h2")) {
      if (heading.textContent.trim() !== "Sources") continue;
      const list = heading.nextElementSibling;
      if (list && /^(UL|OL)$/.test(list.tagName)) list.remove();
      heading.remove();
    }
  }

  /** Citations whose evidence never arrived (a cancelled or failed run) stay plain text. */
  function unlinkDeadCitations(container) {
    for (const link of container.querySelectorAll("a.cite")) {
      if (document.getElementById(`evidence-${link.dataset.cite}`)) continue;
      const text = span("cite-dead", `[${link.dataset.cite}]`);
      text.title = "This run kept no evidence for this citation";
      link.replaceWith(text);
    }
  }

  function markGapSection(container) {
    for (const heading of container.querySelectorAll("h2")) {
      if (/do not cover/i.test(heading.textContent)) {
        heading.classList.add("gap-heading");
        const next = heading.nextElementSibling;
        if (next && /^(UL|OL|P)$/.test(next.tagName)) next.classList.add("gap-section");
      }
    }
  }

  // ---------------------------------------------------------------- evidence, gaps, timeline

  function renderEvidence(run, bundle) {
    const items = Array.isArray(bundle.evidence) ? bundle.evidence : [];
    const best = Math.max(0, ...items.map((item) => (typeof item.score === "number" ? item.score : 0)));
    el.evidenceList.replaceChildren(...items.map((item) => evidenceItem(item, best)));
    el.evidenceCount.textContent = `${items.length} item${items.length === 1 ? "" : "s"}`;
    show(el.evidence);
  }

  function evidenceItem(item, best) {
    const li = document.createElement("li");
    li.className = "ev";
    li.id = `evidence-${item.id}`;
    li.dataset.testid = "evidence-item";
    li.dataset.evidenceId = String(item.id);

    const head = document.createElement("div");
    head.className = "ev-head";
    head.append(span("ev-num", String(item.id)));
    if (item.kind === "sql") {
      head.append(span("ev-path", `table ${item.table}`), span("ev-kind", "SQL"));
    } else {
      const path = span("ev-path", item.path || "");
      path.dataset.testid = "evidence-path";
      head.append(path);
    }
    if (typeof item.score === "number" && item.score > 0 && best > 0) {
      const share = Math.max(0, Math.min(1, item.score / best));
      const bar = span("ev-score", "");
      bar.setAttribute("role", "img");
      bar.setAttribute("aria-label", `relevance ${Math.round(share * 100)} % of the best item`);
      bar.title = `relevance: ${Math.round(share * 100)} % of the best item (retrieval score ${item.score.toFixed(2)})`;
      const fill = span("ev-score-fill", "");
      fill.style.width = `${Math.round(share * 100)}%`;
      bar.append(fill);
      head.append(bar);
    }
    li.append(head);

    if (item.kind === "sql") {
      const code = document.createElement("pre");
      code.className = "sql-code";
      code.dataset.testid = "evidence-sql";
      code.textContent = item.sql || "";
      li.append(code, sqlTable(item));
    } else {
      const meta = document.createElement("p");
      meta.className = "ev-heading";
      meta.textContent = item.heading_path || item.title || "";
      if (item.line_start) {
        const lines = item.line_end && item.line_end !== item.line_start
          ? `lines ${item.line_start}–${item.line_end}`
          : `line ${item.line_start}`;
        meta.append(" · ", span("ev-lines", lines));
      }
      const body = document.createElement("div");
      body.className = "ev-body markdown";
      body.dataset.testid = "evidence-text";
      renderMarkdown(body, item.text || "");
      li.append(meta, body);
    }
    return li;
  }

  function sqlTable(item) {
    const wrap = document.createElement("div");
    wrap.className = "table-wrap";
    const table = document.createElement("table");
    table.className = "sql-table";
    table.dataset.testid = "evidence-rows";
    const headRow = document.createElement("tr");
    for (const column of item.columns || []) {
      const th = document.createElement("th");
      th.textContent = column;
      headRow.append(th);
    }
    const thead = document.createElement("thead");
    thead.append(headRow);
    const tbody = document.createElement("tbody");
    for (const row of item.rows || []) {
      const tr = document.createElement("tr");
      for (const value of row) {
        const td = document.createElement("td");
        if (typeof value === "number") {
          td.className = "num";
          td.textContent = value.toLocaleString("en");
        } else {
          td.textContent = value === null ? "—" : String(value);
        }
        tr.append(td);
      }
      tbody.append(tr);
    }
    table.append(thead, tbody);
    wrap.append(table);
    const count = document.createElement("p");
    count.className = "muted small";
    count.textContent = `${item.row_count ?? (item.rows || []).length} row(s)${item.truncated ? ", truncated" : ""}`;
    const holder = document.createElement("div");
    holder.append(wrap, count);
    return holder;
  }

  function markCited(run) {
    for (const n of run.cited) {
      const item = document.getElementById(`evidence-${n}`);
      if (item) item.classList.add("cited");
    }
  }

  function renderGaps(bundle) {
    const gaps = Array.isArray(bundle.gaps) ? bundle.gaps : [];
    if (!gaps.length) return hide(el.gaps);
    el.gapsList.replaceChildren(
      ...gaps.map((gap) => {
        const li = document.createElement("li");
        li.dataset.testid = "gap";
        li.textContent = gap.statement || gap.text || "";
        if (Array.isArray(gap.missing_terms) && gap.missing_terms.length) {
          li.append(" ", span("terms", `(missing: ${gap.missing_terms.join(", ")})`));
        }
        return li;
      }),
    );
    show(el.gaps);
  }

  function renderTimeline(timings) {
    const entries = Object.entries(timings).filter(([, seconds]) => typeof seconds === "number");
    if (!entries.length) return hide(el.timeline);
    const max = Math.max(...entries.map(([, s]) => s), 1e-6);
    const total = entries.reduce((sum, [, s]) => sum + s, 0);
    el.timelineTotal.textContent = `· ${formatSeconds(total)} in total`;
    el.timelineBars.replaceChildren(
      ...entries.map(([stage, seconds]) => {
        const li = document.createElement("li");
        li.className = "bar-row";
        li.dataset.testid = "timeline-bar";
        li.dataset.stage = stage;
        const name = span("bar-name", TIMELINE_LABEL[stage] || stage);
        name.title = stage;
        const track = span("bar-track", "");
        const fill = span("bar-fill", "");
        fill.style.width = `${(100 * seconds) / max}%`;
        track.append(fill);
        li.append(name, track, span("bar-value", formatSeconds(seconds)));
        return li;
      }),
    );
    show(el.timeline);
  }

  function formatSeconds(seconds) {
    if (seconds < 1) return `${(seconds * 1000).toFixed(seconds < 0.01 ? 1 : 0)} ms`;
    return `${seconds.toFixed(2)} s`;
  }

  // ---------------------------------------------------------------- recent runs

  let runsRequest = 0;
  async function loadRuns() {
    const ticket = ++runsRequest;
    const result = await api(`${API}?limit=20`).catch(() => null);
    if (ticket !== runsRequest) return;
    if (!result || !result.ok) {
      el.runsEmpty.textContent = "The list of runs could not be loaded.";
      show(el.runsEmpty);
      return;
    }
    const items = result.body.items || [];
    el.runs.replaceChildren(...items.map(runItem));
    el.runsEmpty.textContent = "No runs yet.";
    el.runsEmpty.hidden = items.length > 0;
    markCurrentInList();
  }

  function runItem(summary) {
    const li = document.createElement("li");
    li.dataset.runId = summary.run_id;
    li.dataset.testid = "run-item";
    const button = document.createElement("button");
    button.type = "button";
    const q = span("run-item-q", summary.question);
    const meta = span("run-item-meta", "");
    const badge = span("badge badge-sm", STATUS_LABEL[summary.status] || summary.status);
    badge.dataset.status = summary.status;
    meta.append(badge, span("", relativeTime(summary.created_at)));
    button.append(q, meta);
    button.title = summary.run_id;
    button.addEventListener("click", () => {
      hide(el.formError);
      openRun(summary.run_id, { question: summary.question, reveal: true });
    });
    li.append(button);
    return li;
  }

  function markCurrentInList() {
    for (const li of el.runs.children) {
      const here = Boolean(current) && li.dataset.runId === current.id;
      li.classList.toggle("current", here);
      // The list scrolls on its own: bring the current run into its view, not the page's.
      if (here && el.runs.scrollHeight > el.runs.clientHeight) {
        const top = li.offsetTop - el.runs.offsetTop;
        if (top < el.runs.scrollTop || top + li.offsetHeight > el.runs.scrollTop + el.runs.clientHeight) {
          el.runs.scrollTop = top - el.runs.clientHeight / 2;
        }
      }
    }
  }

  function relativeTime(iso) {
    const then = Date.parse(iso);
    if (Number.isNaN(then)) return iso || "";
    const seconds = Math.max(0, (Date.now() - then) / 1000);
    if (seconds < 60) return "just now";
    if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
    if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
    return new Date(then).toISOString().slice(0, 10);
  }

  el.refreshRuns.addEventListener("click", loadRuns);

  // ---------------------------------------------------------------- view helpers

  function resetView(run, question) {
    hide(el.welcome);
    show(el.run);
    delete el.run.dataset.ready;
    el.run.dataset.runId = run.id;
    el.runId.textContent = run.id;
    el.runQuestion.textContent = question || "";
    el.status.dataset.status = "";
    el.status.textContent = "…";
    el.mode.textContent = "";
    el.stage.textContent = "";
    el.step.textContent = "";
    el.progressFill.style.width = "0";
    hide(el.progress);
    hide(el.message);
    el.answer.replaceChildren();
    el.answer.classList.remove("streaming");
    hide(el.answerEmpty);
    hide(el.gaps);
    hide(el.timeline);
    hide(el.evidence);
    el.evidenceList.replaceChildren();
    el.cancel.hidden = true;
    el.cancel.disabled = false;
  }

  function isNarrow() {
    return window.matchMedia("(max-width: 820px)").matches;
  }

  /** On a phone, bring the run up to the top of the screen. While the page is still too short
   *  for that (the first streamed piece is a few words), the scroll stops short: the reveal
   *  then stays pending, and the next render takes the run further, the end's last of all,
   *  once the final answer and evidence are in place. The reader's own scrolling ends it. */
  function revealRun(run) {
    if (!run.reveal || run !== current) return;
    el.run.scrollIntoView({ block: "start" });
    const margin = parseFloat(getComputedStyle(el.run).scrollMarginTop) || 0;
    if (el.run.getBoundingClientRect().top <= margin + 1) run.reveal = false;
  }

  // A reader who scrolls (wheel, touch, keys) while a reveal is pending is never pulled back.
  const SCROLL_KEYS = new Set(["ArrowUp", "ArrowDown", "PageUp", "PageDown", "Home", "End", " "]);
  function readerScrolls() {
    if (current) current.reveal = false;
  }
  window.addEventListener("wheel", readerScrolls, { passive: true });
  window.addEventListener("touchmove", readerScrolls, { passive: true });
  window.addEventListener("keydown", (event) => {
    if (SCROLL_KEYS.has(event.key)) readerScrolls();
  });

  function setMode(text, why) {
    el.mode.textContent = text;
    el.mode.dataset.mode = text.startsWith("polling") ? "polling" : "live";
    el.mode.title = why || "";
  }

  function showMessage(kind, text, title) {
    el.message.className = `alert alert-${kind}`;
    el.message.dataset.kind = kind;
    el.message.replaceChildren();
    if (title) {
      const strong = document.createElement("strong");
      strong.textContent = title;
      el.message.append(strong);
    }
    el.message.append(text);
    show(el.message);
  }

  function span(className, text) {
    const node = document.createElement("span");
    if (className) node.className = className;
    node.textContent = text;
    return node;
  }

  function show(node) {
    node.hidden = false;
  }

  function hide(node) {
    node.hidden = true;
  }

  // ---------------------------------------------------------------- documents

  async function loadDocuments() {
    const result = await api("/api/v1/documents").catch(() => null);
    if (!result || !result.ok || !result.body) return;  // keep "Server default"
    const chosen = el.markdownPath.value;
    const options = [];
    for (const root of result.body.roots) {
      for (const folder of root.folders) {
        const option = document.createElement("option");
        option.value = folder.path;
        const files = `${folder.files} file${folder.files === 1 ? "" : "s"}`;
        option.textContent = `${folder.path} (${files})`;
        options.push(option);
      }
    }
    if (!options.length) return;
    el.markdownPath.replaceChildren(...options);
    el.markdownPath.value = chosen || result.body.default;
  }

  // ---------------------------------------------------------------- start

  loadDocuments();
  loadRuns();
  const fromHash = /^#run=(.+)$/.exec(location.hash);
  if (fromHash) openRun(decodeURIComponent(fromHash[1]));
  document.documentElement.dataset.ready = "true";
})();
