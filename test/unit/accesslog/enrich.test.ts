// Enrichment, hold-back and output order, on a fake clock: the real PodSource and Enricher, with
// refreshes that finish only when the test says so.
//
// The order rules under test (src/accesslog/enrich.ts):
//  1. a line whose local end is known (or is the node's own address) is written at once;
//  2. a line whose local end is unknown is held until a refresh that started after its report
//     time completes, or until report time + hold, whichever is first;
//  3. held lines are written in report-time order;
//  4. a held line is written before any line reported more than `hold` after it.
import { describe, expect, test } from "bun:test";
import { ReportFilter } from "../../../src/accesslog/filters.ts";
import { type Filters, filtersOf } from "../../../src/options.ts";
import { Enricher } from "../../../src/accesslog/enrich.ts";
import type { AccessRecord } from "../../../src/accesslog/format.ts";
import { PodSource } from "../../../src/kube/kubelet/pod-source.ts";
import type { PodSpecOptions } from "../../support/kubelet-pods.ts";
import { FakeClock, FakeRefresher, MS, record } from "../fixtures.ts";

const CLIENT = { name: "client-5d9f7c6b8-abcde", namespace: "shop", ip4: "10.244.1.2" };
const SERVER = { name: "server-0", namespace: "shop", ip4: "10.244.1.3" };
const NEWPOD = { name: "newpod-7f8d9c-xyz12", namespace: "batch", ip4: "10.244.1.4" };
const NODE_PROXY = { name: "kube-proxy-q8r4t", namespace: "kube-system", hostNetwork: true, hostIP: "172.18.0.3" };

interface World {
  clock: FakeClock;
  refresher: FakeRefresher;
  source: PodSource;
  enricher: Enricher;
  out: AccessRecord[];
  notices: string[];
  /** one drain of the agent: expired holds first, then the batch */
  batch(...records: [AccessRecord, number][]): void;
  at(ms: number): number;
}

/** A running source whose first refresh has answered with `pods`, at t0. */
async function world(pods: PodSpecOptions[], o: { holdMs?: number; filter?: Partial<Filters> } = {}): Promise<World> {
  const clock = new FakeClock();
  const refresher = new FakeRefresher(clock);
  const notices: string[] = [];
  const source = new PodSource({
    url: "https://127.0.0.1:10250/pods",
    tokenFile: null,
    refreshMs: 5000,
    refresher,
    scheduler: clock,
    notice: (m) => notices.push(m),
  });
  const out: AccessRecord[] = [];
  const filter = new ReportFilter(filtersOf(o.filter ?? {}));
  const enricher = new Enricher({
    source,
    holdNs: (o.holdMs ?? 2000) * MS,
    // As the agent does: the filters after the names.
    emit: (r) => void (filter.drops(r) === null && out.push(r)),
  });
  source.onRefreshed = () => enricher.release(clock.now);
  const t0 = clock.now;
  source.start();
  await refresher.answer(pods);
  return {
    clock,
    refresher,
    source,
    enricher,
    out,
    notices,
    batch(...records) {
      enricher.release(clock.now);
      for (const [r, ns] of records) enricher.accept(r, ns);
      enricher.endBatch(clock.now);
    },
    at: (ms) => t0 + ms * MS,
  };
}

const names = (r: AccessRecord) => [r.srcWorkload, r.srcNamespace, r.dstWorkload, r.dstNamespace];

describe("names on both ends", () => {
  test("both directions of a same-node connection are named at once", async () => {
    const w = await world([CLIENT, SERVER]);
    await w.clock.advance(100);
    const t = w.clock.now - 5 * MS;
    w.batch([record("OUTBOUND", CLIENT.ip4, SERVER.ip4, t), t], [record("INBOUND", CLIENT.ip4, SERVER.ip4, t), t]);
    expect(w.out.map(names)).toEqual([
      [CLIENT.name, "shop", SERVER.name, "shop"],
      [CLIENT.name, "shop", SERVER.name, "shop"],
    ]);
    expect(w.refresher.starts).toHaveLength(1); // nothing asked for
    expect(w.out[0]!.dstService).toBeNull(); // the formatter writes the IP
  });

  test("an outside peer is '-' (null) and does not hold a line whose local end is known", async () => {
    const w = await world([CLIENT]);
    await w.clock.advance(100);
    w.batch([record("OUTBOUND", CLIENT.ip4, "93.184.216.34", w.clock.now), w.clock.now]);
    expect(w.out.map(names)).toEqual([[CLIENT.name, "shop", null, null]]);
    expect(w.enricher.holding).toBe(0);
  });

  test("IPv6 ends are named from podIPs", async () => {
    const w = await world([{ ...CLIENT, ip6: "fd00:10:244::2" }, { ...SERVER, ip6: "fd00:10:244::3" }]);
    w.batch([record("OUTBOUND", "fd00:10:244::2", "fd00:10:244::3", w.clock.now), w.clock.now]);
    expect(w.out.map(names)).toEqual([[CLIENT.name, "shop", SERVER.name, "shop"]]);
  });
});

