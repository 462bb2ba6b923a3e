// Reports → an OpenTelemetry collector, as OTLP log records over HTTP (protobuf, gzip), without
// ever making the ring-buffer reader wait: add() writes the report into the batch being filled
// (encode.ts) and returns; compression runs on a worker thread, requests are asynchronous. The
// queue, delivery and retries, and the flush at stop: README, "OTLP export".
import { gzip } from "node:zlib";
import { promisify } from "node:util";
import { type AccessRecord, KmeshText } from "../../accesslog/format.ts";
import type { WallTime } from "../../kernel/clock.ts";
import { classifyFetchError, oneLine, tlsOptions } from "../../kube/http.ts";
import type { Logger } from "../../log.ts";
import { PROGRAM_NAME, VERSION } from "../../options.ts";
import { RECORD_ATTRIBUTES } from "./attributes.ts";
import { LogsRequestWriter } from "./encode.ts";
import { parseHeaders, type ExporterSettings } from "./settings.ts";

/** Requests at once: enough to keep a distant collector busy, few enough to stay polite. */
const MAX_IN_FLIGHT = 2;
const FIRST_BACKOFF_MS = 1_000;
const MAX_BACKOFF_MS = 30_000;
/** A Retry-After longer than this is cut to it (the queue would overflow long before). */
const MAX_RETRY_AFTER_MS = 300_000;
/** gzip level 1: under a third of level 6's CPU for 1.5 times its bytes (README, "OTLP encoding"). */
const GZIP_LEVEL = 1;
/** Statuses OTLP/HTTP asks a client to retry. */
const RETRYABLE = new Set([429, 502, 503, 504]);

const gzipAsync = promisify(gzip);

/** What the exporter counts, for /metrics. */
export interface ExporterStats {
  /** reports accepted and not yet delivered or dropped */
  queued: number;
  /** reports the collector took */
  sent: number;
  /** reports dropped: queue full, refused by the collector, still queued at stop */
  droppedQueueFull: number;
  droppedRejected: number;
  droppedAtStop: number;
  /** requests answered 2xx, and requests that failed (retried or refused) */
  requests: number;
  requestFailures: number;
}

/** What the exporter needs from outside, replaceable in unit tests. */
export interface ExporterDeps {
  fetch: typeof fetch;
  /** wall-clock time now: the LogRecords' observed time */
  now: () => WallTime;
  random: () => number;
}

/** Wall-clock time now from the high-resolution timer (microseconds). */
export function wallNow(): WallTime {
  const ms = performance.timeOrigin + performance.now();
  const sec = Math.floor(ms / 1000);
  return { sec, nsec: Math.min(999_999_999, Math.round((ms - sec * 1000) * 1e6)) };
}

interface Batch {
  records: number;
  body: Uint8Array;
  /** when it was last sent (Date.now()) */
  sentAt: number;
}

type Outcome =
  | { kind: "delivered"; rejected: number; message: string }
  | { kind: "retry"; problem: string; afterMs: number | null }
  | { kind: "refused"; problem: string };

export class OtlpExporter {
  readonly #settings: ExporterSettings;
  readonly #log: Logger;
  readonly #deps: ExporterDeps;
  readonly #writer: LogsRequestWriter;
  readonly #stats: ExporterStats = { queued: 0, sent: 0, droppedQueueFull: 0, droppedRejected: 0, droppedAtStop: 0, requests: 0, requestFailures: 0 };
  /** Batches ready to go, oldest first (a retried one goes back to the front). */
  readonly #ready: Batch[] = [];
  #compressing = 0;
  #inFlight = 0;
  #batchTimer: Timer | null = null;
  #retryTimer: Timer | null = null;
  #pausedUntil = 0;
  #failures = 0;
  #lastFailureAt = 0;
  /** The kind of failure said last (one notice per kind), null while delivery works. */
  #failing: string | null = null;
  #refusing: string | null = null;
  #dropping = false;
  #closing = false;
  /** Set once close() has given up on what was left: late answers change nothing. */
  #closed = false;
  /** Aborts the requests still in flight when close() gives up. */
  readonly #abort = new AbortController();
  /** Resolves whenever something changed (a batch delivered, dropped, compressed): close() waits on it. */
  #changed: (() => void) | null = null;

