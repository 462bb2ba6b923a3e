// What the feed holds: every object's entry as the frame it is sent as (one string per object:
// the snapshot is these strings, a change is detected by comparing them, so an object reported
// again unchanged is no change), and the log of recent changes, numbered, from which an agent
// resumes. The API-server source (../apiserver/source.ts) writes into it as it would into the
// agent's index; `onChange` hands each change on to the server (server.ts), in order.
import { randomBytes } from "node:crypto";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import * as v from "valibot";
import { parseJson } from "../http.ts";
import { type Counts, type Entry, RESOURCE_KINDS as KINDS, type ResourceKind as Kind } from "../apiserver/entries.ts";
import { deleteFrame, entryFrame, versioned } from "./protocol.ts";

/** Changes kept for resuming; an agent further behind gets a snapshot. */
export const DEFAULT_LOG_LIMIT = 200_000;

/** What a clean stop writes and the next start reads (--state-file): each kind's frames by key. */
const FramesSchema = v.array(v.tuple([v.string(), v.string()]));
const StateSchema = v.object({
  feed: v.string(),
  seq: v.number(),
  logStart: v.number(),
  log: v.array(v.string()),
  frames: v.object({ services: FramesSchema, endpointslices: FramesSchema, pods: FramesSchema }),
});

export class FeedStore {
  /** this history's id (16 hex digits) */
  readonly id: string;
  /** the number of the last change */
  seq = 0;
  readonly #frames: Record<Kind, Map<string, string>> = { services: new Map(), endpointslices: new Map(), pods: new Map() };
  /** versioned frames of changes logStart .. seq */
  #log: string[] = [];
  #logStart = 1;
  readonly #logLimit: number;
  #podIps = 0;
  /** called with each change's versioned frame */
  onChange: (frame: string) => void = () => undefined;

  constructor(o: { id?: string; logLimit?: number } = {}) {
    this.id = o.id ?? randomBytes(8).toString("hex");
    this.#logLimit = o.logLimit ?? DEFAULT_LOG_LIMIT;
  }

  // ── What the API-server source writes (the ObjectSink of ../apiserver/source.ts) ──

  put(kind: Kind, key: string, entry: Entry): void {
    const frame = entryFrame(kind, key, entry);
    const old = this.#frames[kind].get(key);
    if (old === frame) return;
    this.#frames[kind].set(key, frame);
    if (kind === "pods") this.#podIps += ipCount(frame) - (old === undefined ? 0 : ipCount(old));
    this.#append(frame);
  }

  delete(kind: Kind, key: string): void {
    const old = this.#frames[kind].get(key);
    if (old === undefined) return;
    this.#frames[kind].delete(key);
    if (kind === "pods") this.#podIps -= ipCount(old);
    this.#append(deleteFrame(kind, key));
  }

  keys(kind: Kind): string[] {
    return [...this.#frames[kind].keys()];
  }

  get counts(): Counts {
    const f = this.#frames;
    return { services: f.services.size, endpointSlices: f.endpointslices.size, pods: f.pods.size, podIps: this.#podIps };
  }

  #append(frame: string): void {
    const line = versioned(frame, ++this.seq);
    this.#log.push(line);
    if (this.#log.length > this.#logLimit * 1.25) {
      // drop the oldest quarter at once: no shift per change
      const drop = this.#log.length - this.#logLimit;
      this.#log = this.#log.slice(drop);
      this.#logStart += drop;
    }
    this.onChange(line);
  }

  // ── What an agent is sent ──────────────────────────────────────────────────

  /** Every entry's frame (a snapshot as of `seq`). */
  *snapshot(): Iterable<string> {
    for (const kind of KINDS) yield* this.#frames[kind].values();
  }

  /** The changes after `since`, when this history still holds them all; null when not (a snapshot is due). */
  changesSince(feed: string, since: number): string[] | null {
    if (feed !== this.id || since > this.seq || since < this.#logStart - 1) return null;
    return this.#log.slice(since - this.#logStart + 1);
  }

  // ── A clean stop and the next start (--state-file) ───────────────────────

  /** Writes everything to `path` (at a clean stop). */
  save(path: string): void {
    const frames = Object.fromEntries(KINDS.map((kind) => [kind, [...this.#frames[kind]]]));
    writeFileSync(path, JSON.stringify({ feed: this.id, seq: this.seq, logStart: this.#logStart, log: this.#log, frames }), { mode: 0o600 });
  }

  /**
   * The store a clean stop left in `path`, or null when there is none or it cannot be used. The
   * file is removed at once: were this process to die without a clean stop, the next start must
   * not reuse numbers it may already have sent with other changes.
   */
  static load(path: string, logLimit?: number): { store: FeedStore | null; problem: string | null } {
    let text: string;
    try {
      text = readFileSync(path, "utf8");
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      return { store: null, problem: code === "ENOENT" ? null : `cannot read ${path}: ${code}` };
    }
    rmSync(path, { force: true });
    const parsed = parseJson(text);
    if (!parsed.ok) return { store: null, problem: `${path} is not JSON` };
    const state = v.safeParse(StateSchema, parsed.json);
    if (!state.success) return { store: null, problem: `${path} is not a feed's state` };
    const s = state.output;
    const store = new FeedStore({ id: s.feed, ...(logLimit === undefined ? {} : { logLimit }) });
    store.seq = s.seq;
    store.#log = s.log;
    store.#logStart = s.logStart;
    for (const kind of KINDS) for (const [key, frame] of s.frames[kind]) store.#frames[kind].set(key, frame);
    for (const frame of store.#frames.pods.values()) store.#podIps += ipCount(frame);
    return { store, problem: null };
  }
}

/** The number of IPs a pod frame names. */
function ipCount(frame: string): number {
  const ips = /"ips":\[([^\]]*)\]/.exec(frame)?.[1] ?? "";
  return ips === "" ? 0 : ips.split(",").length;
}
