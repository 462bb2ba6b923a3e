// The feed's HTTPS server: `GET /v1/feed` for agents (a bearer token reviewed by token-review.ts;
// then a snapshot or the changes since the agent's version, then every change as it happens, on
// one long answer: protocol.ts), `GET /healthz` (200 once the API server has been listed, for the
// Deployment's readiness probe) and `GET /metrics` (what it counts), both without a token.
//
// Changes are written to every connected agent once per turn of the event loop, encoded once and
// shared. An agent that does not read (more than MAX_QUEUED_BYTES waiting) is cut off: it comes
// back and resumes from its version.
import type { Server } from "bun";
import { formatHostPort, type HostPort } from "../../address.ts";
import { MetricsRegistry, type MetricType, PROMETHEUS_CONTENT_TYPE } from "../../admin/metrics.ts";
import type { Logger } from "../../log.ts";
import { FEED_PATH, PING_INTERVAL_MS } from "./protocol.ts";
import type { FeedStore } from "./store.ts";
import type { Verdict } from "./token-review.ts";

const MAX_QUEUED_BYTES = 64 << 20;
/** The snapshot is written in chunks of about this many bytes. */
const CHUNK_BYTES = 256 << 10;

export interface FeedServerOptions {
  store: FeedStore;
  listen: HostPort;
  tls: { cert: string; key: string };
  /** the verdict on a request's Authorization header */
  authenticate: (authorization: string | null) => Promise<Verdict>;
  /** true once every kind has been listed from the API server */
  ready: () => boolean;
  log: Logger;
}

interface Agent {
  controller: ReadableStreamDefaultController<Uint8Array>;
  user: string;
}

const encoder = new TextEncoder();

export class FeedServer {
  readonly stats = { requests: 0, refused: 0, snapshots: 0, resumes: 0, snapshotEntries: 0, changesSent: 0, bytesSent: 0, cutOff: 0 };
  readonly metrics = new MetricsRegistry();
  readonly #o: FeedServerOptions;
  readonly #server: Server<undefined>;
  readonly #agents = new Set<Agent>();
  #pending: string[] = [];
  readonly #ping: Timer;

  private constructor(o: FeedServerOptions) {
    this.#o = o;
    o.store.onChange = (frame) => {
      if (this.#agents.size === 0) return;
      if (this.#pending.length === 0) setImmediate(() => this.#flush());
      this.#pending.push(frame);
    };
    this.#server = Bun.serve({
      hostname: o.listen.host,
      port: o.listen.port,
      tls: o.tls,
      idleTimeout: 0,
      fetch: (request) => this.#answer(request),
    });
    this.#ping = setInterval(() => this.#broadcast(`{"t":"ping","v":${o.store.seq}}\n`, 0), PING_INTERVAL_MS);
    this.#registerMetrics();
  }

  /** Listens at once; throws when the address cannot be taken. */
  static start(o: FeedServerOptions): FeedServer {
    return new FeedServer(o);
  }

