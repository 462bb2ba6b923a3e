// The kubelet settings of a run, from the flags as given, the environment and the files present:
// the defaults the README documents live here, in one place.
import { existsSync } from "node:fs";
import type { KubeletClientConfig } from "./kubelet-client.ts";

export const SERVICE_ACCOUNT_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token";
export const SERVICE_ACCOUNT_CA = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";
export const DEFAULT_REFRESH_S = 5;
export const DEFAULT_HOLD_S = 2;
/** The request timeout follows the refresh period (a later answer is stale anyway), within these. */
const MIN_TIMEOUT_MS = 1_000;
const MAX_TIMEOUT_MS = 10_000;

/** The kubelet flags of `run` as given (undefined: not given). */
export interface KubeletFlags {
  kubeletHost?: string;
  kubeletUrl?: string;
  kubeletTokenFile?: string;
  kubeletCaFile?: string;
  kubeletInsecureSkipTlsVerify?: boolean;
  kubeletRefresh?: number;
  kubeletHold?: number;
  noKubelet?: boolean;
}

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
  flags: KubeletFlags,
  env: Record<string, string | undefined> = process.env,
  exists: (path: string) => boolean = existsSync,
): KubeletSettings | null {
  if (flags.noKubelet) return null;
  const host = flags.kubeletHost ?? (env.NODE_IP || undefined) ?? (env.HOST_IP || undefined) ?? "127.0.0.1";
  const url = flags.kubeletUrl ?? `https://${urlHost(host)}:10250/pods`;
  const refreshMs = (flags.kubeletRefresh ?? DEFAULT_REFRESH_S) * 1000;
  return {
    url,
    tokenFile: flags.kubeletTokenFile ?? (exists(SERVICE_ACCOUNT_TOKEN) ? SERVICE_ACCOUNT_TOKEN : null),
    caFile: flags.kubeletCaFile ?? (exists(SERVICE_ACCOUNT_CA) ? SERVICE_ACCOUNT_CA : null),
    insecureSkipTlsVerify: flags.kubeletInsecureSkipTlsVerify ?? false,
    timeoutMs: Math.min(MAX_TIMEOUT_MS, Math.max(MIN_TIMEOUT_MS, refreshMs)),
    refreshMs,
    holdMs: (flags.kubeletHold ?? DEFAULT_HOLD_S) * 1000,
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

/** The run flags that only make sense with pod names, as `run` reads them. */
export interface FilterFlags {
  namespace?: readonly string[];
  excludeNamespace?: readonly string[];
  pod?: readonly string[];
}

/** A contradiction between the kubelet and filter flags, as a usage message; null when none. */
export function kubeletFlagsConflict(flags: KubeletFlags & FilterFlags): string | null {
  if (flags.noKubelet) {
    const given = [
      ["namespace", flags.namespace?.length],
      ["exclude-namespace", flags.excludeNamespace?.length],
      ["pod", flags.pod?.length],
      ["kubelet-host", flags.kubeletHost],
      ["kubelet-url", flags.kubeletUrl],
      ["kubelet-token-file", flags.kubeletTokenFile],
      ["kubelet-ca-file", flags.kubeletCaFile],
      ["kubelet-insecure-skip-tls-verify", flags.kubeletInsecureSkipTlsVerify],
      ["kubelet-refresh", flags.kubeletRefresh],
      ["kubelet-hold", flags.kubeletHold],
    ].find(([, value]) => value !== undefined && value !== 0 && value !== false);
    if (given) return `--${given[0]} needs the kubelet's pod list: it cannot be used with --no-kubelet`;
  }
  if (flags.kubeletCaFile !== undefined && flags.kubeletInsecureSkipTlsVerify) {
    return "--kubelet-ca-file and --kubelet-insecure-skip-tls-verify contradict each other: give one of them";
  }
  return null;
}
