// The CLI's side of the admin API: which agent to talk to (its Unix socket or its address), what
// `accesslog`, `monitoring` and `status` send, and every way that can go wrong turned into one
// sentence. Works against our agent and, for the switches over TCP, against Kmesh's daemon too
// (same paths, same answers).
import { accessSync, constants } from "node:fs";
import * as v from "valibot";
import { formatHostPort, parseHostPort, type HostPort } from "../address.ts";
import { ExitError } from "../errors.ts";
import { DEFAULT_ADMIN_ADDR, DEFAULT_ADMIN_SOCKET, type Filters, FiltersSchema } from "../options.ts";
import { parseExposition, type ParsedSample } from "./metrics.ts";
import type { SwitchPath } from "./switches.ts";
import type { VersionInfo } from "./version.ts";

export const REQUEST_TIMEOUT_MS = 5_000;

/** Where an agent's admin API is reached: its TCP address, or its Unix socket. */
export type AdminTarget = { addr: HostPort } | { socket: string };

/** What the command line named, if anything. */
export interface AdminTargetFlags {
  adminAddr?: HostPort | undefined;
  adminSocket?: string | undefined;
}

/** The target as the messages name it: host:port, or the socket's path. */
export function describeTarget(target: AdminTarget): string {
  return "socket" in target ? target.socket : formatHostPort(target.addr);
}

