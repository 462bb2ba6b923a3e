/**
 * Filters changed at run time, end to end: the compiled agent started with a filter flag, then
 * PUT /filters over its admin API (and `kmesh-accesslog filter set` over its socket) while real
 * connections between pods come and go. Each change takes effect for the next connection: the
 * exact lines of each connection kept or dropped, and the exact count of
 * `kmesh_accesslog_lines_filtered_total{filter=...}` for the filters that only our connections
 * can meet. A bad body is a 400 naming the field, and changes nothing; uid 65534 gets 403.
 *
 * Lines come out in the order the kernel reported them, so once a later "marker" connection's
 * lines are out, every line of an earlier connection that was kept is out too.
 *
 * Needs root and dist/kmesh-accesslog (scripts/build). Run: `bun test test/e2e/filters.test.ts`.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { agentUnavailableReason, matchConnection } from "./agent.ts";
import { adminRequest, curlAs, metrics, runBinary, startAdminAgent, type AdminAgent } from "./admin-support.ts";
import { exchange, runClient, startServer, waitUntilCapturing } from "./exchange.ts";
import { createTestNode, type Pod, type TestNode } from "./node.ts";
import { netnsUnavailableReason, prerequisitesMet } from "./prereq.ts";

const ready = prerequisitesMet("filters", netnsUnavailableReason() ?? agentUnavailableReason());

/** A port outside the ephemeral range, so that no other connection of the machine has it at either end. */
const PORT = 20_000 + Math.floor(Math.random() * 10_000);
const NONE = { namespace: [], excludeNamespace: [], pod: [], excludePod: [], port: [], excludePort: [], cidr: [], excludeCidr: [], direction: null, failedOnly: false, minDuration: null };
const filtered = (name: string) => `kmesh_accesslog_lines_filtered_total{filter="${name}"}`;

interface Key {
  srcAddr: string;
  srcPort: number;
  dstAddr: string;
  dstPort: number;
}

