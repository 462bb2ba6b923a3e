// One refresh: fetch the pod list, parse and check it, build the index as plain arrays. This is
// what the refresh worker runs (off the main thread: parsing a 1,000-pod list takes tens of
// milliseconds, see scripts/bench/kubelet-refresh.ts), and what runs inline when no worker can.
import type { KubeletClient, KubeletClientConfig, RefreshFailure } from "./kubelet-client.ts";
import { buildIndexData, type PodIndexData } from "./pod-index.ts";
import { parsePodList } from "./pod-list.ts";

export interface RefreshTimings {
  fetchMs: number;
  /** JSON.parse + schema check */
  parseMs: number;
  indexMs: number;
}

export type RefreshOutcome =
  | { ok: true; index: PodIndexData; bytes: number; timings: RefreshTimings }
  | { ok: false; failure: RefreshFailure };

/** Parse + check + index of a pod list's text (the CPU-bound part of a refresh). */
export function indexPodListText(text: string): { ok: true; index: PodIndexData; parseMs: number; indexMs: number } | { ok: false; failure: RefreshFailure } {
  const t0 = performance.now();
  const list = parsePodList(text);
  const t1 = performance.now();
  if (!list.ok) return { ok: false, failure: { kind: "invalid", detail: list.problem } };
  const index = buildIndexData(list.pods);
  return { ok: true, index, parseMs: t1 - t0, indexMs: performance.now() - t1 };
}

export async function refreshOnce(client: KubeletClient): Promise<RefreshOutcome> {
  const t0 = performance.now();
  const fetched = await client.fetchPods();
  const fetchMs = performance.now() - t0;
  if (!fetched.ok) return fetched;
  const built = indexPodListText(fetched.text);
  if (!built.ok) return built;
  return { ok: true, index: built.index, bytes: fetched.bytes, timings: { fetchMs, parseMs: built.parseMs, indexMs: built.indexMs } };
}

// ── The refresh worker's messages (refresh-worker.ts is the other side) ──────

export type ToRefreshWorker = { type: "configure"; config: KubeletClientConfig } | { type: "refresh"; id: number };
export type FromRefreshWorker = { type: "outcome"; id: number; outcome: RefreshOutcome };
