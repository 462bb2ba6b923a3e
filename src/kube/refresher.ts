// What PodSource calls for a refresh: an interface, so that its scheduling and messages are
// tested with a fake (test/unit/kube-fakes.ts); the agent's reads the kubelet (refresh.ts).
import { KubeletClient, type KubeletClientConfig } from "./kubelet-client.ts";
import { type RefreshOutcome, refreshOnce } from "./refresh.ts";

export interface Refresher {
  /** One refresh; never rejects. */
  run(): Promise<RefreshOutcome>;
  close(): void;
}

export class KubeletRefresher implements Refresher {
  readonly #client: KubeletClient;
  #closed = false;

  constructor(config: KubeletClientConfig) {
    this.#client = new KubeletClient(config);
  }

  run(): Promise<RefreshOutcome> {
    if (this.#closed) return Promise.resolve({ ok: false, failure: { kind: "unreachable", detail: "stopped" } });
    return refreshOnce(this.#client);
  }

  close(): void {
    this.#closed = true;
  }
}
