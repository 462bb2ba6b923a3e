// The agent's side of the API-server source: settings → a started-later ApiSource, and the name
// source lines use when there is no kubelet (the API server alone then names both ends).
import type { NameSource } from "../accesslog/enrich.ts";
import { ApiClient } from "./api-client.ts";
import { resolveApiSettings } from "./api-config.ts";
import { ApiSource } from "./api-source.ts";
import { ClusterIndex } from "./cluster-index.ts";
import type { KubeletSettings } from "./config.ts";
import { DEFAULT_KUBELET_HOLD_S, type RunOptions } from "../options.ts";
import { isLoopbackOrUnspecified } from "../address.ts";

interface Log {
  warn(message: string): void;
  info(message: string): void;
  debug(message: string): void;
}

/**
 * The API-server source a run asks for, not started; null when off. Throws ApiConfigError when it
 * is asked for by a flag and cannot be set up (an unreadable kubeconfig, no cluster around).
 */
export function createApiSource(options: Partial<RunOptions> & { clusterDomain: string }, log: Log, env = process.env): ApiSource | null {
  const settings = resolveApiSettings(options, env);
  if (settings === null) return null;
  if (settings.insecureSkipTlsVerify) {
    log.warn(`TLS verification of the API server at ${settings.server} is OFF (insecure-skip-tls-verify in ${settings.origin})`);
  }
  return new ApiSource({
    client: new ApiClient(settings),
    index: new ClusterIndex(options.clusterDomain),
    notice: log.warn,
    info: log.info,
    debug: log.debug,
  });
}

/** Names without a kubelet: nothing local is known, so no line waits for a pod list. */
export const NO_KUBELET: NameSource = {
  lookup: () => undefined,
  isNodeAddress: isLoopbackOrUnspecified,
  completedStartNs: Number.POSITIVE_INFINITY,
  answering: true,
  requestRefresh: () => undefined,
};

/** How long lines may wait (for the pod list, for a ClusterIP line's INBOUND pair), ns. */
export function holdNsOf(kubelet: KubeletSettings | null): number {
  return (kubelet?.holdMs ?? DEFAULT_KUBELET_HOLD_S * 1000) * 1e6;
}
