// The agent's side of the feed (--feed <url>, protocol.ts): one long HTTPS request whose answer
// keeps the cluster index (../apiserver/cluster-index.ts) up to date, the one the API-server source
// would fill, so names come out alike whichever path they came by. When the feed cannot be had,
// the agent's API server, if it has one, is watched meanwhile (README, "A cluster feed for large
// clusters"); the feed is asked again after a backoff, 0.5 s doubling to 10 s, ±20 %.
import { existsSync } from "node:fs";
import type { MetricsRegistry, MetricType } from "../../admin/metrics.ts";
import { EXIT_USAGE, ExitError, readOr } from "../../errors.ts";
import type { Logger } from "../../log.ts";
import type { RunOptions } from "../../options.ts";
import type { ApiSource } from "../apiserver/source.ts";
import { ClusterIndex } from "../apiserver/cluster-index.ts";
import { LineSplitter } from "../apiserver/watch-stream.ts";
import { FailureState, feedFailureMessage } from "../failures.ts";
import { answerFailure, bearerToken, classifyFetchError, CredentialFile, type Failure, readText, SERVICE_ACCOUNT_TOKEN, sleepUnlessAborted, tlsOptions } from "../http.ts";
import { describeCounts, type ResourceKind as Kind } from "../apiserver/entries.ts";
import { FEED_PATH, type Frame, KIND_OF_TAG, parseFrame, podLabelsOf, SILENCE_LIMIT_MS } from "./protocol.ts";

/** The longest the agent's thread applies frames before letting the event loop turn. */
const SLICE_MS = 2;

export interface FeedSourceOptions {
  /** the feed's base URL, e.g. https://kmesh-accesslog-feed.kmesh-accesslog.svc:15300 */
  url: string;
  /** PEM text of the CA that signed the feed's certificate; null: the system's roots */
  ca: string | null;
  /** the bearer token's file (the service-account token) */
  tokenFile: string | null;
  index: ClusterIndex;
  /** lists and watches the API server while the feed cannot be had; null: none */
  fallback: ApiSource | null;
  log: Logger;
  minBackoffMs?: number;
  maxBackoffMs?: number;
}

export class FeedSource {
  readonly index: ClusterIndex;
  /** fallback: 1 while the API server is watched instead */
  readonly stats = { connections: 0, snapshots: 0, resumes: 0, applied: 0, failures: 0, fallback: 0 };
  readonly #o: Required<FeedSourceOptions>;
  readonly #token: CredentialFile | null;
  readonly #failure: FailureState<Failure["kind"]>;
  #abort = new AbortController();
  #loop: Promise<void> | null = null;
  /** the version held: the feed's id and the number of the last change applied */
  feed: string | null = null;
  seq = 0;
  #synced = false;
  #announced = false;

  constructor(options: FeedSourceOptions) {
    this.#o = { minBackoffMs: 500, maxBackoffMs: 10_000, ...options };
    this.index = options.index;
    this.#token = options.tokenFile === null ? null : new CredentialFile(options.tokenFile, bearerToken(options.tokenFile));
    this.#failure = new FailureState(`the feed at ${options.url}`, { notice: options.log.warn, info: options.log.info }, { invalid: "the invalid frame" });
  }

  /** True once the feed (or the fallback) has given a whole view. */
  get synced(): boolean {
    return this.#synced || this.#o.fallback?.synced === true;
  }

  start(): void {
    this.#loop = this.#run();
  }

  async stop(): Promise<void> {
    this.#abort.abort();
    await this.#loop;
    await this.#o.fallback?.stop();
  }

