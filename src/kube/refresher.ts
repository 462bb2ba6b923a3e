// Where a refresh runs. WorkerRefresher runs it in a Bun Worker, so the main thread (which reads
// the ring buffer and writes lines) only receives the finished index as plain arrays: parsing a
// 1,000-pod list takes tens of milliseconds, far too long to block line output (figures in
// scripts/bench/kubelet-refresh.ts). InlineRefresher runs it on the calling thread: for tests and
// as the fallback when a worker cannot start.
import { KubeletClient, type KubeletClientConfig } from "./kubelet-client.ts";
import { type FromRefreshWorker, type RefreshOutcome, refreshOnce, type ToRefreshWorker } from "./refresh.ts";

export interface Refresher {
  /** One refresh; never rejects. */
  run(): Promise<RefreshOutcome>;
  close(): void;
}

export class InlineRefresher implements Refresher {
  readonly #client: KubeletClient;
  constructor(config: KubeletClientConfig) {
    this.#client = new KubeletClient(config);
  }
  run(): Promise<RefreshOutcome> {
    return refreshOnce(this.#client);
  }
  close(): void {}
}

/**
 * The worker's URL. From source it sits beside this module. In the compiled binary every module
 * is bundled into one file at the root of Bun's embedded file system (so import.meta.url names
 * that file), and scripts/build embeds the worker as a second entrypoint under the same root,
 * src/: at kube/refresh-worker.ts.
 */
function workerUrl(): string {
  const here = import.meta.url;
  return new URL(here.endsWith("/kube/refresher.ts") ? "./refresh-worker.ts" : "./kube/refresh-worker.ts", here).href;
}

/** Extra time the worker gets beyond the request timeout before it is presumed stuck. */
const WATCHDOG_GRACE_MS = 10_000;

interface Pending {
  id: number;
  resolve: (outcome: RefreshOutcome) => void;
  timer: Timer;
}

export class WorkerRefresher implements Refresher {
  readonly #config: KubeletClientConfig;
  readonly #notice: (message: string) => void;
  #worker: Worker | null = null;
  #fallback: InlineRefresher | null = null;
  #pending: Pending | null = null;
  #nextId = 1;
  #closed = false;

  constructor(config: KubeletClientConfig, notice: (message: string) => void) {
    this.#config = config;
    this.#notice = notice;
    this.#spawn();
  }

  #spawn(): void {
    const worker = new Worker(workerUrl(), { name: "kubelet-refresh" });
    worker.onmessage = (event: MessageEvent<FromRefreshWorker>) => {
      const pending = this.#pending;
      if (pending === null || event.data.id !== pending.id) return;
      this.#settle(event.data.outcome);
    };
    worker.onerror = (event: ErrorEvent) => {
      if (this.#worker !== worker) return;
      this.#notice(`the pod-list worker failed (${event.message}); refreshing on the main thread from now on`);
      this.#worker = null;
      worker.terminate();
      this.#fallback = new InlineRefresher(this.#config);
      const pending = this.#pending;
      if (pending !== null) void this.#fallback.run().then((outcome) => this.#pending === pending && this.#settle(outcome));
    };
    const configure: ToRefreshWorker = { type: "configure", config: this.#config };
    worker.postMessage(configure);
    this.#worker = worker;
  }

  #settle(outcome: RefreshOutcome): void {
    const pending = this.#pending;
    if (pending === null) return;
    this.#pending = null;
    clearTimeout(pending.timer);
    pending.resolve(outcome);
  }

  run(): Promise<RefreshOutcome> {
    if (this.#closed) return Promise.resolve({ ok: false, failure: { kind: "unreachable", detail: "stopped" } });
    if (this.#fallback !== null) return this.#fallback.run();
    if (this.#pending !== null) throw new Error("WorkerRefresher.run: a refresh is already running");
    return new Promise((resolve) => {
      const id = this.#nextId++;
      const timer = setTimeout(() => {
        // The worker did not answer although fetch has its own timeout: replace it.
        this.#worker?.terminate();
        this.#worker = null;
        if (!this.#closed) this.#spawn();
        this.#settle({
          ok: false,
          failure: { kind: "timeout", detail: `the pod-list worker gave no answer within ${(this.#config.timeoutMs + WATCHDOG_GRACE_MS) / 1000} s` },
        });
      }, this.#config.timeoutMs + WATCHDOG_GRACE_MS);
      this.#pending = { id, resolve, timer };
      const message: ToRefreshWorker = { type: "refresh", id };
      this.#worker?.postMessage(message);
    });
  }

  close(): void {
    this.#closed = true;
    this.#worker?.terminate();
    this.#worker = null;
    if (this.#pending !== null) {
      this.#settle({ ok: false, failure: { kind: "unreachable", detail: "stopped" } });
    }
  }
}
