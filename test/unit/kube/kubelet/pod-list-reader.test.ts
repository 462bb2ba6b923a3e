// The pod list read as it arrives (src/kube/kubelet/pod-list-reader.ts) must say exactly what the
// whole-text check says, for any document and however the bytes are split into chunks: the same
// pods, or the same problem. And it must read in slices, keeping only what it has not read.
import { describe, expect, test } from "bun:test";
import { NotJson, pick, type Selection, selectionOf } from "../../../../src/kube/kubelet/json-pick.ts";
import { parsePodList, type PodListResult } from "../../../../src/kube/kubelet/pod-list.ts";
import { PodSchema } from "../../../../src/kube/pod.ts";
import { indexedPod } from "../../../../src/kube/kubelet/pod-index.ts";
import { KnownPods, PodListReader } from "../../../../src/kube/kubelet/pod-list-reader.ts";
import { busyNodePodList, pod, podList } from "../../../support/kubelet-pods.ts";

const encode = (text: string) => new TextEncoder().encode(text);

/** Feeds `bytes` cut at `cuts` (sorted offsets), reading after each chunk. */
function readInChunks(bytes: Uint8Array, cuts: number[]): PodListResult {
  const reader = new PodListReader();
  let from = 0;
  for (const cut of [...cuts, bytes.byteLength]) {
    reader.push(bytes.subarray(from, cut));
    reader.work();
    from = cut;
  }
  reader.end();
  reader.work();
  return reader.result();
}

/** A whole answer read at once. */
const readPodList = (bytes: Uint8Array) => readInChunks(bytes, []);

/** A deterministic pseudo-random sequence (the same cuts on every run). */
function random(seed: number): () => number {
  let x = seed;
  return () => {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    return x / 0x7fffffff;
  };
}

function randomCuts(length: number, count: number, next: () => number): number[] {
  const cuts = new Set<number>();
  while (cuts.size < Math.min(count, length - 1)) cuts.add(1 + Math.floor(next() * (length - 1)));
  return [...cuts].sort((a, b) => a - b);
}

const web = pod({ name: "web-0", namespace: "shop", ip4: "10.244.1.5", ip6: "fd00:10:244::5" });
const db = pod({ name: "db-0", namespace: "data", ip4: "10.244.1.9" });
const badIp = { ...db, status: { podIP: 42 } };
const escapes = { ...web, metadata: { ...(web.metadata as object), name: 'we"b}\\]{[-0', labels: { "a,b": "c]}\"", snow: "❄ ünïcødé" } } };

const DOCUMENTS: Record<string, string> = {
  "a list": JSON.stringify(podList([web, db])),
  "indented, keys in another order": JSON.stringify({ items: [web, db], metadata: { resourceVersion: "1" }, kind: "PodList", apiVersion: "v1" }, null, 2),
  "strings with quotes, brackets, escapes and multi-byte text": JSON.stringify(podList([escapes])),
  "items: null": JSON.stringify(podList(null)),
  "no items": '{"kind":"PodList","apiVersion":"v1","metadata":{}}',
  "an empty object": "{}",
  "empty items": ' { "items" : [ ] } ',
  "a bad pod among good ones": JSON.stringify(podList([web, badIp, db, badIp])),
  "items that are not objects": JSON.stringify(podList([null, 42, "x", [1]] as unknown[])),
  "items not an array": '{"kind":"PodList","items":{}}',
  "the wrong kind": '{"kind":"Status","items":[]}',
  "items twice (the last counts)": `{"items":[${JSON.stringify(badIp)}],"items":[${JSON.stringify(web)}]}`,
  "an array": "[]",
  "a string": '"hello"',
  "a number": "42",
  "garbage": "garbage",
  "empty": "",
  "whitespace": "  \n ",
  "cut short in an item": JSON.stringify(podList([web, db])).slice(0, 700),
  "cut short after items": JSON.stringify(podList([web])).replace(/\}$/, ""),
  "a broken item": `{"items":[${JSON.stringify(web)},{"metadata":{"name":"x",}}]}`,
  "a missing comma": `{"items":[${JSON.stringify(web)} ${JSON.stringify(db)}]}`,
  "something after the list": `${JSON.stringify(podList([web]))} x`,
  "a bad member value": '{"kind":PodList,"items":[]}',
};

