// The kubelet's `GET /pods` answer (a v1 PodList), checked with valibot: the list, and each pod
// against the schema both sources share (../pod.ts). A pod that fails it is an error naming the
// pod and the JSON path (`items[3] (default/web-0): status.podIPs[0].ip: ...`), and the whole list
// is refused: the caller keeps its last good index rather than one built from a list it could not
// read.
import * as v from "valibot";
import { parseJson } from "../http.ts";
import { opt, type Pod, PodSchema } from "../pod.ts";

const PodListSchema = v.object({
  kind: opt(v.string()),
  // Each item is checked on its own below, so that an error can name its pod.
  items: opt(v.array(v.unknown())),
});

export type PodListResult = { ok: true; pods: Pod[] } | { ok: false; problem: string };

/** `status.podIPs[0].ip: ` from a valibot issue path; "" for the value itself. */
function where(issue: v.BaseIssue<unknown>): string {
  let text = "";
  for (const item of issue.path ?? []) {
    const key = item.key;
    if (typeof key === "number") text += `[${key}]`;
    else if (typeof key === "string" && /^[A-Za-z_$][\w$]*$/.test(key)) text += (text === "" ? "" : ".") + key;
    else text += `[${JSON.stringify(key)}]`;
  }
  return text === "" ? "" : `${text}: `;
}

/** `namespace/name` of an item that failed the schema, as far as it can be read. */
function podLabel(item: unknown): string {
  const metadata = (item as { metadata?: { name?: unknown; namespace?: unknown } } | null)?.metadata;
  const name = typeof metadata?.name === "string" ? metadata.name : "?";
  const namespace = typeof metadata?.namespace === "string" ? metadata.namespace : "?";
  return `${namespace}/${name}`;
}

/** `items[3] (pod default/web-0): status.podIPs[0].ip: <message>`, for an item that failed PodSchema. */
export function describeItemProblem(index: number, item: unknown, issue: v.BaseIssue<unknown>): string {
  return `items[${index}] (pod ${podLabel(item)}): ${where(issue)}${issue.message}`;
}

/** Checks a parsed PodList. `items: null` (a kubelet that has just started) is an empty list. */
export function checkPodList(json: unknown): PodListResult {
  if (Array.isArray(json)) return { ok: false, problem: "not a PodList: an array" };
  const list = v.safeParse(PodListSchema, json);
  if (!list.success) {
    const [issue] = list.issues;
    return { ok: false, problem: `not a PodList: ${where(issue)}${issue.message}` };
  }
  if (list.output.kind != null && list.output.kind !== "PodList") {
    return { ok: false, problem: `not a PodList: kind is ${JSON.stringify(list.output.kind)}` };
  }
  const items = list.output.items ?? [];
  const pods: Pod[] = [];
  let firstProblem = "";
  let bad = 0;
  for (let i = 0; i < items.length; i++) {
    const pod = v.safeParse(PodSchema, items[i]);
    if (pod.success) {
      pods.push(pod.output);
    } else {
      bad++;
      if (bad === 1) firstProblem = describeItemProblem(i, items[i], pod.issues[0]);
    }
  }
  if (bad > 0) {
    return { ok: false, problem: bad === 1 ? firstProblem : `${firstProblem} (and ${bad - 1} more pods)` };
  }
  return { ok: true, pods };
}

/** JSON text → checked PodList; a text that is not JSON is a problem too, never an exception. */
export function parsePodList(text: string): PodListResult {
  const parsed = parseJson(text);
  return parsed.ok ? checkPodList(parsed.json) : { ok: false, problem: `not JSON: ${parsed.message}` };
}