describe("a new pod's first lines are held until a refresh answers", () => {
  test("unknown local end: held, one refresh asked for, written named when it answers", async () => {
    const w = await world([SERVER]);
    await w.clock.advance(1500); // the last refresh started 1.5 s ago: no rate limit now
    const t = w.clock.now - 2 * MS;
    w.batch([record("OUTBOUND", NEWPOD.ip4, SERVER.ip4, t), t]);
    expect(w.out).toHaveLength(0);
    expect(w.enricher.holding).toBe(1);
    await w.clock.advance(0);
    expect(w.refresher.starts).toEqual([w.at(0), w.at(1500)]);
    await w.clock.advance(30);
    await w.refresher.answer([SERVER, NEWPOD]);
    expect(w.out.map(names)).toEqual([[NEWPOD.name, "batch", SERVER.name, "shop"]]);
    expect(w.enricher.stats).toMatchObject({ held: 1, releasedByRefresh: 1, releasedAtDeadline: 0 });
  });

  test("INBOUND: the local end is dst", async () => {
    const w = await world([CLIENT]);
    await w.clock.advance(1500);
    const t = w.clock.now;
    w.batch([record("INBOUND", CLIENT.ip4, NEWPOD.ip4, t), t]);
    expect(w.enricher.holding).toBe(1);
    await w.clock.advance(0);
    await w.refresher.answer([CLIENT, NEWPOD]);
    expect(w.out.map(names)).toEqual([[CLIENT.name, "shop", NEWPOD.name, "batch"]]);
  });

  test("at most one refresh per second however many lines miss", async () => {
    const w = await world([SERVER]);
    await w.clock.advance(300);
    for (let i = 0; i < 50; i++) w.batch([record("OUTBOUND", `10.244.2.${i + 2}`, SERVER.ip4, w.clock.now), w.clock.now]);
    await w.clock.advance(200);
    expect(w.refresher.starts).toEqual([w.at(0)]); // the next may start at 1 s
    await w.clock.advance(500);
    expect(w.refresher.starts).toEqual([w.at(0), w.at(1000)]);
    await w.refresher.answer([SERVER]);
    expect(w.out).toHaveLength(50); // the refresh answered: none of them is a pod
    // more misses soon after: the next refresh waits for the one-second gap again
    await w.clock.advance(10);
    w.batch([record("OUTBOUND", "10.244.3.2", SERVER.ip4, w.clock.now), w.clock.now]);
    await w.clock.advance(989);
    expect(w.refresher.starts).toHaveLength(2);
    await w.clock.advance(1);
    expect(w.refresher.starts).toEqual([w.at(0), w.at(1000), w.at(2000)]);
  });

  test("a refresh that started before the event does not release it; the next one does", async () => {
    const w = await world([SERVER]);
    await w.clock.advance(5000); // the periodic refresh starts at 5 s and is still running
    expect(w.refresher.starts).toEqual([w.at(0), w.at(5000)]);
    await w.clock.advance(50);
    const t = w.clock.now;
    w.batch([record("OUTBOUND", NEWPOD.ip4, SERVER.ip4, t), t]);
    await w.refresher.answer([SERVER]); // read before the pod connected: no news
    expect(w.out).toHaveLength(0);
    await w.clock.advance(1000); // one second after the previous start
    expect(w.refresher.starts).toEqual([w.at(0), w.at(5000), w.at(6000)]);
    await w.refresher.answer([SERVER, NEWPOD]);
    expect(w.out.map(names)).toEqual([[NEWPOD.name, "batch", SERVER.name, "shop"]]);
  });

  test("no answer: written at report time + hold with what is known", async () => {
    const w = await world([SERVER], { holdMs: 2000 });
    await w.clock.advance(1500);
    const t = w.clock.now;
    w.batch([record("OUTBOUND", NEWPOD.ip4, SERVER.ip4, t), t]);
    await w.clock.advance(1999);
    w.batch();
    expect(w.out).toHaveLength(0);
    await w.clock.advance(1);
    w.batch();
    expect(w.out.map(names)).toEqual([[null, null, SERVER.name, "shop"]]);
    expect(w.enricher.stats.releasedAtDeadline).toBe(1);
  });

  test("a failed refresh also completes: lines waiting for it are written, not held for a dead kubelet", async () => {
    const w = await world([SERVER]);
    await w.clock.advance(1500);
    w.batch([record("OUTBOUND", NEWPOD.ip4, SERVER.ip4, w.clock.now), w.clock.now]);
    await w.clock.advance(0);
    await w.refresher.fail({ kind: "unreachable", detail: "ECONNREFUSED" });
    expect(w.out.map(names)).toEqual([[null, null, SERVER.name, "shop"]]);
  });

  test("while the kubelet is failing no line waits and misses ask for nothing; holding resumes after a good list", async () => {
    const w = await world([SERVER]);
    await w.clock.advance(5000);
    await w.refresher.fail({ kind: "timeout", detail: "no complete answer within 5 s" });
    expect(w.source.answering).toBe(false);
    await w.clock.advance(100);
    w.batch([record("OUTBOUND", NEWPOD.ip4, SERVER.ip4, w.clock.now), w.clock.now]);
    expect(w.out.map(names)).toEqual([[null, null, SERVER.name, "shop"]]); // at once, the last good index
    await w.clock.advance(4899);
    expect(w.refresher.starts).toHaveLength(2); // no refresh asked for
    await w.clock.advance(1); // the periodic one
    expect(w.refresher.starts).toHaveLength(3);
    await w.refresher.answer([SERVER]);
    await w.clock.advance(10);
    w.batch([record("OUTBOUND", NEWPOD.ip4, SERVER.ip4, w.clock.now), w.clock.now]);
    expect(w.enricher.holding).toBe(1);
  });

  test("lines held when the kubelet starts failing are written when the failure is known", async () => {
    const w = await world([SERVER]);
    await w.clock.advance(1500);
    w.batch([record("OUTBOUND", NEWPOD.ip4, SERVER.ip4, w.clock.now - 1), w.clock.now - 1]);
    await w.clock.advance(0);
    await w.clock.advance(100);
    // a second line while the asked-for refresh runs: it waits for the next one...
    w.batch([record("OUTBOUND", "10.244.1.99", SERVER.ip4, w.clock.now), w.clock.now]);
    expect(w.enricher.holding).toBe(2);
    // ...but that refresh fails: nothing is worth waiting for any more
    await w.refresher.fail({ kind: "unreachable", detail: "ECONNREFUSED" });
    expect(w.enricher.holding).toBe(0);
    expect(w.out).toHaveLength(2);
  });

  test("not held when the latest completed refresh started after the event (host traffic, outside pods)", async () => {
    const w = await world([SERVER]);
    const t = w.at(0) - 10 * MS; // before the first refresh started
    w.batch([record("OUTBOUND", "192.168.7.7", SERVER.ip4, t), t]);
    expect(w.out).toHaveLength(1);
    expect(w.refresher.starts).toHaveLength(1);
  });

  test("loopback and the node's own addresses are never held and ask for nothing", async () => {
    const w = await world([SERVER, NODE_PROXY]);
    await w.clock.advance(1500);
    const t = w.clock.now;
    w.batch(
      [record("OUTBOUND", "127.0.0.1", "127.0.0.1", t), t],
      [record("OUTBOUND", "::1", "::1", t), t],
      [record("OUTBOUND", "172.18.0.3", SERVER.ip4, t), t],
      [record("INBOUND", SERVER.ip4, "172.18.0.3", t), t],
    );
    expect(w.out).toHaveLength(4);
    await w.clock.advance(2000);
    expect(w.refresher.starts).toEqual([w.at(0)]);
  });

  test("--kubelet-hold 0: never held, but the refresh is still asked for", async () => {
    const w = await world([SERVER], { holdMs: 0 });
    await w.clock.advance(1500);
    w.batch([record("OUTBOUND", NEWPOD.ip4, SERVER.ip4, w.clock.now), w.clock.now]);
    expect(w.out).toHaveLength(1);
    await w.clock.advance(0);
    expect(w.refresher.starts).toHaveLength(2);
  });

  test("a line read after its deadline already passed is written at once", async () => {
    const w = await world([SERVER]);
    await w.clock.advance(3000);
    const t = w.clock.now - 2500 * MS;
    w.batch([record("OUTBOUND", NEWPOD.ip4, SERVER.ip4, t), t]);
    expect(w.out).toHaveLength(1);
  });

  test("the other line of a same-node connection waits for the same refresh, in either order", async () => {
    for (const order of ["outbound first", "inbound first"]) {
      const w = await world([SERVER]);
      await w.clock.advance(1500);
      const t = w.clock.now - 2;
      const outbound = record("OUTBOUND", NEWPOD.ip4, SERVER.ip4, t);
      const inbound = { ...outbound, direction: "INBOUND" as const };
      const pair: [AccessRecord, number][] = order === "outbound first" ? [[outbound, t], [inbound, t + 1]] : [[inbound, t], [outbound, t + 1]];
      w.batch(...pair);
      expect(w.enricher.holding).toBe(2);
      await w.clock.advance(0);
      await w.refresher.answer([SERVER, NEWPOD]);
      expect(w.out.map(names)).toEqual([
        [NEWPOD.name, "batch", SERVER.name, "shop"],
        [NEWPOD.name, "batch", SERVER.name, "shop"],
      ]);
    }
  });
});

