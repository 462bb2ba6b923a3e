// One refresh: fetch the pod list and build the index. The answer is read as it
// arrives (pod-list-reader.ts), one pod at a time, in slices of at most SLICE_MS with a turn of
// the event loop in between: the lines' 10 ms timer never waits long for a list, however large
// or slow, and memory never holds the list's whole object graph.
//
// PodSource (pod-source.ts) runs refreshes through the Refresher interface, so that its scheduling
// and messages are tested with a fake refresher; the agent's reads the kubelet.
import { KubeletClient, type KubeletClientConfig, type KubeletFailure } from "./client.ts";
import { PodIndex } from "./pod-index.ts";
import { KnownPods, PodListReader } from "./pod-list-reader.ts";

export interface RefreshTimings {
  /** waiting for the answer's bytes */
  fetchMs: number;
  /** JSON.parse + schema check, pod by pod */
  parseMs: number;
  indexMs: number;
}

export type RefreshOutcome =
  | { ok: true; index: PodIndex; bytes: number; timings: RefreshTimings }
  | { ok: false; failure: KubeletFailure };

/** The longest the list is read without letting the event loop turn. */
export const SLICE_MS = 2;

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

/** One refresh; `knownPods` (kept from refresh to refresh) spares reading unchanged pods again. */
export async function refreshOnce(client: KubeletClient, knownPods: KnownPods | null = null): Promise<RefreshOutcome> {
  const t0 = performance.now();
  const reader = new PodListReader(knownPods);
  let parseMs = 0;
  let turnedAt = performance.now();
  // Reads what has arrived, letting the event loop turn whenever a slice's time is up (a chunk
  // can hold the whole list, and chunks that are already there arrive without a turn).
  const readArrived = async () => {
    for (;;) {
      const start = performance.now();
      const done = reader.work(turnedAt + SLICE_MS);
      const now = performance.now();
      parseMs += now - start;
      if (done && now - turnedAt < SLICE_MS) return;
      await nextTurn();
      turnedAt = performance.now();
      if (done) return;
    }
  };
  const streamed = await client.streamPods((chunk) => {
    reader.push(chunk);
    return readArrived();
  });
  if (!streamed.ok) {
    knownPods?.settle(false);
    return streamed;
  }
  reader.end();
  await readArrived();
  const list = reader.result();
  knownPods?.settle(list.ok);
  if (!list.ok) return { ok: false, failure: { kind: "invalid", detail: list.problem } };
  const t1 = performance.now();
  const index = knownPods === null ? PodIndex.fromPods(list.pods) : PodIndex.fromIndexed(knownPods.pods());
  const indexMs = performance.now() - t1;
  return { ok: true, index, bytes: streamed.bytes, timings: { fetchMs: t1 - t0 - parseMs, parseMs, indexMs } };
}

export interface Refresher {
  /** One refresh; never rejects. */
  run(): Promise<RefreshOutcome>;
  close(): void;
}

export class KubeletRefresher implements Refresher {
  readonly #client: KubeletClient;
  readonly #knownPods = new KnownPods();
  #closed = false;

  constructor(config: KubeletClientConfig) {
    this.#client = new KubeletClient(config);
  }

  run(): Promise<RefreshOutcome> {
    if (this.#closed) return Promise.resolve({ ok: false, failure: { kind: "unreachable", detail: "stopped" } });
    return refreshOnce(this.#client, this.#knownPods);
  }

  close(): void {
    this.#closed = true;
  }
}
