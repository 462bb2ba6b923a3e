// Fakes for the pod source and enricher tests: a clock whose timers fire only when the test moves
// time, a refresher whose refreshes finish only when the test says so, records with chosen ends.
import type { AccessRecord } from "../../src/accesslog/format.ts";
import type { KubeletFailure as RefreshFailure } from "../../src/kube/kubelet/client.ts";
import { buildIndexData } from "../../src/kube/kubelet/pod-index.ts";
import { checkPodList } from "../../src/kube/kubelet/pod-list.ts";
import type { Scheduler } from "../../src/kube/kubelet/pod-source.ts";
import type { RefreshOutcome } from "../../src/kube/kubelet/refresh.ts";
import type { Refresher } from "../../src/kube/kubelet/refresh.ts";
import { pod, podList, type PodSpecOptions } from "../e2e/kubelet-pods.ts";

export const MS = 1e6;

/** Monotonic ns that start at 100 s; timers fire in time order as the test advances. */
export class FakeClock implements Scheduler {
  now = 100_000 * MS;
  #timers: { at: number; seq: number; fn: () => void }[] = [];
  #seq = 0;

  nowNs(): number {
    return this.now;
  }

  setTimer(fn: () => void, ms: number): () => void {
    const timer = { at: this.now + ms * MS, seq: this.#seq++, fn };
    this.#timers.push(timer);
    return () => {
      this.#timers = this.#timers.filter((t) => t !== timer);
    };
  }

  /** Moves time forward by `ms`, firing due timers in order (and letting promises settle). */
  async advance(ms: number): Promise<void> {
    const end = this.now + ms * MS;
    for (;;) {
      await settle();
      const due = this.#timers.filter((t) => t.at <= end).sort((a, b) => a.at - b.at || a.seq - b.seq)[0];
      if (due === undefined) break;
      this.#timers = this.#timers.filter((t) => t !== due);
      this.now = Math.max(this.now, due.at);
      due.fn();
    }
    this.now = end;
    await settle();
  }
}

/** Lets pending promise callbacks run. */
export async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await Promise.resolve();
}

/** A refresher whose runs the test finishes by hand, in order. */
export class FakeRefresher implements Refresher {
  /** clock time at which each run started */
  readonly starts: number[] = [];
  #waiting: ((outcome: RefreshOutcome) => void)[] = [];
  closed = false;

  constructor(private readonly clock: FakeClock) {}

  run(): Promise<RefreshOutcome> {
    this.starts.push(this.clock.now);
    return new Promise((resolve) => this.#waiting.push(resolve));
  }

  get running(): number {
    return this.#waiting.length;
  }

  /** Finishes the oldest running refresh with a list of these pods. */
  async answer(pods: PodSpecOptions[]): Promise<void> {
    const list = checkPodList(podList(pods.map(pod)));
    if (!list.ok) throw new Error(list.problem);
    await this.finish({ ok: true, index: buildIndexData(list.pods), bytes: 0, timings: { fetchMs: 1, parseMs: 1, indexMs: 1 } });
  }

  async fail(failure: RefreshFailure): Promise<void> {
    await this.finish({ ok: false, failure });
  }

  async finish(outcome: RefreshOutcome): Promise<void> {
    const resolve = this.#waiting.shift();
    if (resolve === undefined) throw new Error("no refresh is running");
    resolve(outcome);
    await settle();
  }

  close(): void {
    this.closed = true;
  }
}

let port = 40000;

/** A closed-connection record between two addresses (ports are unique per record). */
export function record(direction: "OUTBOUND" | "INBOUND", src: string, dst: string, reportNs: number): AccessRecord {
  const sec = Math.floor(reportNs / 1e9);
  return {
    reportTime: { sec, nsec: reportNs - sec * 1e9 },
    startTime: null,
    srcAddr: src,
    srcPort: port++,
    srcWorkload: null,
    srcNamespace: null,
    dstAddr: dst,
    dstPort: 8080,
    dstService: null,
    dstWorkload: null,
    dstNamespace: null,
    direction,
    state: "BPF_TCP_CLOSE",
    sentBytes: 1,
    receivedBytes: 2,
    packetLoss: 0,
    retransmissions: 0,
    srttUs: 10,
    minRttUs: 5,
    durationMs: 1,
    error: null,
    family: src.includes(":") ? 6 : 4,
    netns: 4026531840,
  };
}