describe("output order", () => {
  /** Which lines, in which order: a held line comes out as a copy of the record given (enrich.ts). */
  const order = (records: readonly AccessRecord[]) => records.map((r) => `${r.srcAddr} ${r.reportTime.sec}.${r.reportTime.nsec}`);

  test("held lines keep report-time order; known lines are not delayed by them", async () => {
    const w = await world([SERVER, CLIENT]);
    await w.clock.advance(1500);
    const t = w.clock.now;
    const a = record("OUTBOUND", "10.244.5.2", SERVER.ip4, t - 3 * MS); // held
    const b = record("OUTBOUND", CLIENT.ip4, SERVER.ip4, t - 2 * MS); // known: at once
    const c = record("OUTBOUND", "10.244.5.3", SERVER.ip4, t - 4 * MS); // held, reported before a
    w.batch([a, t - 3 * MS], [b, t - 2 * MS], [c, t - 4 * MS]);
    expect(w.out).toEqual([b]);
    await w.clock.advance(0);
    await w.refresher.answer([SERVER, CLIENT]);
    expect(order(w.out)).toEqual(order([b, c, a]));
  });

  test("a held line is its own copy: the record lent to accept() may be filled again after endBatch", async () => {
    const w = await world([SERVER]);
    await w.clock.advance(1500);
    const t = w.clock.now;
    const lent = record("OUTBOUND", NEWPOD.ip4, SERVER.ip4, t);
    const expected = structuredClone(lent);
    w.batch([lent, t]);
    expect(w.enricher.holding).toBe(1);
    // What the agent's pool does with the record once the batch is over.
    Object.assign(lent, record("INBOUND", "10.244.9.9", "10.244.9.8", t + 5 * MS));
    lent.reportTime.sec = 0;
    await w.clock.advance(0);
    await w.refresher.answer([SERVER, NEWPOD]);
    expect(w.out).toEqual([
      {
        ...expected,
        srcWorkload: NEWPOD.name,
        srcNamespace: "batch",
        srcPod: expect.objectContaining({ name: NEWPOD.name, namespace: "batch" }),
        dstWorkload: SERVER.name,
        dstNamespace: "shop",
        dstPod: expect.objectContaining({ name: SERVER.name, namespace: "shop" }),
      },
    ]);
  });

  test("a held line comes before every line reported more than `hold` after it", async () => {
    const w = await world([SERVER, CLIENT], { holdMs: 2000 });
    await w.clock.advance(1500);
    const t = w.clock.now;
    const held = record("OUTBOUND", NEWPOD.ip4, SERVER.ip4, t);
    w.batch([held, t]);
    await w.clock.advance(1999);
    const within = record("OUTBOUND", CLIENT.ip4, SERVER.ip4, t + 1999 * MS);
    w.batch([within, t + 1999 * MS]); // within the bound: may overtake
    await w.clock.advance(11); // the kubelet never answered; the next drain is 10 ms later
    const after = record("OUTBOUND", CLIENT.ip4, SERVER.ip4, t + 2001 * MS);
    w.batch([after, t + 2001 * MS]);
    expect(order(w.out)).toEqual(order([within, held, after]));
  });

  test("many held lines are written in report-time order at their deadlines", async () => {
    const w = await world([SERVER]);
    await w.clock.advance(1500);
    const base = w.clock.now;
    const held: AccessRecord[] = [];
    for (let i = 0; i < 20; i++) {
      const t = base + ((i * 7) % 20) * MS; // shuffled report times within one batch
      const r = record("OUTBOUND", `10.244.6.${i + 2}`, SERVER.ip4, t);
      held.push(r);
      w.enricher.accept(r, t);
    }
    w.enricher.endBatch(w.clock.now + 20 * MS);
    await w.clock.advance(2100);
    w.batch();
    const times = w.out.map((r) => r.reportTime.sec * 1e9 + r.reportTime.nsec);
    expect(w.out).toHaveLength(20);
    expect(times).toEqual([...times].sort((x, y) => x - y));
  });

  test("beyond maxHeld the oldest held line is written at once", async () => {
    const clock = new FakeClock();
    const out: AccessRecord[] = [];
    const enricher = new Enricher({
      source: { lookup: () => undefined, lookupV4: () => undefined, isNodeAddress: () => false, completedStartNs: 0, answering: true, requestRefresh: () => {} },
      holdNs: 2000 * MS,
      emit: (r) => out.push(r),
      maxHeld: 3,
    });
    const rs = [1, 2, 3, 4, 5].map((i) => record("OUTBOUND", `10.244.7.${i}`, "10.244.7.100", clock.now + i));
    rs.forEach((r, i) => enricher.accept(r, clock.now + i + 1));
    enricher.endBatch(clock.now + 10);
    expect(out).toEqual([rs[0]!, rs[1]!]);
    expect(enricher.holding).toBe(3);
  });
});