  get address(): HostPort {
    return { host: this.#o.listen.host, port: this.#server.port ?? this.#o.listen.port };
  }

  get agents(): number {
    return this.#agents.size;
  }

  async stop(): Promise<void> {
    clearInterval(this.#ping);
    for (const agent of this.#agents) this.#close(agent);
    await this.#server.stop(true);
  }

  async #answer(request: Request): Promise<Response> {
    const url = new URL(request.url);
    if (request.method !== "GET") return text(405, `${request.method} is not served: only GET`);
    if (url.pathname === "/healthz") return this.#o.ready() ? text(200, "ok") : text(503, "the API server has not been listed yet");
    if (url.pathname === "/metrics") return new Response(this.metrics.render(), { headers: { "content-type": PROMETHEUS_CONTENT_TYPE } });
    if (url.pathname !== FEED_PATH) return text(404, `${url.pathname} is not served: ${FEED_PATH}, /healthz and /metrics are`);
    this.stats.requests++;
    const verdict = await this.#o.authenticate(request.headers.get("authorization"));
    if (!verdict.ok) {
      this.stats.refused++;
      return text(verdict.status, verdict.message);
    }
    if (!this.#o.ready()) return text(503, "the feed has not listed the API server yet: try again shortly");
    const feed = url.searchParams.get("feed");
    const since = url.searchParams.get("since");
    return this.#stream(verdict.user, feed, since === null || !/^\d+$/.test(since) ? null : Number(since));
  }

  /** The long answer: hello, the snapshot or the changes since `since`, synced, then live changes. */
  #stream(user: string, feed: string | null, since: number | null): Response {
    const store = this.#o.store;
    let agent: Agent | null = null;
    const stream = new ReadableStream<Uint8Array>(
      {
        start: (controller) => {
          agent = { controller, user };
          // What was asked for, all in this turn: consistent with store.seq, before any later change.
          const changes = feed === null || since === null ? null : store.changesSince(feed, since);
          const parts = [`{"t":"hello","feed":"${store.id}","snapshot":${changes === null}}`, ...(changes ?? store.snapshot()), `{"t":"synced","v":${store.seq}}`];
          const count = parts.length - 2;
          if (changes === null) {
            this.stats.snapshots++;
            this.stats.snapshotEntries += count;
          } else {
            this.stats.resumes++;
            this.stats.changesSent += count;
          }
          for (let i = 0, size = 0, from = 0; i < parts.length; i++) {
            size += parts[i]!.length + 1;
            if (size >= CHUNK_BYTES || i === parts.length - 1) {
              this.#write(agent, `${parts.slice(from, i + 1).join("\n")}\n`);
              from = i + 1;
              size = 0;
            }
          }
          this.#agents.add(agent);
          this.#o.log.debug(`feed: ${user} connected (${changes === null ? `snapshot of ${count} entries` : `resumed from ${since}: ${count} changes`})`);
        },
        cancel: () => {
          if (agent !== null) this.#agents.delete(agent);
        },
      },
      new ByteLengthQueuingStrategy({ highWaterMark: 1 << 20 }),
    );
    return new Response(stream, { headers: { "content-type": "application/x-ndjson", "cache-control": "no-store" } });
  }

  #flush(): void {
    const frames = this.#pending;
    this.#pending = [];
    if (frames.length > 0) this.#broadcast(`${frames.join("\n")}\n`, frames.length);
  }

  #broadcast(text: string, changes: number): void {
    if (this.#agents.size === 0) return;
    const bytes = encoder.encode(text);
    for (const agent of this.#agents) {
      this.stats.changesSent += changes;
      this.#write(agent, bytes);
    }
  }

  #write(agent: Agent, data: string | Uint8Array): void {
    const bytes = typeof data === "string" ? encoder.encode(data) : data;
    try {
      agent.controller.enqueue(bytes);
      this.stats.bytesSent += bytes.length;
    } catch {
      this.#agents.delete(agent);
      return;
    }
    if ((agent.controller.desiredSize ?? 0) < -MAX_QUEUED_BYTES) {
      this.stats.cutOff++;
      this.#o.log.warn(`feed: ${agent.user} reads too slowly (more than ${MAX_QUEUED_BYTES >> 20} MiB waiting): cut off; it will resume`);
      this.#close(agent);
    }
  }

  #close(agent: Agent): void {
    this.#agents.delete(agent);
    try {
      agent.controller.close();
    } catch {
      // already closed
    }
  }

  #registerMetrics(): void {
    const s = this.stats;
    const metric = (name: string, type: MetricType, help: string, read: () => number) => this.metrics.add(`feed_${name}`, type, help, read);
    metric("requests_total", "counter", "Requests for the feed (GET /v1/feed), refused ones included.", () => s.requests);
    metric("refused_total", "counter", "Requests for the feed refused (401, 403, 503 from the token review).", () => s.refused);
    metric("snapshots_total", "counter", "Agents sent a whole snapshot.", () => s.snapshots);
    metric("resumes_total", "counter", "Agents that resumed from their version (only the changes since).", () => s.resumes);
    metric("snapshot_entries_total", "counter", "Entries sent in snapshots.", () => s.snapshotEntries);
    metric("changes_sent_total", "counter", "Changes sent to agents (resumed and live), summed over agents.", () => s.changesSent);
    metric("bytes_sent_total", "counter", "Bytes queued for agents.", () => s.bytesSent);
    metric("cut_off_total", "counter", "Agents cut off for reading too slowly.", () => s.cutOff);
    metric("agents", "gauge", "Agents connected now.", () => this.#agents.size);
    metric("version", "gauge", "The number of the last change.", () => this.#o.store.seq);
    const counts = (pick: (c: FeedStore["counts"]) => number) => () => pick(this.#o.store.counts);
    metric("services", "gauge", "Services held.", counts((c) => c.services));
    metric("endpoint_slices", "gauge", "EndpointSlices held.", counts((c) => c.endpointSlices));
    metric("pods", "gauge", "Pods held.", counts((c) => c.pods));
  }

  toString(): string {
    return `https://${formatHostPort(this.address)}`;
  }
}

const text = (status: number, message: string) => new Response(`${message}\n`, { status, headers: { "content-type": "text/plain; charset=utf-8" } });