  async #run(): Promise<void> {
    let backoffMs = this.#o.minBackoffMs;
    while (!this.#abort.signal.aborted) {
      const failure = await this.#follow(() => {
        backoffMs = this.#o.minBackoffMs;
      });
      if (this.#abort.signal.aborted) break;
      if (failure !== null) {
        this.stats.failures++;
        const fallback = this.#o.fallback;
        this.#failure.fail(failure.kind, () => feedFailureMessage(failure.kind, failure.detail, this.#o.url, fallback?.server ?? null));
        if (fallback !== null && this.stats.fallback === 0) {
          this.stats.fallback = 1;
          fallback.start();
        }
      }
      await sleepUnlessAborted(backoffMs * (0.8 + 0.4 * Math.random()), this.#abort.signal);
      backoffMs = Math.min(this.#o.maxBackoffMs, backoffMs * 2);
    }
  }

  /** One connection, until it ends (null) or fails. `onSynced`: it brought the agent up to date. */
  async #follow(onSynced: () => void): Promise<Failure | null> {
    const token = this.#token?.read();
    if (token?.ok === false) return { kind: "credentials", detail: token.problem };
    const query = this.feed === null ? "" : `?feed=${this.feed}&since=${this.seq}`;
    // A connection that brings no byte for SILENCE_LIMIT_MS is dead (the feed pings every 10 s).
    const silence = new AbortController();
    let silent = setTimeout(() => silence.abort(), SILENCE_LIMIT_MS);
    const signal = AbortSignal.any([this.#abort.signal, silence.signal]);
    const headers: Record<string, string> = { accept: "application/x-ndjson" };
    if (token?.ok) headers.authorization = `Bearer ${token.value}`;
    try {
      this.stats.connections++;
      const response = await fetch(`${this.#o.url}${FEED_PATH}${query}`, { headers, signal, redirect: "error", tls: tlsOptions(false, this.#o.ca) } as RequestInit);
      if (response.status !== 200) return answerFailure(response, this.#token);
      const session: Session = { hello: false, snapshot: false, since: this.seq, entries: 0, synced: false, seen: { services: new Set(), endpointslices: new Set(), pods: new Set() } };
      const splitter = new LineSplitter();
      let sliceStart = performance.now();
      let frames = 0;
      for await (const chunk of response.body ?? []) {
        clearTimeout(silent);
        silent = setTimeout(() => silence.abort(), SILENCE_LIMIT_MS);
        for (const line of splitter.push(chunk)) {
          // A snapshot is many frames at once: let the line timer run every SLICE_MS.
          if (++frames % 64 === 0 && performance.now() - sliceStart > SLICE_MS) {
            await new Promise((resolve) => setImmediate(resolve));
            sliceStart = performance.now();
          }
          const parsed = parseFrame(line);
          const wasSynced = session.synced;
          const problem = parsed.ok ? this.#apply(session, parsed.frame) : parsed.problem;
          if (problem !== null) {
            await response.body?.cancel().catch(() => undefined);
            return { kind: "invalid", detail: problem };
          }
          if (session.synced && !wasSynced) {
            onSynced();
            await this.#caughtUp(session);
          }
        }
      }
      return { kind: "unreachable", detail: "the feed ended the connection" };
    } catch (error) {
      if (this.#abort.signal.aborted) return null;
      if (silence.signal.aborted) return { kind: "timeout", detail: `no byte for ${SILENCE_LIMIT_MS / 1000} s` };
      return classifyFetchError(error, SILENCE_LIMIT_MS);
    } finally {
      clearTimeout(silent);
    }
  }

  /** The feed brought the agent up to date: say so (once per state), stop the fallback. */
  async #caughtUp(session: Session): Promise<void> {
    this.#synced = true;
    const how = session.snapshot
      ? `a snapshot of ${session.entries} entries (version ${this.feed}.${this.seq})`
      : `resumed from version ${this.feed}.${session.since}: ${session.entries} changes`;
    const fallback = this.#o.fallback;
    const wasFallingBack = this.stats.fallback === 1;
    const recovered = this.#failure.recover(`; ${how}${wasFallingBack ? `; no longer watching the API server at ${fallback?.server}` : ""}`);
    if (!recovered && !this.#announced) {
      this.#o.log.info(`the feed at ${this.#o.url}: ${describeCounts(this.index.counts)} received; following its changes`);
    }
    this.#announced = true;
    if (wasFallingBack) {
      this.stats.fallback = 0;
      await fallback?.stop();
    }
  }

  /** What it counts, on the agent's /metrics. */
  registerMetrics(registry: MetricsRegistry): void {
    const s = this.stats;
    const metric = (name: string, type: MetricType, help: string, read: () => number) => registry.add(`feed_${name}`, type, help, read);
    metric("connections_total", "counter", "Connections to the feed (--feed), failed ones included.", () => s.connections);
    metric("snapshots_total", "counter", "Whole snapshots received from the feed.", () => s.snapshots);
    metric("resumes_total", "counter", "Connections that resumed from the version held (only the changes since).", () => s.resumes);
    metric("applied_total", "counter", "Entries and changes applied from the feed.", () => s.applied);
    metric("failures_total", "counter", "Connections to the feed that failed or broke.", () => s.failures);
    metric("fallback", "gauge", "1 while the API server is watched because the feed cannot be had.", () => s.fallback);
    metric("version", "gauge", "The number of the last change applied from the feed.", () => this.seq);
  }

  /** Applies a frame of `session`; a problem (one line) when it is out of place. */
  #apply(session: Session, frame: Frame): string | null {
    if (!session.hello) {
      if (frame.t !== "hello") return `a "${frame.t}" frame before "hello"`;
      session.hello = true;
      session.snapshot = frame.snapshot;
      if (!frame.snapshot && frame.feed !== this.feed) return `a resumption of another feed's history (${frame.feed})`;
      if (frame.snapshot) this.stats.snapshots++;
      else this.stats.resumes++;
      this.feed = frame.feed;
      return null;
    }
    switch (frame.t) {
      case "hello":
        return `a second "hello"`;
      case "ping":
        return null;
      case "synced": {
        if (session.synced) return null;
        if (session.snapshot) {
          for (const kind of Object.keys(session.seen) as Kind[]) {
            for (const key of this.index.keys(kind)) if (!session.seen[kind].has(key)) this.index.delete(kind, key);
          }
        }
        this.seq = frame.v;
        session.synced = true;
        return null;
      }
      default: {
        // A change the snapshot or the resumption already held (sent again just after) is skipped.
        if (frame.v !== undefined && frame.v <= this.seq) return null;
        if (session.synced && frame.v === undefined) return `a "${frame.t}" change without its version`;
        const { kind, key } = this.#applyEntry(frame);
        if (session.snapshot && !session.synced) session.seen[kind].add(key);
        if (frame.v !== undefined) this.seq = frame.v;
        this.stats.applied++;
        session.entries++;
        return null;
      }
    }
  }

  /** Applies one entry or deletion to the index. */
  #applyEntry(frame: Exclude<Frame, { t: "hello" | "synced" | "ping" }>): { kind: Kind; key: string } {
    const index = this.index;
    switch (frame.t) {
      case "svc":
        index.putService(frame.k, { ips: frame.ips, ports: frame.ports });
        return { kind: "services", key: frame.k };
      case "eps":
        index.putSlice(frame.k, { service: frame.svc, ips: frame.ips, ports: frame.ports });
        return { kind: "endpointslices", key: frame.k };
      case "pod":
        index.putPod(frame.k, { ips: frame.ips, claim: frame.c, labels: podLabelsOf(frame) });
        return { kind: "pods", key: frame.k };
      case "del": {
        const kind = KIND_OF_TAG[frame.kind];
        index.delete(kind, frame.k);
        return { kind, key: frame.k };
      }
    }
  }
}

/** One connection's progress: hello, then the snapshot or the changes (from version `since`), synced, then live changes. */
interface Session {
  hello: boolean;
  snapshot: boolean;
  since: number;
  entries: number;
  synced: boolean;
  /** the keys a snapshot brought, per kind: what the index held and it lacks is gone */
  seen: Record<Kind, Set<string>>;
}

/** The feed source a run asks for (--feed), not started; null without it. Its fallback is the run's API source. */
export function createFeedSource(options: Partial<RunOptions> & { clusterDomain: string }, fallback: ApiSource | null, log: Logger): FeedSource | null {
  if (options.feed === undefined) return null;
  const caFile = options.feedCaFile;
  const ca = caFile === undefined ? null : readOr(readText, caFile, (why) => new FeedConfigError(`cannot read --feed-ca-file ${caFile}: ${why}`));
  const tokenFile = options.feedTokenFile ?? (existsSync(SERVICE_ACCOUNT_TOKEN) ? SERVICE_ACCOUNT_TOKEN : null);
  return new FeedSource({ url: options.feed, ca, tokenFile, index: fallback?.index ?? new ClusterIndex(options.clusterDomain), fallback, log });
}

/** --feed is given but cannot be used as given. */
export class FeedConfigError extends ExitError {
  override name = "FeedConfigError";
  override readonly exitCode = EXIT_USAGE;
  override readonly context = "cannot use the feed";
}
