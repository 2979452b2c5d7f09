/**
 * answer-client.js — follow runs of the answer service from a browser, with no dependency.
 *
 * Copy this file into a frontend or import it as is (`import { AnswerClient } from
 * "./answer-client.js"`). It starts a run, follows it live over Server-Sent Events (the
 * browser resends Last-Event-ID after a dropped connection, so nothing is lost or repeated),
 * falls back to polling /status when no event stream is available, cancels, and reads the
 * answer and its evidence. The demo page (app.js) is built on it.
 *
 *   const client = new AnswerClient({ apiKey: "" });
 *   const { run_id } = await client.start({ question: "How many trucks?" });
 *   const follower = client.follow(run_id, {
 *     onStatus: (s) => console.log(s.status),
 *     onProgress: (p) => console.log(p.stage, p.step, p.total_steps),
 *     onDelta: (text) => answer.append(text),
 *     onMode: (mode, why) => console.log(mode, why), // "live" | "reconnecting" | "polling"
 *   });
 *   const final = await follower.done;                 // the terminal status payload
 *   const { content } = await client.output(run_id);   // final.md
 *
 * Errors of the API reject with an ApiError carrying `status`, `code` and `message` (the
 * server's words, meant for a person) and `retryAfter` for 429/503.
 *
 * The contract is docs/api.md.
 */

/**
 * @typedef {"queued"|"running"|"completed"|"completed_with_gaps"|"failed"|"stopped"} RunStatusName
 *
 * @typedef {object} RunStatus  The /status payload (and the data of every "status" event).
 * @property {string} run_id
 * @property {RunStatusName} status
 * @property {string|null} started_at
 * @property {string|null} completed_at
 * @property {string|null} finish_reason
 * @property {{code: string, message: string}|null} error
 *
 * @typedef {object} RunProgress  The data of a "progress" event.
 * @property {string} run_id
 * @property {string} stage
 * @property {string} message
 * @property {number} step
 * @property {number} total_steps
 *
 * @typedef {object} StartRequest
 * @property {string} question              1..4000 characters after trimming
 * @property {string} [run_id]              a letter or digit, then up to 127 of [A-Za-z0-9._-]
 * @property {boolean} [enable_sql]
 * @property {string} [markdown_path]       default: the server's documents folder
 * @property {boolean} [log_llm_payload]
 *
 * @typedef {object} FollowHandlers
 * @property {(status: RunStatus) => void} [onStatus]
 * @property {(progress: RunProgress) => void} [onProgress]
 * @property {(text: string) => void} [onDelta]    a piece of the answer, in order
 * @property {(mode: "live"|"reconnecting"|"polling", why?: string) => void} [onMode]
 * @property {number} [lastEventId]                resume after this event (0: from the start)
 *
 * @typedef {object} Follower
 * @property {Promise<RunStatus>} done   resolves with the terminal status; rejects on 404
 * @property {() => void} stop           stop following (the run goes on; see cancel())
 */

export const TERMINAL = Object.freeze(["completed", "completed_with_gaps", "failed", "stopped"]);

/** An error answer of the API: `status` (HTTP), `code` (stable) and `message` (for a person). */
export class ApiError extends Error {
  /**
   * @param {number} status
   * @param {string} code
   * @param {string} message
   * @param {object|null} body
   * @param {number|null} retryAfter
   */
  constructor(status, code, message, body = null, retryAfter = null) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.body = body;
    this.retryAfter = retryAfter;
  }
}

export class AnswerClient {
  /**
   * @param {object} [options]
   * @param {string} [options.baseUrl]      where the API is ("" for the page's own origin)
   * @param {string|(() => string)} [options.apiKey]  APP_API_KEYS key, or a function giving it
   * @param {number} [options.pollMs]       polling interval when there is no event stream
   * @param {number} [options.firstEventMs] how long to wait for the first event before polling
   * @param {(response: Response) => void} [options.onUnauthorized]  called on every 401
   */
  constructor({
    baseUrl = "",
    apiKey = "",
    pollMs = 2000,
    firstEventMs = 4000,
    onUnauthorized = null,
  } = {}) {
    this.baseUrl = baseUrl.replace(/\/$/, "");
    this.apiKey = apiKey;
    this.pollMs = pollMs;
    this.firstEventMs = firstEventMs;
    this.onUnauthorized = onUnauthorized;
  }

  /** @returns {string} */
  key() {
    return (typeof this.apiKey === "function" ? this.apiKey() : this.apiKey) || "";
  }

  /**
   * One API request; resolves with the JSON body, rejects with ApiError.
   * @param {string} path
   * @param {RequestInit} [init]
   */
  async request(path, init = {}) {
    const key = this.key();
    const response = await fetch(this.baseUrl + path, {
      cache: "no-store",
      ...init,
      headers: {
        accept: "application/json",
        ...(init.body ? { "content-type": "application/json" } : {}),
        ...(key ? { authorization: `Bearer ${key}` } : {}),
        ...(init.headers || {}),
      },
    });
    if (response.status === 401 && this.onUnauthorized) this.onUnauthorized(response);
    let body = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    if (!response.ok) {
      const retry = Number(response.headers.get("Retry-After"));
      throw new ApiError(
        response.status,
        (body && body.code) || "http_error",
        (body && body.message) || `HTTP ${response.status}`,
        body,
        Number.isFinite(retry) && retry > 0 ? retry : null,
      );
    }
    return body;
  }

