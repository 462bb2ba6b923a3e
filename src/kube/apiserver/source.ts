// The API-server source: lists, then watches, Services, EndpointSlices and Pods cluster-wide, and
// keeps a ClusterIndex (cluster-index.ts) up to date one event at a time. Per kind, one loop (a
// "reflector"); how it lists, watches, resumes and backs off, and how its failures are said:
// docs/kubernetes.md, "The API server" and "When a source fails". While failing, what was known
// stays in the index.
import * as v from "valibot";
import type { Logger } from "../../log.ts";
import { apiFailureMessage, type ApiFailureState, FailureState } from "../failures.ts";
import { type Failure, sleepUnlessAborted } from "../http.ts";
import { PodSchema } from "../pod.ts";
import { ApiClient, type ApiServerConfig } from "./client.ts";
import { ClusterIndex } from "./cluster-index.ts";
import { type Counts, describeCounts, type Entry, type Metadata, objectKey, podEntry, type ResourceKind, serviceEntry, sliceEntry } from "./entries.ts";
import { describeIssues, EndpointSliceSchema, objectLabel, ServiceSchema } from "./objects.ts";
import type { WatchEvent } from "./watch-stream.ts";

/** Objects of a list page checked and indexed between two turns of the event loop. */
const APPLY_SLICE = 25;

/** Where the objects go: the agent's index (cluster-index.ts), or the feed's store (../feed/store.ts). */
export interface ObjectSink {
  put(kind: ResourceKind, key: string, entry: Entry): void;
  delete(kind: ResourceKind, key: string): void;
  /** keys held for a kind: to drop what a new list no longer has */
  keys(kind: ResourceKind): string[];
  readonly counts: Counts;
}

interface Resource {
  kind: ResourceKind;
  path: string;
  /** checks one object and puts it into the index; returns a problem or null */
  apply(index: ObjectSink, object: unknown): string | null;
}

/** A kind of object: checked by `schema`, put into the index as its `entry`. */
function resource<S extends v.GenericSchema<unknown, { metadata: Metadata }>>(kind: ResourceKind, path: string, schema: S, entry: (object: v.InferOutput<S>) => Entry): Resource {
  const apply = (index: ObjectSink, object: unknown): string | null => {
    const result = v.safeParse(schema, object);
    if (!result.success) return `${objectLabel(object)}: ${describeIssues(result.issues)}`;
    index.put(kind, objectKey(result.output.metadata), entry(result.output));
    return null;
  };
  return { kind, path, apply };
}

export const RESOURCES: readonly Resource[] = [
  resource("services", "/api/v1/services", ServiceSchema, serviceEntry),
  resource("endpointslices", "/apis/discovery.k8s.io/v1/endpointslices", EndpointSliceSchema, sliceEntry),
  resource("pods", "/api/v1/pods", PodSchema, podEntry),
];

export interface ApiSourceOptions<Index extends ObjectSink = ClusterIndex> {
  client: ApiClient;
  index?: Index;
  notice: (message: string) => void;
  info?: (message: string) => void;
  debug?: (message: string) => void;
  pageSize?: number;
  /** how long the server keeps a watch open: 1 to 2 times this (default 300 s: client-go's 5 to 10 min) */
  watchTimeoutS?: number;
  minBackoffMs?: number;
  maxBackoffMs?: number;
}

export class ApiSource<Index extends ObjectSink = ClusterIndex> {
  readonly index: Index;
  readonly stats = { lists: 0, watches: 0, events: 0, expired: 0, failures: 0 };
  readonly #o: ApiSourceOptions<Index> & Required<Pick<ApiSourceOptions, "pageSize" | "watchTimeoutS" | "minBackoffMs" | "maxBackoffMs">>;
  #abort = new AbortController();
  readonly #failure: Record<ResourceKind, FailureState<ApiFailureState>>;
  readonly #listed = new Set<ResourceKind>();
  readonly #loops: Promise<void>[] = [];
  #announced = false;
  /** resourceVersion each kind would resume from (for tests and status) */
  readonly resourceVersions = new Map<ResourceKind, string | null>();