/** May this process connect to the Unix socket at `path` (it exists, and this user may write it)? */
function mayConnect(path: string): boolean {
  try {
    accessSync(path, constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * --admin-addr or --admin-socket when given; else this node's agent socket when this user may use
 * it (root, in practice: it is mode 0600), which needs no peer lookup and works whatever
 * --admin-addr the agent has; else Kmesh's address.
 */
export function chooseTarget(flags: AdminTargetFlags, canConnect: (path: string) => boolean = mayConnect): AdminTarget {
  if (flags.adminAddr !== undefined) return { addr: flags.adminAddr };
  if (flags.adminSocket !== undefined) return { socket: flags.adminSocket };
  if (canConnect(DEFAULT_ADMIN_SOCKET)) return { socket: DEFAULT_ADMIN_SOCKET };
  return { addr: parseHostPort(DEFAULT_ADMIN_ADDR)! };
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

/** Nothing listens where the agent should be (a socket file may remain: an agent killed with SIGKILL leaves one). */
export class NoAgentError extends AdminClientError {
  override name = "NoAgentError";
}

const VersionInfoSchema = v.looseObject({
  gitVersion: v.string(),
  program: v.string(),
  pid: v.pipe(v.number(), v.integer()),
});

/**
 * One request; `where` names the agent in messages: its address or socket, or `pod <ns>/<name>`
 * when the address is the local end of a port-forward.
 */
async function request(target: AdminTarget, method: "GET" | "POST" | "PUT", path: string, timeoutMs = REQUEST_TIMEOUT_MS, where = describeTarget(target), body?: string) {
  const viaSocket = "socket" in target;
  try {
    const init = { method, signal: AbortSignal.timeout(timeoutMs), redirect: "manual", ...(body === undefined ? {} : { body, headers: { "Content-Type": "application/json" } }) } as const;
    const response = viaSocket ? await fetch(`http://localhost${path}`, { ...init, unix: target.socket }) : await fetch(`http://${formatHostPort(target.addr)}${path}`, init);
    return { status: response.status, body: await response.text() };
  } catch (error) {
    const e = error as { name?: unknown; code?: unknown; message?: unknown };
    if (where.startsWith("pod ")) throw new AdminClientError(`${where}: no answer from its admin API through the port-forward (${String(e.message ?? error)})`);
    // A socket file without a listener is what an agent killed with SIGKILL leaves.
    if (e.code === "ECONNREFUSED" || (viaSocket && e.code === "ENOENT")) {
      throw new NoAgentError(
        `no agent is listening on ${where} (start one with \`kmesh-accesslog run\`, or name another with ${viaSocket ? "--admin-socket" : "--admin-addr"})`,
      );
    }
    if (viaSocket && (e.code === "EACCES" || e.code === "EPERM")) {
      throw new AdminClientError(`cannot connect to ${where}: permission denied (the agent's socket is mode 0600: run this as root)`);
    }
    if (e.name === "TimeoutError" || e.name === "AbortError") {
      throw new AdminClientError(`the agent on ${where} did not answer ${method} ${path} within ${timeoutMs / 1000} s`);
    }
    throw new AdminClientError(`cannot reach the agent on ${where}: ${String(e.message ?? error)}`);
  }
}

/** GET /version, if what answers is one of our agents; undefined otherwise. */
export async function fetchAgentVersion(target: AdminTarget, timeoutMs = REQUEST_TIMEOUT_MS, where = describeTarget(target)): Promise<VersionInfo | undefined> {
  const { status, body } = await request(target, "GET", "/version", timeoutMs, where);
  if (status !== 200) return undefined;
  const result = v.safeParse(v.pipe(v.string(), v.parseJson(), VersionInfoSchema), body);
  return result.success ? (result.output as unknown as VersionInfo) : undefined;
}

/**
 * POST <path>?enable=<true|false>, as kmeshctl sends it. Resolves on 200;
 * otherwise throws with the agent's own words.
 */
export async function postSwitch(target: AdminTarget, path: SwitchPath, enable: boolean, where = describeTarget(target)): Promise<void> {
  const { status, body } = await request(target, "POST", `${path}?enable=${enable}`, REQUEST_TIMEOUT_MS, where);
  if (status === 200) return;
  const said = body.trim().replaceAll(/\s*\n\s*/g, " ");
  const what = `${enable ? "enable" : "disable"} ${path.slice(1)}`;
  if (status === 400 && said.includes("monitoring is disabled")) {
    throw new AdminClientError(
      `the agent on ${where} refused to ${what}: ${said} ` + "(turn monitoring on first: kmesh-accesslog monitoring --all enable)",
    );
  }
  // Who may change the switches: the agent's answer says why not and what to do.
  if (status === 403) throw new AdminClientError(`the agent on ${where} refused to ${what}: ${said}`);
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
export async function fetchStatus(target: AdminTarget, where = describeTarget(target)): Promise<AgentStatus> {
  const version = await fetchAgentVersion(target, REQUEST_TIMEOUT_MS, where);
  if (version === undefined) {
    throw new AdminClientError(`what answers on ${where} is not a kmesh-accesslog agent (its /version is not ours)`);
  }
  const [ready, metrics] = await Promise.all([
    request(target, "GET", "/debug/ready", REQUEST_TIMEOUT_MS, where),
    request(target, "GET", "/metrics", REQUEST_TIMEOUT_MS, where),
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

/** The filters' answer (GET or PUT /filters) as Filters, or the agent's own words. */
function filtersAnswer(answer: { status: number; body: string }, what: string, where: string): Filters {
  const said = answer.body.trim().replaceAll(/\s*\n\s*/g, " ");
  if (answer.status === 404) throw new AdminClientError(`what answers on ${where} has no /filters (HTTP 404): a kmesh-accesslog agent of this version or later has`);
  if (answer.status !== 200) throw new AdminClientError(`the agent on ${where} refused to ${what}: ${said}`);
  const result = v.safeParse(v.pipe(v.string(), v.parseJson(), FiltersSchema), answer.body);
  if (!result.success) throw new AdminClientError(`the agent on ${where} answered ${what} with something that is not filters: ${JSON.stringify(said.slice(0, 200))}`);
  return result.output;
}

/** GET /filters. */
export async function getFilters(target: AdminTarget, where = describeTarget(target)): Promise<Filters> {
  return filtersAnswer(await request(target, "GET", "/filters", REQUEST_TIMEOUT_MS, where), "read its filters", where);
}

/** PUT /filters: replaces every filter; resolves with what the agent applied. */
export async function putFilters(target: AdminTarget, filters: Filters, where = describeTarget(target)): Promise<Filters> {
  const answer = await request(target, "PUT", "/filters", REQUEST_TIMEOUT_MS, where, JSON.stringify(filters));
  return filtersAnswer(answer, "change its filters", where);
}