  constructor(settings: ExporterSettings, log: Logger, deps: Partial<ExporterDeps> = {}) {
    this.#settings = settings;
    this.#log = log;
    this.#deps = { fetch: deps.fetch ?? fetch, now: deps.now ?? wallNow, random: deps.random ?? Math.random };
    this.#writer = new LogsRequestWriter(new KmeshText(), settings.resource, { name: PROGRAM_NAME, version: VERSION }, RECORD_ATTRIBUTES);
    if (settings.insecureSkipVerify && settings.url.startsWith("https:")) {
      log.warn(
        `TLS verification of the OTLP collector at ${settings.url} is OFF (--otlp-insecure-skip-verify): ` +
          "whoever can intercept that connection receives the access log and the headers",
      );
    }
    log.info(`sending every report to the OTLP collector at ${settings.url} (up to ${settings.queueSize} queued)`);
  }

  get stats(): Readonly<ExporterStats> {
    return this.#stats;
  }

  /** Queues the report of `r`: encoded at once, sent with its batch; dropped when the queue is full. */
  add(r: AccessRecord): void {
    const settings = this.#settings;
    if (this.#closing) {
      this.#stats.droppedAtStop++;
      return;
    }
    if (this.#stats.queued >= settings.queueSize) return this.#drop();
    this.#writer.add(r, this.#deps.now());
    this.#stats.queued++;
    if (this.#writer.count >= settings.batchSize) this.#seal();
    else if (this.#batchTimer === null) this.#batchTimer = setTimeout(() => this.#seal(), settings.batchDelayMs);
  }

  #drop(): void {
    this.#stats.droppedQueueFull++;
    if (this.#dropping) return;
    this.#dropping = true;
    this.#log.warn(
      `OTLP export: the queue is full (${this.#settings.queueSize} reports waiting for ${this.#settings.url}` +
        `${this.#failing === null ? "" : `, ${this.#failing}`}): dropping new reports, counted in ` +
        `kmesh_accesslog_otlp_records_dropped_total{reason="queue_full"}; make the collector keep up, or raise --otlp-queue-size`,
    );
  }

  /** The batch being filled is done: compressed (off this thread), then ready to go. */
  #seal(): void {
    if (this.#batchTimer !== null) clearTimeout(this.#batchTimer);
    this.#batchTimer = null;
    const records = this.#writer.count;
    if (records === 0) return;
    const request = this.#writer.finish();
    this.#compressing++;
    gzipAsync(request, { level: GZIP_LEVEL }).then(
      (body) => {
        this.#compressing--;
        this.#ready.push({ records, body, sentAt: 0 });
        this.#pump();
      },
      (error: unknown) => {
        this.#compressing--;
        this.#stats.queued -= records;
        this.#stats.droppedRejected += records;
        this.#log.error(`OTLP export: could not compress a batch of ${records} reports (${(error as Error).message}): they are dropped`);
        this.#pump();
      },
    );
  }

  /** Sends what is ready, as far as the limit on requests and a pause after a failure allow. */
  #pump(): void {
    this.#signal();
    if (this.#closed) return; // what was left is counted as dropped: it must not go now
    const wait = this.#pausedUntil - Date.now();
    if (wait > 0) {
      if (this.#retryTimer === null && this.#ready.length > 0) {
        this.#retryTimer = setTimeout(() => {
          this.#retryTimer = null;
          this.#pump();
        }, wait);
      }
      return;
    }
    while (this.#inFlight < MAX_IN_FLIGHT && this.#ready.length > 0 && this.#pausedUntil <= Date.now()) {
      void this.#send(this.#ready.shift()!);
    }
  }

  async #send(batch: Batch): Promise<void> {
    this.#inFlight++;
    batch.sentAt = Date.now();
    const outcome = await this.#post(batch.body);
    this.#inFlight--;
    if (this.#closed) return;
    const stats = this.#stats;
    switch (outcome.kind) {
      case "delivered": {
        // A collector cannot refuse more records than it was sent.
        const rejected = Math.min(outcome.rejected, batch.records);
        stats.requests++;
        stats.queued -= batch.records;
        stats.sent += batch.records - rejected;
        stats.droppedRejected += rejected;
        if (rejected > 0) this.#refused(`partial success: ${rejected} of ${batch.records} refused${outcome.message ? ` (${outcome.message})` : ""}`, 0);
        this.#recovered();
        break;
      }
      case "retry":
        stats.requestFailures++;
        this.#ready.unshift(batch);
        this.#failed(outcome.problem, outcome.afterMs, batch.sentAt);
        break;
      case "refused":
        stats.requestFailures++;
        stats.queued -= batch.records;
        stats.droppedRejected += batch.records;
        this.#refused(outcome.problem, batch.records);
        this.#recovered();
        break;
    }
    if (this.#dropping && stats.queued < this.#settings.queueSize / 2) {
      this.#dropping = false;
      this.#log.info(`OTLP export: the queue has room again; ${stats.droppedQueueFull} reports dropped so far because it was full`);
    }
    this.#pump();
  }

  /**
   * A retryable failure: pause requests for the collector's Retry-After, else the next backoff.
   * Requests that were already on their way when the last failure came are part of it: they do
   * not lengthen the backoff.
   */
  #failed(problem: string, afterMs: number | null, sentAt: number): void {
    if (sentAt >= this.#lastFailureAt) this.#failures++;
    this.#lastFailureAt = Date.now();
    const backoff = Math.min(MAX_BACKOFF_MS, FIRST_BACKOFF_MS * 2 ** (this.#failures - 1)) * (0.8 + 0.4 * this.#deps.random());
    const delay = afterMs === null ? backoff : Math.min(afterMs, MAX_RETRY_AFTER_MS);
    this.#pausedUntil = Math.max(this.#pausedUntil, Date.now() + delay);
    const kind = problem.replace(/:.*$/, "");
    if (kind === this.#failing) return;
    this.#failing = kind;
    this.#log.warn(
      `OTLP export to ${this.#settings.url} failed (${problem}); retrying in ${(delay / 1000).toFixed(1)} s and on, ` +
        `with the reports kept in the queue (${this.#stats.queued} of at most ${this.#settings.queueSize})`,
    );
  }

  #recovered(): void {
    if (this.#failing !== null) {
      this.#log.info(`OTLP export to ${this.#settings.url} works again (after ${this.#failures} failed requests)`);
    }
    this.#failing = null;
    this.#failures = 0;
  }

  #refused(problem: string, records: number): void {
    const kind = problem.replace(/:.*$/, "");
    if (kind === this.#refusing) return;
    this.#refusing = kind;
    this.#log.warn(
      `OTLP export: the collector at ${this.#settings.url} refused ${records > 0 ? `a request of ${records} reports` : "reports"} (${problem}); ` +
        `they are dropped, counted in kmesh_accesslog_otlp_records_dropped_total{reason="rejected"}` +
        `${/^40[13]/.test(problem) ? ": check the credentials in --otlp-headers-file" : /^404/.test(problem) ? ": check the path of --otlp-endpoint" : /^413/.test(problem) ? ": lower --otlp-batch-size" : ""}`,
    );
  }

  /** One request, its answer turned into an outcome; never throws. */
  async #post(body: Uint8Array): Promise<Outcome> {
    const settings = this.#settings;
    const headers: Record<string, string> = { "content-type": "application/x-protobuf", "content-encoding": "gzip" };
    const extra = settings.headers?.read();
    if (extra?.ok === false) return { kind: "retry", problem: `--otlp-headers-file: ${extra.problem}`, afterMs: null };
    if (extra !== undefined) for (const [name, value] of parseHeaders(extra.value, settings.headers!.path)) headers[name] = value;
    const ca = settings.ca?.read();
    if (ca?.ok === false) return { kind: "retry", problem: `--otlp-ca-file: ${ca.problem}`, afterMs: null };
    const tls = tlsOptions(settings.insecureSkipVerify, ca?.value ?? null);
    let response: Response;
    let answer: Uint8Array;
    try {
      response = await this.#deps.fetch(settings.url, {
        method: "POST",
        headers,
        body,
        signal: AbortSignal.any([AbortSignal.timeout(settings.timeoutMs), this.#abort.signal]),
        redirect: "error",
        ...(settings.url.startsWith("https:") ? { tls } : {}),
      });
      answer = new Uint8Array(await response.arrayBuffer());
    } catch (error) {
      const failure = classifyFetchError(error, settings.timeoutMs);
      return { kind: "retry", problem: `${failure.kind}: ${failure.detail}`, afterMs: null };
    }
    const status = `${response.status}${response.statusText ? ` ${response.statusText}` : ""}`;
    if (response.status >= 200 && response.status < 300) return { kind: "delivered", ...partialSuccess(answer) };
    if (RETRYABLE.has(response.status)) {
      return { kind: "retry", problem: status, afterMs: retryAfterMs(response.headers.get("retry-after"), Date.now()) };
    }
    return { kind: "refused", problem: status };
  }