describe("the pod list read as it arrives", () => {
  for (const [name, text] of Object.entries(DOCUMENTS)) {
    test(`${name}: the whole-text verdict, in one piece and in any chunks`, () => {
      const whole = parsePodList(text);
      const bytes = encode(text);
      const read = readPodList(bytes);
      // Valid documents: the same pods. Refused ones: the same problem, except for the wording of
      // JSON syntax errors (the reader names the byte where it stopped).
      const same = (result: PodListResult) =>
        whole.ok || !whole.problem.startsWith("not JSON")
          ? expect(result).toEqual(whole)
          : expect(result).toMatchObject({ ok: false, problem: expect.stringMatching(/^not JSON: /) });
      same(read);
      // every split into two chunks, then byte by byte, then random cuts
      for (let cut = 1; cut < bytes.byteLength; cut += Math.max(1, Math.floor(bytes.byteLength / 300))) same(readInChunks(bytes, [cut]));
      if (bytes.byteLength < 3000) same(readInChunks(bytes, Array.from({ length: Math.max(0, bytes.byteLength - 1) }, (_, i) => i + 1)));
      const next = random(bytes.byteLength);
      for (let round = 0; round < 20; round++) same(readInChunks(bytes, randomCuts(bytes.byteLength, 1 + Math.floor(next() * 40), next)));
    });
  }

  test("a busy node's list: the same 1,000 pods, read in 64 KiB chunks", () => {
    const text = JSON.stringify(busyNodePodList(1000));
    const bytes = encode(text);
    const cuts = [];
    for (let at = 65536; at < bytes.byteLength; at += 65536) cuts.push(at);
    const whole = parsePodList(text);
    expect(whole.ok && whole.pods.length).toBe(1000);
    expect(readInChunks(bytes, cuts)).toEqual(whole);
  });

  test("work(deadline) stops when its time is up and goes on where it stopped", () => {
    const bytes = encode(JSON.stringify(busyNodePodList(1000)));
    const reader = new PodListReader();
    reader.push(bytes);
    reader.end();
    let slices = 1;
    while (!reader.work(performance.now() - 1)) slices++; // a deadline already past: a few steps per call
    expect(slices).toBeGreaterThan(100);
    const result = reader.result();
    expect(result.ok && result.pods.length).toBe(1000);
  });

  test("what has been read leaves the buffer: memory holds about one pod, not the list", () => {
    const text = JSON.stringify(busyNodePodList(1000));
    const bytes = encode(text);
    const reader = new PodListReader();
    let largest = 0;
    for (let at = 0; at < bytes.byteLength; at += 4096) {
      reader.push(bytes.subarray(at, at + 4096));
      reader.work();
      largest = Math.max(largest, reader.unreadBytes);
    }
    reader.end();
    reader.work();
    expect(reader.result().ok).toBe(true);
    const biggestPod = Math.max(...(JSON.parse(text) as { items: unknown[] }).items.map((item) => JSON.stringify(item).length));
    expect(largest).toBeLessThanOrEqual(biggestPod + 4096);
  });

  test("nothing is read before work(), and a result before the end is 'ends inside'", () => {
    const reader = new PodListReader();
    reader.push(encode(JSON.stringify(podList([web]))));
    reader.end();
    expect(reader.result()).toMatchObject({ ok: false, problem: expect.stringContaining("ends inside the pod list") });
    reader.work();
    expect(reader.result()).toMatchObject({ ok: true });
  });
});

describe("pods unchanged since the last good list", () => {
  /** One refresh's read, as refresh.ts does it: the known pods settle with the verdict. */
  function readWith(known: KnownPods, list: unknown): PodListResult {
    return readTextWith(known, JSON.stringify(list));
  }
  function readTextWith(known: KnownPods, text: string): PodListResult {
    const reader = new PodListReader(known);
    reader.push(encode(text));
    reader.end();
    reader.work();
    const result = reader.result();
    known.settle(result.ok);
    return result;
  }
  /** What the index takes of each pod of a list read whole, without KnownPods. */
  const indexedWhole = (list: unknown) => {
    const whole = readPodList(encode(JSON.stringify(list)));
    return whole.ok ? whole.pods.map(indexedPod) : [];
  };

  test("are taken as they were kept (the same objects), and only they: what is kept is what a whole read gives", () => {
    const list = busyNodePodList(300) as { items: Record<string, unknown>[] };
    const known = new KnownPods();
    // the pods go to KnownPods, not to the result
    expect(readWith(known, list)).toEqual({ ok: true, pods: [] });
    // what is kept: what the index takes of each pod read, in the list's order
    const kept = known.pods();
    expect(kept).toHaveLength(300);
    expect(kept).toEqual(indexedWhole(list));

    // pod 7 changes (a new IP), the rest is byte for byte the same
    const changed = structuredClone(list);
    (changed.items[7]!.status as { podIP: string }).podIP = "10.244.200.7";
    expect(readWith(known, changed)).toEqual({ ok: true, pods: [] });
    const keptSecond = known.pods();
    expect(keptSecond).toEqual(indexedWhole(changed));
    expect(keptSecond[7]!.claim?.ips).toContain("10.244.200.7");
    // (the generated list repeats some pods byte for byte: those share one object)
    const byBytes = new Map(list.items.map((item, i) => [JSON.stringify(item), kept[i]]));
    keptSecond.forEach((p, i) => {
      if (i === 7) expect(p).not.toBe(kept[7]);
      else expect(p).toBe(byBytes.get(JSON.stringify(list.items[i]))!);
    });

    // a refused list changes nothing known; the next good one still finds every pod
    const broken = structuredClone(changed);
    (broken.items[0]!.status as { podIP: unknown }).podIP = 42;
    expect(readWith(known, broken).ok).toBe(false);
    known.pods().forEach((p, i) => expect(p).toBe(keptSecond[i]!));
    readWith(known, changed);
    known.pods().forEach((p, i) => expect(p).toBe(keptSecond[i]!));
  });

  test("a second `items` member: the last one is what is kept", () => {
    const known = new KnownPods();
    const other = pod({ name: "other", namespace: "shop", ip4: "10.244.1.6" });
    const result = readTextWith(known, `{"kind":"PodList","items":[${JSON.stringify(other)}],"items":[${JSON.stringify(web)}]}`);
    expect(result.ok).toBe(true);
    expect(known.pods().map((p) => p.key)).toEqual(["shop/web-0"]);
    // the first member's pod is not kept either: the next list reads it again
    const bytesOf = (p: unknown) => encode(JSON.stringify(p));
    expect(known.find(bytesOf(other), 0, bytesOf(other).length)).toBeUndefined();
    expect(known.find(bytesOf(web), 0, bytesOf(web).length)?.key).toBe("shop/web-0");
  });

  test("a pod known from an earlier list is not taken when its bytes differ at all", () => {
    const known = new KnownPods();
    readWith(known, podList([web]));
    const [before] = known.pods();
    readTextWith(known, `{"kind":"PodList","items":[${JSON.stringify(web).replace('"name":', '"name" :')}]}`);
    const [after] = known.pods();
    expect(after).toEqual(before!);
    expect(after).not.toBe(before);
  });
});

