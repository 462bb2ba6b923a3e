// The pod source: keeps the pod index fresh and says, once per change, how the kubelet is doing
// (docs/kubernetes.md, "The kubelet" and "When a source fails").
//
// A refresh runs at start, then every `refreshMs` after the previous one started; one asked for
// (requestRefresh) starts as soon as none is running and `minGapMs` has passed since the previous
// start, and the periodic cadence restarts from it. While the kubelet is failing, lines ask for
// nothing. A refresh that fails still "completes": lines waiting for it are written with what is
// known, not held longer for a kubelet that is not answering.
import { FailureState, kubeletFailureMessage, type KubeletFailureKind } from "../failures.ts";
import type { PodInfo } from "../pod.ts";
import type { KubeletFailure } from "./client.ts";
import { PodIndex } from "./pod-index.ts";
import { KubeletRefresher, type RefreshOutcome, type Refresher } from "./refresh.ts";
import type { KubeletSettings } from "./settings.ts";

/** Time and timers, injectable so that tests run on a fake clock. */
export interface Scheduler {
  /** CLOCK_MONOTONIC ns: the kernel's timestamps' clock */
  nowNs(): number;
  /** runs `fn` after `ms`; returns a function that cancels it */
  setTimer(fn: () => void, ms: number): () => void;
}

export const realScheduler = (nowNs: () => number): Scheduler => ({
  nowNs,
  setTimer(fn, ms) {
    const timer = setTimeout(fn, ms);
    return () => clearTimeout(timer);
  },
});

export interface PodSourceOptions {
  /** the kubelet URL, for messages */
  url: string;
  /** the token file in use, for the 401 message */
  tokenFile: string | null;
  refreshMs: number;
  /** least time between the starts of two refreshes asked for by lines (default 1 s) */
  minGapMs?: number;
  refresher: Refresher;
  scheduler: Scheduler;
  /** a failure starts (and anything unexpected) */
  notice: (message: string) => void;
  /** good news: the first list, a failure that ended (default: notice) */
  info?: (message: string) => void;
}

const NS_PER_MS = 1e6;

const count = (n: number, noun: string) => `${n} ${noun}${n === 1 ? "" : "s"}`;

export class PodSource {
  #index: PodIndex = PodIndex.EMPTY;
  /** start (monotonic ns) of the latest refresh that has completed, successfully or not */
  completedStartNs = Number.NEGATIVE_INFINITY;
  /** called after each completed refresh (and after the index swap when it succeeded) */
  onRefreshed: ((startNs: number) => void) | null = null;

  readonly #o: Required<PodSourceOptions>;
  #inFlightStartNs: number | null = null;
  #lastStartNs = Number.NEGATIVE_INFINITY;
  #wanted = false;
  #cancelTimer: (() => void) | null = null;
  #running = false;
  readonly #failure: FailureState<KubeletFailureKind>;
  #indexBuiltNs: number | null = null;
  #announced = false;
  readonly stats = { refreshes: 0, failures: 0 };

  constructor(options: PodSourceOptions) {
    this.#o = { minGapMs: 1000, info: options.notice, ...options };
    this.#failure = new FailureState(`the kubelet at ${this.#o.url}`, { notice: this.#o.notice, info: this.#o.info }, { invalid: "the invalid pod list" });
  }

  get index(): PodIndex {
    return this.#index;
  }

  lookup(ip: string): PodInfo | undefined {
    return this.#index.lookup(ip);
  }

  lookupV4(address: number): PodInfo | undefined {
    return this.#index.lookupV4(address);
  }

  /** The name of a container of this node's pods, by its runtime id. */
  containerName(id: string): string | undefined {
    return this.#index.containerName(id);
  }

  isNodeAddress(ip: string): boolean {
    return this.#index.isNodeAddress(ip);
  }

  /** False while failing: the last completed refresh failed. */
  get answering(): boolean {
    return this.#failure.kind === null;
  }

  /** Asks for a refresh that starts at or after `eventNs` (see the scheduling rules above), unless one is running or asked for. */
  requestRefresh(eventNs: number): void {
    if (!this.#running || !this.answering || this.completedStartNs >= eventNs) return;
    if (this.#wanted || (this.#inFlightStartNs !== null && this.#inFlightStartNs >= eventNs)) return;
    this.#wanted = true;
    this.#schedule();
  }

  start(): void {
    this.#running = true;
    this.#begin();
  }

  stop(): void {
    this.#running = false;
    this.#cancelTimer?.();
    this.#cancelTimer = null;
    this.#o.refresher.close();
  }

  #schedule(): void {
    this.#cancelTimer?.();
    this.#cancelTimer = null;
    if (!this.#running || this.#inFlightStartNs !== null) return;
    const gapMs = this.#wanted ? this.#o.minGapMs : this.#o.refreshMs;
    const delayMs = Math.max(0, (this.#lastStartNs - this.#o.scheduler.nowNs()) / NS_PER_MS + gapMs);
    this.#cancelTimer = this.#o.scheduler.setTimer(() => {
      this.#cancelTimer = null;
      this.#begin();
    }, delayMs);
  }

  #begin(): void {
    if (!this.#running || this.#inFlightStartNs !== null) return;
    const startNs = this.#o.scheduler.nowNs();
    this.#wanted = false;
    this.#lastStartNs = startNs;
    this.#inFlightStartNs = startNs;
    void this.#o.refresher.run().then((outcome) => this.#finish(startNs, outcome));
  }

  #finish(startNs: number, outcome: RefreshOutcome): void {
    this.#inFlightStartNs = null;
    if (!this.#running) return;
    this.stats.refreshes++;
    if (outcome.ok) {
      this.#index = outcome.index;
      this.#indexBuiltNs = startNs;
      this.#succeeded();
    } else {
      this.stats.failures++;
      this.#failed(outcome.failure, startNs);
    }
    this.completedStartNs = startNs;
    this.#schedule();
    this.onRefreshed?.(startNs);
  }

  #succeeded(): void {
    const index = this.#index;
    const summary = `${count(index.podCount, "pod")}, ${count(index.size, "pod IP")} indexed`;
    if (!this.#failure.recover(`; pod list received (${summary})`) && !this.#announced) {
      this.#o.info(`pod list from the kubelet at ${this.#o.url}: ${summary}; refreshing every ${this.#o.refreshMs / 1000} s`);
    }
    this.#announced = true;
  }

  #failed({ kind, detail }: KubeletFailure, nowNs: number): void {
    this.#failure.fail(kind, () => `${kubeletFailureMessage(kind, detail, this.#o.url, this.#o.tokenFile)}; ${this.#keeping(nowNs)}`);
  }

  #keeping(nowNs: number): string {
    if (this.#indexBuiltNs === null) return "pod names are '-' until it answers";
    const ageS = Math.round((nowNs - this.#indexBuiltNs) / 1e9);
    return `keeping the last good pod list (${count(this.#index.podCount, "pod")}, ${ageS} s old) until it answers`;
  }
}

/** The agent's pod source: reads the kubelet, on the kernel's clock; not started yet. */
export function createPodSource(
  settings: KubeletSettings,
  nowNs: () => number,
  log: { warn: (message: string) => void; info: (message: string) => void },
): PodSource {
  return new PodSource({
    url: settings.url,
    tokenFile: settings.tokenFile,
    refreshMs: settings.refreshMs,
    refresher: new KubeletRefresher(settings),
    scheduler: realScheduler(nowNs),
    notice: log.warn,
    info: log.info,
  });
}
