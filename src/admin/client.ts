// The CLI's side of the admin API: what `accesslog`, `monitoring` and
// `status` send, and every way that can go wrong turned into one sentence.
// Works against our agent and, for the switches, against Kmesh's daemon too
// (same paths, same answers).
import * as v from "valibot";
import { formatHostPort, type HostPort } from "../address.ts";
import { ExitError } from "../errors.ts";
import { parseExposition, type ParsedSample } from "./metrics.ts";
import type { SwitchPath } from "./switches.ts";
import type { VersionInfo } from "./version.ts";

export const REQUEST_TIMEOUT_MS = 5_000;

/** The URL of `path` on the agent at `address`. */
export function adminUrl(address: HostPort, path: string): string {
  return `http://${formatHostPort(address)}${path}`;
}

/** One POST of `monitoring`, in the order kmeshctl sends them. */
export interface SwitchRequest {
  path: SwitchPath;
  enable: boolean;
}

/** The agent could not be reached, or said no. One line, without the program name. */
export class AdminClientError extends ExitError {
  override name = "AdminClientError";
}

const VersionInfoSchema = v.looseObject({
  gitVersion: v.string(),
  program: v.string(),
  pid: v.pipe(v.number(), v.integer()),
});

/**
 * One request; `where` names the agent in messages: its address, or `pod <ns>/<name>` when the
 * address is the local end of a port-forward.
 */
async function request(address: HostPort, method: "GET" | "POST", path: string, timeoutMs = REQUEST_TIMEOUT_MS, where = formatHostPort(address)) {
  try {
    const response = await fetch(adminUrl(address, path), {
      method,
      signal: AbortSignal.timeout(timeoutMs),
      redirect: "manual",
    });
    return { status: response.status, body: await response.text() };
  } catch (error) {
    const e = error as { name?: unknown; code?: unknown; message?: unknown };
    if (where.startsWith("pod ")) throw new AdminClientError(`${where}: no answer from its admin API through the port-forward (${String(e.message ?? error)})`);
    if (e.code === "ECONNREFUSED") {
      throw new AdminClientError(
        `no agent is listening on ${where} (start one with \`kmesh-accesslog run\`, or name another with --admin-addr)`,
      );
    }
    if (e.name === "TimeoutError" || e.name === "AbortError") {
      throw new AdminClientError(`the agent on ${where} did not answer ${method} ${path} within ${timeoutMs / 1000} s`);
    }
    throw new AdminClientError(`cannot reach the agent on ${where}: ${String(e.message ?? error)}`);
  }
}

/** GET /version, if what answers is one of our agents; undefined otherwise. */
export async function fetchAgentVersion(address: HostPort, timeoutMs = REQUEST_TIMEOUT_MS, where = formatHostPort(address)): Promise<VersionInfo | undefined> {
  const { status, body } = await request(address, "GET", "/version", timeoutMs, where);
  if (status !== 200) return undefined;
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    return undefined;
  }
  const result = v.safeParse(VersionInfoSchema, json);
  return result.success ? (result.output as unknown as VersionInfo) : undefined;
}

/**
 * POST <path>?enable=<true|false>, as kmeshctl sends it. Resolves on 200;
 * otherwise throws with the agent's own words.
 */
export async function postSwitch(address: HostPort, path: SwitchPath, enable: boolean, where = formatHostPort(address)): Promise<void> {
  const { status, body } = await request(address, "POST", `${path}?enable=${enable}`, REQUEST_TIMEOUT_MS, where);
  if (status === 200) return;
  const said = body.trim().replaceAll(/\s*\n\s*/g, " ");
  const what = `${enable ? "enable" : "disable"} ${path.slice(1)}`;
  if (status === 400 && said.includes("monitoring is disabled")) {
    throw new AdminClientError(
      `the agent on ${where} refused to ${what}: ${said} ` +
        "(turn monitoring on first: kmesh-accesslog monitoring --all enable)",
    );
  }
  if (status === 404) {
    throw new AdminClientError(`what answers on ${where} has no ${path} (HTTP 404): is it a kmesh-accesslog or Kmesh agent?`);
  }
  throw new AdminClientError(`the agent on ${where} could not ${what}: HTTP ${status}${said ? `: ${said}` : ""}`);
}

export interface AgentStatus {
  address: string;
  version: VersionInfo;
  ready: boolean;
  /** why not, when not ready */
  readyDetail: string;
  samples: ParsedSample[];
}

/** GET /version, /debug/ready and /metrics: everything `status` prints. */
export async function fetchStatus(address: HostPort, where = formatHostPort(address)): Promise<AgentStatus> {
  const version = await fetchAgentVersion(address, REQUEST_TIMEOUT_MS, where);
  if (version === undefined) {
    throw new AdminClientError(`what answers on ${where} is not a kmesh-accesslog agent (its /version is not ours)`);
  }
  const [ready, metrics] = await Promise.all([
    request(address, "GET", "/debug/ready", REQUEST_TIMEOUT_MS, where),
    request(address, "GET", "/metrics", REQUEST_TIMEOUT_MS, where),
  ]);
  if (metrics.status !== 200) throw new AdminClientError(`the agent on ${where} answered GET /metrics with HTTP ${metrics.status}`);
  return {
    address: where,
    version,
    ready: ready.status === 200,
    readyDetail: ready.status === 200 ? "" : ready.body.trim().replace(/^not ready: /, ""),
    samples: parseExposition(metrics.body),
  };
}
