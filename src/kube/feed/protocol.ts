// The feed's protocol: what `kmesh-accesslog feed` sends an agent, one JSON object per line
// (NDJSON, FrameSchema below) on one long HTTPS answer to `GET /v1/feed[?feed=<id>&since=<seq>]`.
// First `hello` (snapshot: every entry follows, else only the changes after `since`), then `svc`,
// `eps`, `pod` (an entry: ../apiserver/entries.ts) and `del` frames, `synced` once the agent has
// the feed's state, and a `ping` every PING_INTERVAL_MS so that a silent connection is known dead.
// After `synced` each change carries its sequence number `v`; (feed id, seq) is the version an
// agent resumes from after a break. A feed id names one history of changes (a feed stopped
// cleanly with --state-file keeps its own: ../../commands/feed.ts). A frame that fails its schema
// ends the connection with a one-line problem; the agent resumes from the last version it applied.
import * as v from "valibot";
import { canonicalIp } from "../../address.ts";
import { parseJson } from "../http.ts";
import { describeIssues } from "../apiserver/objects.ts";
import { ANY_PORT, type Entry, type PodEntry, type PodLabels, type ResourceKind as Kind, type ServiceEntry, type SliceEntry, splitKey } from "../apiserver/entries.ts";

export const FEED_PATH = "/v1/feed";
/** How often an idle connection carries a ping, and how long an agent waits for a byte before giving up. */
export const PING_INTERVAL_MS = 10_000;
export const SILENCE_LIMIT_MS = 3 * PING_INTERVAL_MS;

export const TAG = { services: "svc", endpointslices: "eps", pods: "pod" } as const satisfies Record<Kind, string>;
export const KIND_OF_TAG = { svc: "services", eps: "endpointslices", pod: "pods" } as const satisfies Record<string, Kind>;

// ── Frames, as the agent checks them ─────────────────────────────────────────

/** `<namespace>/<name>`: a DNS-label namespace (or none) and a non-empty name without '/'. */
const KeySchema = v.pipe(v.string(), v.regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?\/[^/\s]{1,253}$|^\/[^/\s]{1,253}$/, "not <namespace>/<name>"));
/** An IP in the text the record decoder writes (src/address.ts): the feed sends nothing else. */
const IpSchema = v.pipe(
  v.string(),
  v.check((text) => canonicalIp(text) === text, "not an IP address in canonical form"),
);
const IpsSchema = v.pipe(v.array(IpSchema), v.maxLength(1024));
const PortSchema = v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(65_535));
const SeqSchema = v.pipe(v.number(), v.integer(), v.minValue(0));
/** A label's value or an object's name (at most 253 characters, one line). */
const LabelSchema = v.pipe(v.string(), v.maxLength(253), v.regex(/^[^\n\r]*$/, "not one line"));
const version = { v: v.optional(SeqSchema) };

const FrameSchema = v.variant("t", [
  v.object({ t: v.literal("hello"), feed: v.pipe(v.string(), v.regex(/^[0-9a-f]{16}$/, "not a feed id")), snapshot: v.boolean() }),
  v.object({ t: v.literal("svc"), k: KeySchema, ips: IpsSchema, ports: v.pipe(v.array(PortSchema), v.maxLength(1024)), ...version }),
  v.object({
    t: v.literal("eps"),
    k: KeySchema,
    svc: v.pipe(v.string(), v.maxLength(253)),
    ips: IpsSchema,
    ports: v.pipe(v.array(v.union([PortSchema, v.literal(ANY_PORT)])), v.maxLength(1024)),
    ...version,
  }),
  v.object({
    t: v.literal("pod"),
    k: KeySchema,
    ips: IpsSchema,
    c: v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(3)),
    w: v.optional(LabelSchema),
    cs: v.optional(LabelSchema),
    cr: v.optional(LabelSchema),
    app: v.optional(LabelSchema),
    ver: v.optional(LabelSchema),
    sa: v.optional(LabelSchema),
    ...version,
  }),
  v.object({ t: v.literal("del"), kind: v.picklist(["svc", "eps", "pod"]), k: KeySchema, ...version }),
  v.object({ t: v.literal("synced"), v: SeqSchema }),
  v.object({ t: v.literal("ping"), v: SeqSchema }),
]);
export type Frame = v.InferOutput<typeof FrameSchema>;

/** One line → a frame, or a one-line problem naming what was wrong. Never throws. */
export function parseFrame(line: string): { ok: true; frame: Frame } | { ok: false; problem: string } {
  const parsed = parseJson(line);
  if (!parsed.ok) return { ok: false, problem: `not JSON: ${parsed.message}` };
  const json = parsed.json;
  const result = v.safeParse(FrameSchema, json);
  if (result.success) return { ok: true, frame: result.output };
  const type = typeof (json as { t?: unknown } | null)?.t === "string" ? `a "${(json as { t: string }).t}" frame` : "a frame";
  return { ok: false, problem: `${type}: ${describeIssues(result.issues)}` };
}

// ── Frames, as the feed writes them ──────────────────────────────────────────

/** The frame of one entry, without a version. */
export function entryFrame(kind: Kind, key: string, entry: Entry): string {
  switch (kind) {
    case "services": {
      const e = entry as ServiceEntry;
      return JSON.stringify({ t: "svc", k: key, ips: e.ips, ports: e.ports });
    }
    case "endpointslices": {
      const e = entry as SliceEntry;
      return JSON.stringify({ t: "eps", k: key, svc: e.service, ips: e.ips, ports: e.ports });
    }
    case "pods": {
      const e = entry as PodEntry;
      return JSON.stringify({ t: "pod", k: key, ips: e.ips, c: e.claim, ...podLabelsFrame(splitKey(key).name, e.labels) });
    }
  }
}

export const deleteFrame = (kind: Kind, key: string) => JSON.stringify({ t: "del", kind: TAG[kind], k: key });

/** A frame with its sequence number (frames are objects: `{"v":N,` + the rest). */
export const versioned = (frame: string, seq: number) => `{"v":${seq},${frame.slice(1)}`;

// ── A pod's labels, compactly ────────────────────────────────────────────────
// Each is left out when it is what ../pod.ts podInfo() would default it to.

type PodFrame = Extract<Frame, { t: "pod" }>;

function podLabelsFrame(name: string, l: PodLabels): Partial<Record<"w" | "cs" | "cr" | "app" | "ver" | "sa", string>> {
  const frame: Partial<Record<"w" | "cs" | "cr" | "app" | "ver" | "sa", string>> = {};
  if (l.workload !== name) frame.w = l.workload;
  if (l.canonicalService !== l.workload) frame.cs = l.canonicalService;
  if (l.canonicalRevision !== "latest") frame.cr = l.canonicalRevision;
  if (l.app !== l.canonicalService) frame.app = l.app;
  if (l.version !== l.canonicalRevision) frame.ver = l.version;
  if (l.serviceAccount !== null) frame.sa = l.serviceAccount;
  return frame;
}

/** A pod frame's labels, the defaults filled in. */
export function podLabelsOf(frame: PodFrame): PodLabels {
  const workload = frame.w ?? splitKey(frame.k).name;
  const canonicalService = frame.cs ?? workload;
  const canonicalRevision = frame.cr ?? "latest";
  return { workload, canonicalService, canonicalRevision, app: frame.app ?? canonicalService, version: frame.ver ?? canonicalRevision, serviceAccount: frame.sa ?? null };
}