describe("filters", () => {
  const A = { name: "a-0", namespace: "alpha", ip4: "10.244.1.2" };
  const B = { name: "b-0", namespace: "beta", ip4: "10.244.1.3" };
  const C = { name: "c-0", namespace: "gamma", ip4: "10.244.1.4" };
  async function kept(filter: Partial<Filters>): Promise<string[]> {
    const w = await world([A, B, C], { filter });
    const t = w.clock.now;
    w.batch(
      [record("OUTBOUND", A.ip4, B.ip4, t), t],
      [record("OUTBOUND", B.ip4, C.ip4, t), t],
      [record("INBOUND", "10.1.1.1", C.ip4, t), t],
      [record("OUTBOUND", A.ip4, "8.8.8.8", t), t],
    );
    return w.out.map((r) => `${r.srcWorkload ?? "-"}>${r.dstWorkload ?? "-"}`);
  }
  test("--namespace keeps lines where either end is in one of them", async () => {
    expect(await kept({ namespace: ["beta"] })).toEqual(["a-0>b-0", "b-0>c-0"]);
    expect(await kept({ namespace: ["alpha", "gamma"] })).toEqual(["a-0>b-0", "b-0>c-0", "->c-0", "a-0>-"]);
  });
  test("--exclude-namespace drops lines where either end is in one of them", async () => {
    expect(await kept({ excludeNamespace: ["beta"] })).toEqual(["->c-0", "a-0>-"]);
  });
  test("--pod keeps lines where either end is that pod; kinds combine with AND", async () => {
    expect(await kept({ pod: ["c-0"] })).toEqual(["b-0>c-0", "->c-0"]);
    expect(await kept({ pod: ["c-0"], excludeNamespace: ["beta"] })).toEqual(["->c-0"]);
    expect(await kept({ namespace: ["alpha"], pod: ["b-0"] })).toEqual(["a-0>b-0"]);
  });
  test("--exclude-pod drops lines where either end is that pod", async () => {
    expect(await kept({ excludePod: ["c-0"] })).toEqual(["a-0>b-0", "a-0>-"]);
  });
  test("no filter given, or empty lists: every line is kept", async () => {
    const every = ["a-0>b-0", "b-0>c-0", "->c-0", "a-0>-"];
    expect(await kept({})).toEqual(every);
    expect(await kept({ namespace: [], pod: [] })).toEqual(every);
  });
});
