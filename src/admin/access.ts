// Who may change what over the admin API: one rule, by method, in one place (docs/admin-api.md,
// "Who may change state"). GET and HEAD stay open to whoever can connect; any other method is
// served to root, to the uids and groups given, or through the Unix socket, else refused with 403,
// the reason and the remedy. Each such request, served or refused, is one audit line on stderr;
// refusals are counted for /metrics.
import type { Logger, LogLevel } from "../log.ts";
import { goError } from "./go-compat.ts";
import { LOGGERS_PATH } from "./loggers.ts";
import { describeFilters, FILTERS_PATH } from "./filters.ts";
import type { Filters } from "../options.ts";
import type { Peer } from "./peer.ts";
import { splitTarget } from "./routes.ts";
import { describeOutputs, SWITCH_LABELS, SWITCH_NAMES, SWITCH_PATHS, type SwitchPath, type Switches } from "./switches.ts";

/** Whether a request may change state: by its method alone (all but GET and HEAD), whatever its path. */
export const mayChangeState = (method: string): boolean => method !== "GET" && method !== "HEAD";

/** Who sent a request: a TCP peer as the kernel knows it, or a client of the Unix socket. */
export type Requester = { via: "tcp"; peer: Peer } | { via: "unix"; socket: string };

/** Who may change state besides root (--admin-allow-uid, --admin-allow-gid). */
export interface AccessPolicy {
  uids: readonly number[];
  gids: readonly number[];
}

export const REFUSAL_REASONS = ["not_allowed", "unidentified"] as const;
export type RefusalReason = (typeof REFUSAL_REASONS)[number];

export type Decision = { allowed: true } | { allowed: false; reason: RefusalReason; message: string };

/** "root", "root and uid 1000", "root, uid 1000 and gid 50". */
export function whoMayChange(policy: AccessPolicy): string {
  const names = ["root", ...policy.uids.map((uid) => `uid ${uid}`), ...policy.gids.map((gid) => `gid ${gid}`)];
  return names.length === 1 ? names[0]! : `${names.slice(0, -1).join(", ")} and ${names.at(-1)!}`;
}

export function decide(policy: AccessPolicy, requester: Requester): Decision {
  if (requester.via === "unix") return { allowed: true };
  const { peer } = requester;
  const only = `only ${whoMayChange(policy)} may change this agent's switches`;
  if (peer.uid === null) {
    return {
      allowed: false,
      reason: "unidentified",
      message:
        `${only}, and the agent cannot tell who sent this request (${peer.unknown ?? "unknown"}): send it from the agent's own ` +
        "network namespace (127.0.0.1 on its node, or in its pod through kubectl port-forward or exec), or through its Unix socket",
    };
  }
  if (peer.uid === 0 || policy.uids.includes(peer.uid)) return { allowed: true };
  if (peer.groups?.some((gid) => policy.gids.includes(gid))) return { allowed: true };
  return {
    allowed: false,
    reason: "not_allowed",
    message: `${only}, and this request came from uid ${peer.uid}: send it as root (sudo), or start the agent with --admin-allow-uid ${peer.uid}`,
  };
}

/** `uid 0, pid 4242, command "curl", 127.0.0.1:41234`, `unknown` where the agent cannot tell. */
export function describeRequester(requester: Requester): string {
  if (requester.via === "unix") return `unix socket ${requester.socket}`;
  const { uid, pid, command, address } = requester.peer;
  const known = (value: number | null) => (value === null ? "unknown" : String(value));
  // The command name is the peer's to choose: quoted, so it stays one field of one line.
  return `uid ${known(uid)}, pid ${known(pid)}, command ${command === null ? "unknown" : JSON.stringify(command)}, ${address}`;
}

export interface Audit {
  method: string;
  /** the path and query as sent */
  target: string;
  requester: Requester;
  status: number;
  /** why it was refused: the 403's reason, or the route's answer (quoted) */
  why: string;
  before: Switches;
  after: Switches;
  /** the log level before and after (what POST /debug/loggers changes) */
  logLevel?: { before: LogLevel; after: LogLevel };
  /** the filters before and after (what PUT /filters changes) */
  filters?: { before: Filters; after: Filters };
}