  #signal(): void {
    const changed = this.#changed;
    this.#changed = null;
    changed?.();
  }

  /** Until something changes or `ms` pass. */
  #nextChange(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.#changed = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  /**
   * Sends what is queued within --otlp-flush-timeout, at once (a pause from an earlier failure is
   * forgotten; one that comes now is kept); what is left then is dropped and counted. Says what
   * became of the reports.
   */
  async close(): Promise<void> {
    this.#closing = true;
    this.#seal();
    this.#pausedUntil = 0;
    const deadline = Date.now() + this.#settings.flushTimeoutMs;
    this.#pump();
    while (this.#stats.queued > 0 && Date.now() < deadline) await this.#nextChange(deadline - Date.now());
    this.#closed = true;
    this.#abort.abort();
    for (const timer of [this.#batchTimer, this.#retryTimer]) if (timer !== null) clearTimeout(timer);
    const stats = this.#stats;
    const left = stats.queued;
    stats.droppedAtStop += left;
    stats.queued = 0;
    const dropped = stats.droppedQueueFull + stats.droppedRejected + stats.droppedAtStop;
    this.#log.info(`OTLP export stopped: ${stats.sent} reports delivered to ${this.#settings.url}, ${dropped} dropped`);
    if (left > 0) {
      this.#log.warn(
        `OTLP export: ${left} reports were still queued when the ${this.#settings.flushTimeoutMs / 1000} s of --otlp-flush-timeout ran out: they are lost` +
          `${this.#failing === null ? "" : ` (the collector: ${this.#failing})`}`,
      );
    }
  }
}

/**
 * Retry-After in ms: delay-seconds or an HTTP date (RFC 9110); null when absent or unreadable
 * (the backoff applies).
 */
export function retryAfterMs(value: string | null, now: number): number | null {
  if (value === null) return null;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  // An IMF-fixdate names its day and month: anything without letters is not one.
  const date = /[a-z]/i.test(text) ? Date.parse(text) : Number.NaN;
  return Number.isNaN(date) ? null : Math.max(0, date - now);
}

/**
 * ExportLogsServiceResponse.partial_success (field 1): rejected_log_records (1, int64) and
 * error_message (2, string). A body that is not that message (a proxy's text) reads as none.
 */
export function partialSuccess(body: Uint8Array): { rejected: number; message: string } {
  const none = { rejected: 0, message: "" };
  try {
    const outer = fields(body);
    const inner = outer.get(1);
    if (!(inner instanceof Uint8Array)) return none;
    const values = fields(inner);
    const rejected = values.get(1);
    const message = values.get(2);
    return {
      rejected: typeof rejected === "number" ? rejected : 0,
      message: message instanceof Uint8Array ? oneLine(new TextDecoder().decode(message)) : "",
    };
  } catch {
    return none;
  }
}

/** The varint and LEN fields of a small message, by number (the last one wins); throws when it is not protobuf. */
function fields(bytes: Uint8Array): Map<number, number | Uint8Array> {
  const out = new Map<number, number | Uint8Array>();
  let p = 0;
  const varint = () => {
    let value = 0;
    for (let scale = 1; ; scale *= 128) {
      if (p >= bytes.length || scale > 2 ** 56) throw new Error("truncated");
      const byte = bytes[p++]!;
      value += (byte & 127) * scale;
      if (byte < 128) return value;
    }
  };
  while (p < bytes.length) {
    const key = varint();
    const wireType = key % 8;
    const field = Math.floor(key / 8);
    if (wireType === 0) out.set(field, varint());
    else if (wireType === 2) {
      const length = varint();
      if (p + length > bytes.length) throw new Error("truncated");
      out.set(field, bytes.subarray(p, p + length));
      p += length;
    } else if (wireType === 1) p += 8;
    else if (wireType === 5) p += 4;
    else throw new Error("not protobuf");
  }
  return out;
}
