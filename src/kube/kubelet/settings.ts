// The kubelet settings of a run, from its options, the environment and the files present: the
// defaults the README documents (NODE_IP, the service-account files) are applied here.
import { existsSync } from "node:fs";
import { DEFAULT_KUBELET_HOLD_S, DEFAULT_KUBELET_REFRESH_S, type RunOptions } from "../../options.ts";
import { SERVICE_ACCOUNT_CA, SERVICE_ACCOUNT_TOKEN } from "../http.ts";
import type { KubeletClientConfig } from "./client.ts";

/** The request timeout follows the refresh period (a later answer is stale anyway), within these. */
const MIN_TIMEOUT_MS = 1_000;
const MAX_TIMEOUT_MS = 10_000;

export interface KubeletSettings extends KubeletClientConfig {
  refreshMs: number;
  holdMs: number;
}

/** A host name or address as it goes into a URL (IPv6 in brackets). */
function urlHost(host: string): string {
  return host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
}

/** null with --no-kubelet. */
export function resolveKubeletSettings(
  flags: Partial<RunOptions>,
  env: Record<string, string | undefined> = process.env,
  exists: (path: string) => boolean = existsSync,
): KubeletSettings | null {
  if (flags.noKubelet) return null;
  const host = flags.kubeletHost ?? (env.NODE_IP || undefined) ?? (env.HOST_IP || undefined) ?? "127.0.0.1";
  const url = flags.kubeletUrl ?? `https://${urlHost(host)}:10250/pods`;
  const refreshMs = (flags.kubeletRefresh ?? DEFAULT_KUBELET_REFRESH_S) * 1000;
  return {
    url,
    tokenFile: flags.kubeletTokenFile ?? (exists(SERVICE_ACCOUNT_TOKEN) ? SERVICE_ACCOUNT_TOKEN : null),
    caFile: flags.kubeletCaFile ?? (exists(SERVICE_ACCOUNT_CA) ? SERVICE_ACCOUNT_CA : null),
    insecureSkipTlsVerify: flags.kubeletInsecureSkipTlsVerify ?? false,
    timeoutMs: Math.min(MAX_TIMEOUT_MS, Math.max(MIN_TIMEOUT_MS, refreshMs)),
    refreshMs,
    holdMs: (flags.kubeletHold ?? DEFAULT_KUBELET_HOLD_S) * 1000,
  };
}

/** What a run says once on stderr about these settings. */
export function settingsNotices(s: KubeletSettings): string[] {
  const notices: string[] = [];
  if (s.url.startsWith("http:")) {
    notices.push(`reading pods over plain HTTP from ${s.url} (the kubelet's read-only port): no token is sent, nothing is verified`);
  } else if (s.insecureSkipTlsVerify) {
    notices.push(
      `TLS verification of the kubelet at ${s.url} is OFF (--kubelet-insecure-skip-tls-verify): ` +
        `whoever can intercept that connection can feed us pod names and receives our token`,
    );
  }
  return notices;
}