/** The filters as the flags that set them, or `none`. */
const filtersText = (filters: Filters) => describeFilters(filters) || "none";

/**
 * One line per request that may change state: accepted or refused, with its status, the request,
 * who sent it, the switch it names with its old and new value (and every other switch that
 * followed it) or the log level, then what the agent now writes, or why it was refused.
 */
export function auditLine(audit: Audit): string {
  const { before, after } = audit;
  const served = audit.status >= 200 && audit.status < 300;
  const path = splitTarget(audit.target).path;
  const name = Object.hasOwn(SWITCH_PATHS, path) ? SWITCH_PATHS[path as SwitchPath] : undefined;
  let what = "";
  if (name !== undefined) {
    what = served
      ? [name, ...SWITCH_NAMES.filter((other) => other !== name && before[other] !== after[other])]
          .map((changed) => `${SWITCH_LABELS[changed]} ${before[changed]} -> ${after[changed]}`)
          .join(", ")
      : `${SWITCH_LABELS[name]} stays ${before[name]}`;
  } else if (path === LOGGERS_PATH && audit.logLevel !== undefined) {
    const level = audit.logLevel;
    what = served ? `log level ${level.before} -> ${level.after}` : `log level stays ${level.before}`;
  } else if (path === FILTERS_PATH && audit.filters !== undefined) {
    const { before: old, after: now } = audit.filters;
    what = served ? `filters ${filtersText(old)} -> ${filtersText(now)}` : `filters stay ${filtersText(old)}`;
  }
  const note = served ? (name === undefined ? "" : describeOutputs(after)) : audit.why;
  return (
    `admin API: ${served ? "accepted" : "refused"} (${audit.status}) ${audit.method} ${JSON.stringify(audit.target)} ` +
    `from ${describeRequester(audit.requester)}${what === "" ? "" : `: ${what}`}${note === "" ? "" : `; ${note}`}`
  );
}

/** The gate every request that may change state passes, from the TCP listener and the socket alike. */
export class AccessGate {
  readonly refused: Record<RefusalReason, number> = { not_allowed: 0, unidentified: 0 };
  #queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly policy: AccessPolicy,
    private readonly switches: () => Switches,
    private readonly log: Logger,
    private readonly filters?: () => Filters,
  ) {}

  /**
   * Identifies who sent the request, answers it (`answer`, which must not throw) or refuses it,
   * and writes its audit line. One request at a time, in arrival order: each line's old and new
   * values are its own request's, and a flood of requests reads the socket table once at a time.
   */
  serve(method: string, target: string, identify: () => Promise<Requester>, answer: () => Response): Promise<Response> {
    const run = async (): Promise<Response> => {
      const requester = await identify();
      const decision = decide(this.policy, requester);
      const before = this.switches();
      const levelBefore = this.log.level;
      const filtersBefore = this.filters?.();
      let response: Response;
      let why: string;
      if (decision.allowed) {
        response = answer();
        why = response.status < 300 ? "" : JSON.stringify((await response.clone().text()).trim());
      } else {
        this.refused[decision.reason]++;
        response = goError(decision.message, 403);
        why = decision.message;
      }
      const levelAfter = this.log.level;
      const filters = filtersBefore === undefined ? {} : { filters: { before: filtersBefore, after: this.filters!() } };
      const line = auditLine({ method, target, requester, status: response.status, why, before, after: this.switches(), logLevel: { before: levelBefore, after: levelAfter }, ...filters });
      // A request that made the log quieter still gets its line, at the level in force when it came.
      this.log.setLevel(levelBefore);
      if (decision.allowed) this.log.info(line);
      else this.log.warn(line);
      this.log.setLevel(levelAfter);
      return response;
    };
    const result = this.#queue.then(run);
    this.#queue = result.catch(() => undefined);
    return result;
  }
}