describe("reading only what the schema declares (json-pick)", () => {
  const bytes = (value: unknown) => encode(typeof value === "string" ? value : JSON.stringify(value));
  const pickAll = (text: string, selection: Selection) => {
    const b = encode(text);
    return pick(b, 0, b.byteLength, selection);
  };

  test("the selection of PodSchema: its objects' members, each element of its arrays", () => {
    const names = (s: Selection): unknown =>
      s === true ? true : "each" in s ? [names(s.each)] : Object.fromEntries(s.members.map((m) => [m.name, names(m.selection)]));
    expect(names(selectionOf(PodSchema))).toEqual({
      metadata: { name: true, namespace: true, deletionTimestamp: true, labels: true, ownerReferences: [{ kind: true, name: true, controller: true }] },
      spec: { hostNetwork: true, serviceAccountName: true },
      status: {
        phase: true,
        podIP: true,
        podIPs: [{ ip: true }],
        hostIP: true,
        hostIPs: [{ ip: true }],
        containerStatuses: [{ name: true, containerID: true }],
        initContainerStatuses: [{ name: true, containerID: true }],
        ephemeralContainerStatuses: [{ name: true, containerID: true }],
      },
    });
  });

  test("a real pod: exactly the declared fields, nothing else decoded", () => {
    const real = busyNodePodList(1).items as unknown[];
    const b = bytes(real[0]);
    const picked = pick(b, 0, b.byteLength, selectionOf(PodSchema)) as { metadata: object; spec: object };
    expect(Object.keys(picked.metadata).sort()).toEqual(["labels", "name", "namespace", "ownerReferences"]);
    expect((picked.metadata as { ownerReferences: object[] }).ownerReferences.map((o) => Object.keys(o).sort())).toEqual([["controller", "kind", "name"]]);
    expect(Object.keys(picked.metadata)).not.toContain("managedFields");
    expect(Object.keys(picked.spec)).not.toContain("containers");
  });

  test("values of another type than declared are taken whole, for the schema to report", () => {
    const selection = selectionOf(PodSchema);
    expect(pickAll('{"metadata":[1,2],"spec":"x","status":null}', selection)).toEqual({ metadata: [1, 2], spec: "x", status: null });
    expect(pickAll("42", selection)).toBe(42);
  });

  test("what is stepped over must still close its strings and pair its brackets", () => {
    const selection = selectionOf(PodSchema);
    expect(() => pickAll('{"skipped":[1,{"a":2]],"metadata":{"name":"x"}}', selection)).toThrow(NotJson);
    expect(() => pickAll('{"skipped":"no end', selection)).toThrow(NotJson);
    expect(() => pickAll('{"metadata":{"name":"x"} "spec":{}}', selection)).toThrow('"," or "}" is missing');
    // The limit, said in json-pick.ts: inside a skipped value only brackets and strings are checked.
    expect(pickAll('{"skipped":[1,,2],"metadata":{"name":"x"}}', selection)).toEqual({ metadata: { name: "x" } });
  });
});