  constructor(options: ApiSourceOptions<Index>) {
    // Pages of 100: each page is parsed on the main thread, and 100 real pods take ~10 ms (500
    // stalled the line timer 35-60 ms at 5,000 pods: scripts/bench/api-memory.ts).
    this.#o = { pageSize: 100, watchTimeoutS: 300, minBackoffMs: 500, maxBackoffMs: 30_000, ...options };
    this.index = options.index ?? (new ClusterIndex() as ObjectSink as Index);
    const say = { notice: this.#o.notice, info: this.#o.info ?? this.#o.notice };
    const state = (kind: ResourceKind) => new FailureState<ApiFailureState>(`the API server at ${this.server}: ${kind}`, say, { "invalid-object": "the invalid object" });
    this.#failure = { services: state("services"), endpointslices: state("endpointslices"), pods: state("pods") };
  }

  get server(): string {
    return this.#o.client.config.server;
  }

  /** True once every kind has been listed at least once. */
  get synced(): boolean {
    return this.#listed.size === RESOURCES.length;
  }

  /** Lists and watches; after stop(), lists and watches again (the feed's fallback, ../feed/client.ts). */
  start(): void {
    if (this.#abort.signal.aborted) this.#abort = new AbortController();
    for (const resource of RESOURCES) this.#loops.push(this.#run(resource));
  }

  async stop(): Promise<void> {
    this.#abort.abort();
    await Promise.all(this.#loops.splice(0));
  }

  get #stopped(): boolean {
    return this.#abort.signal.aborted;
  }

  #sleep(ms: number): Promise<void> {
    return sleepUnlessAborted(ms, this.#abort.signal);
  }

  async #run(resource: Resource): Promise<void> {
    let rv: string | null = null;
    let backoffMs = this.#o.minBackoffMs;
    const fail = async (failure: Failure) => {
      this.stats.failures++;
      this.#failed(resource.kind, failure);
      // ±20 % jitter so that many agents do not come back in step
      await this.#sleep(backoffMs * (0.8 + 0.4 * Math.random()));
      backoffMs = Math.min(this.#o.maxBackoffMs, backoffMs * 2);
    };
    while (!this.#stopped) {
      if (rv === null) {
        const listed = await this.#list(resource);
        if (this.#stopped) break;
        if (!listed.ok) {
          // 410 on a page: its continue token expired; list again from the start, after a pause
          if (listed.failure.kind === "expired") await this.#sleep(this.#o.minBackoffMs);
          else await fail(listed.failure);
          continue;
        }
        rv = listed.resourceVersion;
        this.resourceVersions.set(resource.kind, rv);
        backoffMs = this.#o.minBackoffMs;
        this.#succeeded(resource.kind);
        this.#listedOnce(resource.kind);
      }
      let failure: Failure | null = null;
      this.stats.watches++;
      const watchStart = performance.now();
      const ended = await this.#o.client.watch(
        resource.path,
        rv,
        // between 1 and 2 times the timeout, as client-go, so that agents do not re-watch in step
        Math.round(this.#o.watchTimeoutS * (1 + Math.random())),
        this.#abort.signal,
        (event: WatchEvent) => {
          this.stats.events++;
          switch (event.type) {
            case "ADDED":
            case "MODIFIED": {
              const problem = resource.apply(this.index, event.object);
              if (problem !== null) this.#failed(resource.kind, { kind: "invalid", detail: `skipped ${problem}` }, "invalid-object");
              rv = resourceVersionOf(event.object) ?? rv;
              break;
            }
            case "DELETED": {
              const metadata = (event.object as { metadata?: { name?: unknown; namespace?: unknown } }).metadata;
              if (typeof metadata?.name === "string") {
                this.index.delete(resource.kind, objectKey({ name: metadata.name, namespace: typeof metadata.namespace === "string" ? metadata.namespace : null }));
              }
              rv = resourceVersionOf(event.object) ?? rv;
              break;
            }
            case "BOOKMARK":
              rv = event.resourceVersion ?? rv;
              break;
            case "EXPIRED":
              failure = { kind: "expired", detail: event.message };
              return "stop";
            case "ERROR":
              failure = { kind: "http", detail: `an ERROR event${event.code === null ? "" : ` (code ${event.code})`}: ${event.message}` };
              return "stop";
            case "INVALID":
              failure = { kind: "invalid", detail: event.problem };
              return "stop";
          }
          this.resourceVersions.set(resource.kind, rv);
          return "continue";
        },
        () => {
          backoffMs = this.#o.minBackoffMs;
          this.#succeeded(resource.kind);
        },
      );
      if (this.#stopped) break;
      failure ??= ended;
      if (failure?.kind === "expired") {
        this.stats.expired++;
        this.#o.debug?.(`the API server at ${this.server}: the ${resource.kind} watch expired (410): listing again`);
        rv = null;
        continue;
      }
      if (failure !== null) await fail(failure);
      // A watch that ends at once without a failure (a proxy that closes streams) is no reason to
      // ask again in a tight loop.
      else if (performance.now() - watchStart < 1_000) await this.#sleep(this.#o.minBackoffMs);
    }
  }

  /** Every page of one list into the index; what the index held and the list lacks is dropped. */
  async #list(resource: Resource): Promise<{ ok: true; resourceVersion: string } | { ok: false; failure: Failure }> {
    const seen = new Set<string>();
    let continueToken: string | null = null;
    let resourceVersion = "";
    let badObject: string | null = null;
    do {
      const page = await this.#o.client.listPage(resource.path, this.#o.pageSize, continueToken, this.#abort.signal);
      if (!page.ok) return page;
      for (let i = 0; i < page.items.length; i++) {
        // Let the line timer run between slices of a page: checking 100 real pods takes ~5 ms.
        if (i > 0 && i % APPLY_SLICE === 0) await new Promise((resolve) => setImmediate(resolve));
        const item = page.items[i];
        const problem = resource.apply(this.index, item);
        if (problem !== null) badObject ??= problem;
        else seen.add(objectKey((item as { metadata: { name: string; namespace?: string } }).metadata));
      }
      resourceVersion = page.resourceVersion;
      continueToken = page.continue;
    } while (continueToken !== null && !this.#stopped);
    for (const key of this.index.keys(resource.kind)) if (!seen.has(key)) this.index.delete(resource.kind, key);
    this.stats.lists++;
    if (badObject !== null) this.#failed(resource.kind, { kind: "invalid", detail: `skipped ${badObject}` }, "invalid-object");
    else if (this.#failure[resource.kind].kind === "invalid-object") this.#succeeded(resource.kind, true);
    return { ok: true, resourceVersion };
  }

  #listedOnce(kind: ResourceKind): void {
    this.#listed.add(kind);
    if (this.#announced || !this.synced) return;
    this.#announced = true;
    (this.#o.info ?? this.#o.notice)(
      `the API server at ${this.server} (${this.#o.client.config.origin}): ${describeCounts(this.index.counts)} listed; watching for changes`,
    );
  }

  /** A request worked: a failure state ends (an invalid object's only with a list without one). */
  #succeeded(kind: ResourceKind, cleanList = false): void {
    const state = this.#failure[kind];
    if (state.kind === "invalid-object" && !cleanList) return;
    state.recover();
  }

  #failed(kind: ResourceKind, { kind: failure, detail }: Failure, as: ApiFailureState = failure): void {
    const known = this.#listed.has(kind) ? `keeping what is known of ${kind}` : `no ${kind} known yet`;
    this.#failure[kind].fail(as, () => `${apiFailureMessage(failure, detail, this.server, kind)}; ${known}`);
  }
}

function resourceVersionOf(object: unknown): string | null {
  const rv = (object as { metadata?: { resourceVersion?: unknown } } | null)?.metadata?.resourceVersion;
  return typeof rv === "string" && rv !== "" ? rv : null;
}

/** The API-server source of a run's settings (resolveApiSettings), not started. */
export function createApiSource(settings: ApiServerConfig, clusterDomain: string, log: Logger): ApiSource {
  if (settings.insecureSkipTlsVerify) {
    log.warn(`TLS verification of the API server at ${settings.server} is OFF (insecure-skip-tls-verify in ${settings.origin})`);
  }
  return new ApiSource({
    client: new ApiClient(settings),
    index: new ClusterIndex(clusterDomain),
    notice: log.warn,
    info: log.info,
    debug: log.debug,
  });
}