describe.skipIf(!ready)("filters at run time", () => {
  let node: TestNode;
  let a: Pod;
  let b: Pod;
  let c: Pod;
  let agent: AdminAgent;

  beforeAll(async () => {
    node = await createTestNode({ pods: ["a", "b", "c"] });
    [a, b, c] = [node.pod("a"), node.pod("b"), node.pod("c")];
    agent = await startAdminAgent({ args: ["--no-kubelet", "--no-kube-api", "--exclude-port", String(PORT)] });
    await waitUntilCapturing(agent.agent, a, b);
  }, 60_000);
  afterAll(async () => {
    await agent?.[Symbol.asyncDispose]();
    await node?.[Symbol.asyncDispose]();
  });

  /** One request/response from `from` to `to` (on `port`, else any), the client holding it `holdMs`. */
  async function connect(from: Pod, to: Pod, o: { port?: number; holdMs?: number } = {}): Promise<Key> {
    if (o.port === undefined && o.holdMs === undefined) {
      const r = await exchange(from, to, { family: 4, clientSend: 3, serverSend: 5, closeFirst: "client" });
      return { srcAddr: r.client.localAddress, srcPort: r.client.localPort, dstAddr: r.server.localAddress, dstPort: r.server.localPort };
    }
    const server = await startServer(to, { host: to.ip4, ...(o.port === undefined ? {} : { port: o.port }), recv: 3, send: 5 });
    try {
      const client = await runClient(from, { host: to.ip4, port: server.port, send: 3, recv: 5, closeFirst: true, ...(o.holdMs === undefined ? {} : { holdMs: o.holdMs }) });
      expect(client.error).toBeNull();
      await server.finished();
      return { srcAddr: client.localAddress, srcPort: client.localPort, dstAddr: to.ip4, dstPort: server.port };
    } finally {
      server.kill();
    }
  }

  /** The directions of each connection's lines, once the marker's `markerLines` lines are out. */
  async function linesOf(keys: Key[], marker: Key, markerLines = 2): Promise<string[][]> {
    await agent.agent.waitForLines(matchConnection(marker), markerLines, 10_000);
    return keys.map((key) => agent.agent.filter(matchConnection(key)).map((e) => e.direction).sort());
  }

  async function put(body: string) {
    return adminRequest(agent.adminAddr, "PUT", "/filters", 5_000, body);
  }
  async function current() {
    const answer = await adminRequest(agent.adminAddr, "GET", "/filters");
    expect(answer.status).toBe(200);
    return JSON.parse(answer.body) as unknown;
  }

  test("the flag's filter from the start, then each PUT for the next connection; exact lines and counts", async () => {
    expect(await current()).toEqual({ ...NONE, excludePort: [PORT] });
    const before = await metrics(agent.adminAddr);
    expect(before.get(filtered("exclude_port"))).toBe(0);
    expect(before.get(filtered("exclude_cidr"))).toBe(0);

    // --exclude-port: both lines of a connection to that port are dropped, and counted.
    const onPort = await connect(a, b, { port: PORT });
    const other = await connect(a, b);
    expect(await linesOf([onPort], other)).toEqual([[]]);
    expect(agent.agent.filter(matchConnection(other)).map((e) => e.direction).sort()).toEqual(["INBOUND", "OUTBOUND"]);
    let m = await metrics(agent.adminAddr);
    expect(m.get(filtered("exclude_port"))).toBe(2);

    // PUT replaces every filter: the port is no longer excluded, pod c's address is.
    const putCidr = await put(JSON.stringify({ excludeCidr: [c.ip4] }));
    expect(putCidr.status).toBe(200);
    expect(JSON.parse(putCidr.body)).toEqual({ ...NONE, excludeCidr: [`${c.ip4}/32`] });
    expect(await current()).toEqual({ ...NONE, excludeCidr: [`${c.ip4}/32`] });
    const onPortAgain = await connect(a, b, { port: PORT });
    const toC = await connect(a, c);
    const fromC = await connect(c, b);
    const marker2 = await connect(a, b);
    expect(await linesOf([onPortAgain, toC, fromC], marker2)).toEqual([["INBOUND", "OUTBOUND"], [], []]);
    m = await metrics(agent.adminAddr);
    expect(m.get(filtered("exclude_port"))).toBe(2);
    expect(m.get(filtered("exclude_cidr"))).toBe(4);

    // Direction (with a network, so that the machine's other connections do not matter here).
    expect((await put(JSON.stringify({ direction: "INBOUND", cidr: [`${node.subnet4}.0/24`] }))).status).toBe(200);
    const inbound = await connect(a, b);
    const marker3 = await connect(b, a);
    expect(await linesOf([inbound], marker3, 1)).toEqual([["INBOUND"]]);
    expect(agent.agent.filter(matchConnection(marker3)).map((e) => e.direction)).toEqual(["INBOUND"]);

    // A minimum duration: the short connection is dropped, the one held 400 ms kept.
    expect((await put(JSON.stringify({ minDuration: 0.3, cidr: [`${node.subnet4}.0/24`] }))).status).toBe(200);
    const short = await connect(a, b);
    const long = await connect(a, b, { holdMs: 400 });
    expect(await linesOf([short], long)).toEqual([[]]);
    const longLines = agent.agent.filter(matchConnection(long));
    expect(longLines.every((e) => e.durationMs !== null && e.durationMs >= 300)).toBe(true);

    // Failed attempts only: a refused attempt is kept, a connection that worked is dropped.
    expect((await put(JSON.stringify({ failedOnly: true, cidr: [`${node.subnet4}.0/24`] }))).status).toBe(200);
    const worked = await connect(a, b);
    const localPort = 20_000 + Math.floor(Math.random() * 20_000);
    const refused = await runClient(a, { host: b.ip4, port: 9, localPort });
    expect(refused.error).toBe("ECONNREFUSED");
    const refusedKey = { srcAddr: a.ip4, srcPort: localPort, dstAddr: b.ip4, dstPort: 9 };
    expect(await linesOf([worked], refusedKey, 1)).toEqual([[]]);
    expect(agent.agent.filter(matchConnection(refusedKey)).map((e) => e.raw)).toEqual([expect.stringMatching(/, error=ECONNREFUSED$/)]);

    // Every accepted PUT is an audit line: the filters before and after, as flags.
    const audits = agent.agent.stderrLines.filter((line) => line.includes('PUT "/filters"'));
    expect(audits.map((line) => line.replace(/ from uid 0, pid \d+, command "[^"]*", 127\.0\.0\.1:\d+:/, " from root:"))).toEqual([
      `kmesh-accesslog: admin API: accepted (200) PUT "/filters" from root: filters --exclude-port ${PORT} -> --exclude-cidr ${c.ip4}/32`,
      `kmesh-accesslog: admin API: accepted (200) PUT "/filters" from root: filters --exclude-cidr ${c.ip4}/32 -> --cidr ${node.subnet4}.0/24 --direction INBOUND`,
      `kmesh-accesslog: admin API: accepted (200) PUT "/filters" from root: filters --cidr ${node.subnet4}.0/24 --direction INBOUND -> --cidr ${node.subnet4}.0/24 --min-duration 0.3`,
      `kmesh-accesslog: admin API: accepted (200) PUT "/filters" from root: filters --cidr ${node.subnet4}.0/24 --min-duration 0.3 -> --cidr ${node.subnet4}.0/24 --failed-only`,
    ]);
  }, 90_000);

  test("a bad body: 400 naming the field and the fix; nothing changed, the filters still work", async () => {
    const set = await put(JSON.stringify({ excludePort: [PORT] }));
    expect(set.status).toBe(200);
    const cases: [string, string][] = [
      ['{"excludePort": [80, 70000]}', "excludePort[1]: 70000 is not valid (expected a port number from 1 to 65535)"],
      ['{"excludeport": [80]}', 'unknown field "excludeport": the fields are namespace, excludeNamespace, pod, excludePod, port, excludePort, cidr, excludeCidr, direction, failedOnly, minDuration'],
      ['{"cidr": ["10.0.0.0/99"]}', 'cidr[0]: "10.0.0.0/99" is not valid (expected an IPv4 or IPv6 network, e.g. 10.244.0.0/16 or fd00::/8 (an address alone is /32 or /128))'],
      ['{"namespace": ["shop"]}', "namespace: this agent has no pod names (it runs with --no-kubelet and no API server), so a filter by pod or namespace cannot work: filter by port, cidr or direction instead, or restart the agent with the kubelet or --kube-api"],
    ];
    for (const [body, why] of cases) {
      const answer = await put(body);
      expect({ status: answer.status, body: answer.body, type: answer.contentType }).toEqual({
        status: 400,
        body: `invalid filters: ${why}; nothing was changed\n`,
        type: "text/plain; charset=utf-8",
      });
    }
    expect(await current()).toEqual({ ...NONE, excludePort: [PORT] });
    const counted = (await metrics(agent.adminAddr)).get(filtered("exclude_port"))!;
    const onPort = await connect(a, b, { port: PORT });
    const marker = await connect(a, b);
    expect(await linesOf([onPort], marker)).toEqual([[]]);
    expect((await metrics(agent.adminAddr)).get(filtered("exclude_port"))).toBe(counted + 2);
  }, 60_000);

  test("uid 65534 may read the filters and not change them: 403, nothing changed", async () => {
    const before = await current();
    const read = await curlAs({ uid: 65534 }, "GET", `http://${agent.adminAddr}/filters`);
    expect(read.status).toBe(200);
    expect(JSON.parse(read.body)).toEqual(before);
    const refused = await curlAs({ uid: 65534, data: "{}" }, "PUT", `http://${agent.adminAddr}/filters`);
    expect(refused.status).toBe(403);
    expect(refused.body).toBe(
      "only root may change this agent's switches, and this request came from uid 65534: send it as root (sudo), or start the agent with --admin-allow-uid 65534\n",
    );
    expect(await current()).toEqual(before);
    await agent.agent.waitForStderr((line) => line.includes(`refused (403) PUT "/filters" from uid 65534, pid ${refused.pid},`));
  }, 30_000);

  test("the CLI: `filter set` replaces them through the socket, `filter` shows them", async () => {
    const set = await runBinary(["filter", "set", "--exclude-port", String(PORT), "--exclude-cidr", c.ip4, "--admin-socket", agent.socket]);
    expect(set).toEqual({ exitCode: 0, stdout: `filters set on ${agent.socket}: --exclude-port ${PORT} --exclude-cidr ${c.ip4}/32\n`, stderr: "" });
    expect(await current()).toEqual({ ...NONE, excludePort: [PORT], excludeCidr: [`${c.ip4}/32`] });
    const shown = await runBinary(["filter", "--admin-addr", agent.adminAddr, "--json"]);
    expect(shown.exitCode).toBe(0);
    expect(JSON.parse(shown.stdout)).toEqual({ agent: agent.adminAddr, filters: { ...NONE, excludePort: [PORT], excludeCidr: [`${c.ip4}/32`] } });
    expect(await runBinary(["filter", "set", "--admin-socket", agent.socket])).toEqual({
      exitCode: 0,
      stdout: `filters set on ${agent.socket}: none (every report is written)\n`,
      stderr: "",
    });
    expect(await current()).toEqual(NONE);
    const bad = await runBinary(["filter", "set", "--namespace", "shop", "--admin-socket", agent.socket]);
    expect(bad.exitCode).toBe(1);
    expect(bad.stderr).toStartWith(`kmesh-accesslog: the agent on ${agent.socket} refused to change its filters: invalid filters: namespace: this agent has no pod names`);
  }, 30_000);
});