  /** @param {StartRequest} body  @returns {Promise<{run_id: string, status: "queued", status_url: string, output_url: string, context_url: string}>} */
  start(body) {
    return this.request("/api/v1/runs", { method: "POST", body: JSON.stringify(body) });
  }

  /** @param {string} runId  @returns {Promise<RunStatus>} */
  status(runId) {
    return this.request(`${runPath(runId)}/status`);
  }

  /** The full record: options, status, progress, artifact paths, URLs. @param {string} runId */
  record(runId) {
    return this.request(runPath(runId));
  }

  /** final.md of a finished run: `{run_id, status, content, final_output_path}`. @param {string} runId */
  output(runId) {
    return this.request(`${runPath(runId)}/output`);
  }

  /** context_bundle.json of a finished run: `{run_id, status, context_bundle, ...}`. @param {string} runId */
  context(runId) {
    return this.request(`${runPath(runId)}/context`);
  }

  /** Stop a queued or running run. @param {string} runId  @returns {Promise<RunStatus>} */
  cancel(runId) {
    return this.request(`${runPath(runId)}/cancel`, { method: "POST" });
  }

  /** Newest first. @param {{limit?: number, cursor?: string, status?: RunStatusName}} [query] */
  list(query = {}) {
    const params = new URLSearchParams();
    for (const [name, value] of Object.entries(query)) {
      if (value !== undefined && value !== null) params.set(name, String(value));
    }
    const suffix = params.toString() ? `?${params}` : "";
    return this.request(`/api/v1/runs${suffix}`);
  }

  /** The documents roots, their folders and index state, and the default folder. */
  documents() {
    return this.request("/api/v1/documents");
  }

  /** The URL of a run's event stream (the key goes as ?access_token=: EventSource sends no headers). */
  eventsUrl(runId, lastEventId = 0) {
    const params = new URLSearchParams();
    const key = this.key();
    if (key) params.set("access_token", key);
    if (lastEventId) params.set("last_event_id", String(lastEventId));
    const suffix = params.toString() ? `?${params}` : "";
    return `${this.baseUrl}${runPath(runId)}/events${suffix}`;
  }

  /**
   * Follow a run until it ends: live over SSE, else by polling.
   * @param {string} runId
   * @param {FollowHandlers} [handlers]
   * @returns {Follower}
   */
  follow(runId, handlers = {}) {
    const on = {
      status: handlers.onStatus || (() => {}),
      progress: handlers.onProgress || (() => {}),
      delta: handlers.onDelta || (() => {}),
      mode: handlers.onMode || (() => {}),
    };
    let stopped = false;
    let source = null;
    let timer = null;
    let lastId = handlers.lastEventId || 0;
    let settle;
    let fail;
    const done = new Promise((resolve, reject) => {
      settle = resolve;
      fail = reject;
    });
    const stop = () => {
      stopped = true;
      if (source) source.close();
      clearTimeout(timer);
    };
    const end = (status) => {
      stop();
      settle(status);
    };
    const onStatus = (status) => {
      on.status(status);
      if (TERMINAL.includes(status.status)) end(status);
    };

    const poll = (why) => {
      if (source) source.close();
      source = null;
      on.mode("polling", why);
      const tick = async () => {
        if (stopped) return;
        try {
          const status = await this.status(runId);
          if (stopped) return;
          if (status.status === "running") {
            const record = await this.record(runId).catch(() => null);
            if (record && record.progress && record.progress.stage && !stopped) {
              on.progress({ run_id: runId, ...record.progress });
            }
          }
          onStatus(status);
        } catch (error) {
          if (error instanceof ApiError && error.status === 404) {
            stop();
            fail(error);
            return;
          }
          // A failed poll (network, 5xx) is tried again at the next tick.
        }
        if (!stopped) timer = setTimeout(tick, this.pollMs);
      };
      tick();
    };

    if (typeof globalThis.EventSource !== "function") {
      poll("this browser has no EventSource");
      return { done, stop };
    }
    on.mode("live");
    source = new EventSource(this.eventsUrl(runId, lastId));
    let seen = false;
    timer = setTimeout(() => {
      if (!seen && !stopped) poll("no live event arrived");
    }, this.firstEventMs);
    const handle = (name, use) => {
      source.addEventListener(name, (event) => {
        if (stopped) return;
        const id = Number(event.lastEventId);
        // The server numbers a run's events 1, 2, 3, ...: one at or before what was
        // already seen is a repeat, except the final status, which always ends the stream.
        if (id && id <= lastId && name !== "status") return;
        if (id) lastId = Math.max(lastId, id);
        if (!seen) {
          seen = true;
          clearTimeout(timer);
        }
        use(JSON.parse(event.data));
      });
    };
    handle("status", onStatus);
    handle("progress", (progress) => on.progress(progress));
    handle("answer_delta", (delta) => on.delta(delta.text));
    source.onopen = () => {
      if (!stopped) on.mode("live");
    };
    source.onerror = () => {
      if (stopped) return;
      // The browser reconnects by itself, sending Last-Event-ID; only when it gives up
      // (an HTTP error, or 204 for a run whose end was already seen) does polling take over.
      if (source.readyState === EventSource.CLOSED) {
        clearTimeout(timer);
        poll("the event stream is not available");
      } else {
        on.mode("reconnecting");
      }
    };
    return {
      done,
      stop,
      /** The id of the last event received (for resuming in another follow()). */
      get lastEventId() {
        return lastId;
      },
    };
  }
}

/** @param {string} runId */
function runPath(runId) {
  return `/api/v1/runs/${encodeURIComponent(runId)}`;
}
