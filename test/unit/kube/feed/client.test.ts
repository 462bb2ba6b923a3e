// The agent's side of the feed against a scripted feed (plain HTTP on 127.0.0.1): a bad frame ends
// the connection with one line; the next connection asks for the changes since the version held
// and applies them; a snapshot drops what it no longer holds.
import { afterEach, describe, expect, test } from "bun:test";
import type { Server } from "bun";
import { ClusterIndex } from "../../../../src/kube/apiserver/cluster-index.ts";
import { FeedSource } from "../../../../src/kube/feed/client.ts";
import { createLogger } from "../../../../src/log.ts";

const FEED = "0123456789abcdef";

/** A feed that answers its n-th request with answers[n] (lines), and notes each request's query. */
function scriptedFeed(answers: string[][]): { server: Server<undefined>; queries: string[] } {
  const queries: string[] = [];
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(request) {
      queries.push(new URL(request.url).search);
      const lines = answers[queries.length - 1];
      if (lines === undefined) return new Response("no more\n", { status: 503 });
      // the answer stays open after its lines, as the feed's does
      const stream = new ReadableStream({ start: (c) => c.enqueue(new TextEncoder().encode(`${lines.join("\n")}\n`)) });
      return new Response(stream);
    },
  });
  return { server, queries };
}

const said: string[] = [];
const log = createLogger("info", (line) => said.push(line.trimEnd()));
let running: { source: FeedSource; server: Server<undefined> } | null = null;

afterEach(async () => {
  await running?.source.stop();
  running?.server.stop(true);
  running = null;
  said.length = 0;
});

async function follow(answers: string[][], until: (source: FeedSource) => boolean) {
  const { server, queries } = scriptedFeed(answers);
  const index = new ClusterIndex();
  const source = new FeedSource({ url: `http://127.0.0.1:${server.port}`, ca: null, tokenFile: null, index, fallback: null, log, minBackoffMs: 10, maxBackoffMs: 20 });
  running = { source, server };
  source.start();
  const deadline = Date.now() + 5_000;
  while (!until(source)) {
    if (Date.now() > deadline) throw new Error(`not reached; said: ${said.join(" | ")}; queries: ${queries.join(" | ")}`);
    await Bun.sleep(5);
  }
  return { index, source, queries };
}

describe("the agent's feed client", () => {
  test("a bad frame: one line, and the next connection resumes from the version held", async () => {
    const { index, source, queries } = await follow(
      [
        [
          `{"t":"hello","feed":"${FEED}","snapshot":true}`,
          `{"t":"pod","k":"shop/web-0","ips":["10.244.1.5"],"c":3}`,
          `{"t":"synced","v":5}`,
          `{"v":6,"t":"pod","k":"no-namespace","ips":[],"c":3}`,
        ],
        [`{"t":"hello","feed":"${FEED}","snapshot":false}`, `{"v":6,"t":"pod","k":"shop/web-1","ips":["10.244.1.6"],"c":3}`, `{"t":"synced","v":6}`],
      ],
      (s) => s.stats.resumes === 1 && s.seq === 6,
    );
    expect(queries).toEqual(["", `?feed=${FEED}&since=5`]);
    expect(index.lookupPod("10.244.1.5")?.name).toBe("web-0");
    expect(index.lookupPod("10.244.1.6")?.name).toBe("web-1");
    const url = `http://127.0.0.1:${running!.server.port}`;
    expect(said).toEqual([
      `kmesh-accesslog: the feed at ${url}: 0 services, 0 endpoint slices, 1 pods (1 pod IPs) received; following its changes`,
      `kmesh-accesslog: the feed at ${url} sent an invalid frame (a "pod" frame: k: not <namespace>/<name>); keeping what is known (no API server to fall back to)`,
      `kmesh-accesslog: the feed at ${url}: the invalid frame is over; resumed from version ${FEED}.5: 1 changes`,
    ]);
    expect(source.stats).toMatchObject({ snapshots: 1, resumes: 1, failures: 1 });
  });

  test("a new snapshot (another history) replaces what the agent held; a change sent twice is applied once", async () => {
    const other = "fedcba9876543210";
    const { index } = await follow(
      [
        [`{"t":"hello","feed":"${FEED}","snapshot":true}`, `{"t":"pod","k":"shop/gone","ips":["10.244.1.7"],"c":3}`, `{"t":"synced","v":9}`, "{not json"],
        [
          `{"t":"hello","feed":"${other}","snapshot":true}`,
          `{"t":"pod","k":"shop/kept","ips":["10.244.1.8"],"c":3}`,
          `{"t":"synced","v":2}`,
          // already in the snapshot, sent again just after: skipped
          `{"v":2,"t":"del","kind":"pod","k":"shop/kept"}`,
          `{"v":3,"t":"svc","k":"shop/web","ips":["10.96.0.10"],"ports":[80]}`,
        ],
      ],
      (s) => s.feed === other && s.seq === 3,
    );
    expect(index.lookupPod("10.244.1.7")).toBeUndefined();
    expect(index.lookupPod("10.244.1.8")?.name).toBe("kept");
    expect(index.serviceAtClusterIp("10.96.0.10", 80)?.host).toBe("web.shop.svc.cluster.local");
    expect(said[1]).toContain("sent an invalid frame (not JSON: ");
  });

  test("a resumption of a history the agent does not hold is refused (the same failure state: not said again)", async () => {
    const { source } = await follow(
      [
        [`{"t":"hello","feed":"${FEED}","snapshot":true}`, `{"t":"synced","v":1}`, "{not json"],
        [`{"t":"hello","feed":"fedcba9876543210","snapshot":false}`, `{"t":"synced","v":7}`],
      ],
      (s) => s.stats.failures === 2,
    );
    expect(said.filter((l) => l.includes("sent an invalid frame"))).toHaveLength(1);
    expect(source.stats.resumes).toBe(0);
    expect(source.feed).toBe(FEED);
    expect(source.seq).toBe(1);
  });
});
