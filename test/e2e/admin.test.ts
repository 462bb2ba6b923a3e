/**
 * The admin API of the compiled agent, over real HTTP with a plain fetch: every switch path ×
 * method × value × state answered as Kmesh's status server answers it (status, body to the byte,
 * content type), the state it leaves behind, the read-only paths, requests that make no sense,
 * and what the switches do to the lines (off: the kernel writes nothing; on: lines again).
 *
 * Kmesh's answers are modelled here from pkg/status/status_server.go (monitoringHandler,
 * accesslogHandler, connectionMetricHandler, workloadMetricHandler), independently of src/.
 *
 * Needs root and dist/kmesh-accesslog (scripts/build). Run: `bun test test/e2e/admin.test.ts`.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { agentUnavailableReason, matchConnection, type Agent } from "./agent.ts";
import {
  adminRequest,
  metrics,
  rawRequest,
  startAdminAgent,
  switchStates,
  type AdminAgent,
  type Answer,
} from "./admin-support.ts";
import { exchange, waitUntilCapturing } from "./exchange.ts";
import { createTestNode, type Pod, type TestNode } from "./node.ts";
import { netnsUnavailableReason, prerequisitesMet } from "./prereq.ts";

const ready = prerequisitesMet("admin API", netnsUnavailableReason() ?? agentUnavailableReason());

// ── Kmesh's answers ───────────────────────────────────────────────────────────

type State = { monitoring: boolean; accesslog: boolean; connection_metrics: boolean; workload_metrics: boolean };
const PATHS = ["/monitoring", "/accesslog", "/connection_metrics", "/workload_metrics"] as const;
type SwitchPath = (typeof PATHS)[number];

/** strconv.ParseBool */
function goBool(value: string): boolean | undefined {
  if (["1", "t", "T", "TRUE", "true", "True"].includes(value)) return true;
  if (["0", "f", "F", "FALSE", "false", "False"].includes(value)) return false;
  return undefined;
}

interface Expected {
  status: number;
  body: string;
  contentType: string | null;
  nosniff: string | null;
  next: State;
}

/** What Kmesh answers to `method path?enable=value` (value already query-decoded), and its state after. */
function kmesh(state: State, path: SwitchPath, method: string, value: string): Expected {
  const httpError = (status: number, message: string) => ({
    status,
    body: method === "HEAD" ? "" : `${message}\n`,
    contentType: "text/plain; charset=utf-8",
    nosniff: "nosniff",
    next: state,
  });
  if (method !== "POST") return httpError(405, "Method Not Allowed");
  const enable = goBool(value);
  if (enable === undefined) {
    // w.WriteHeader(400) + w.Write: no newline, content type sniffed; /workload_metrics and
    // /connection_metrics say "accesslog" too (Kmesh's copy of the accesslog handler).
    const word = path === "/monitoring" ? "monitoring" : "accesslog";
    return { status: 400, body: `invalid ${word} enable=${value}`, contentType: "text/plain; charset=utf-8", nosniff: null, next: state };
  }
  if (path === "/monitoring") {
    return { status: 200, body: "", contentType: null, nosniff: null, next: { monitoring: enable, accesslog: enable, connection_metrics: enable, workload_metrics: enable } };
  }
  const name = path.slice(1) as keyof State;
  if (enable && !state.monitoring) {
    const what = { accesslog: "accesslog", connection_metrics: "connection metrics", workload_metrics: "workload metrics", monitoring: "" }[name];
    return httpError(400, `Kmesh monitoring is disabled, cannot enable ${what}.`);
  }
  return { status: 200, body: "", contentType: null, nosniff: null, next: { ...state, [name]: enable } };
}

const TRUE_VALUES = ["1", "t", "T", "TRUE", "true", "True"];
const FALSE_VALUES = ["0", "f", "F", "FALSE", "false", "False"];
const BAD_VALUES = ["", "yes", "no", "on", "off", "enable", "tRUE", "2", "-1"];
/** raw query → what Go's Query().Get("enable") gives */
const ENCODED_VALUES: [string, string][] = [
  ["enable=%74rue", "true"],
  ["enable=%46alse", "False"],
  ["enable=tr+ue", "tr ue"],
  ["enable=%zz&enable=1", "1"],
  ["enable=1;x=2", ""],
  ["enable=0&enable=1", "0"],
  ["x=1", ""],
  ["", ""],
];

/** States to start each request from, and how to reach them through the API itself. */
const STATES: [string, string[], State][] = [
  ["all on", ["/monitoring?enable=true"], { monitoring: true, accesslog: true, connection_metrics: true, workload_metrics: true }],
  [
    "monitoring on, the rest off",
    ["/monitoring?enable=true", "/accesslog?enable=false", "/connection_metrics?enable=false", "/workload_metrics?enable=false"],
    { monitoring: true, accesslog: false, connection_metrics: false, workload_metrics: false },
  ],
  ["monitoring off", ["/monitoring?enable=false"], { monitoring: false, accesslog: false, connection_metrics: false, workload_metrics: false }],
];

const view = (a: Answer) => ({ status: a.status, body: a.body, contentType: a.contentType, nosniff: a.nosniff });

describe.skipIf(!ready)("admin API: Kmesh's answers, every combination", () => {
  let agent: AdminAgent;
  beforeAll(async () => {
    // A long interval: this file is about answers, not reports.
    agent = await startAdminAgent({ args: ["--report-interval", "3600"] });
  });
  afterAll(async () => {
    await agent?.[Symbol.asyncDispose]();
  });

  async function setState(steps: string[], expected: State) {
    for (const step of steps) expect((await adminRequest(agent.adminAddr, "POST", step)).status).toBe(200);
    expect(await switchStates(agent.adminAddr)).toEqual(expected);
  }

  for (const [stateName, steps, state] of STATES) {
    for (const path of PATHS) {
      test(`from "${stateName}": ${path}, every method and value`, async () => {
        const requests: [method: string, rawQuery: string, value: string][] = [
          ...["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"].flatMap((m) => [
            [m, "enable=true", "true"] as [string, string, string],
            [m, "enable=false", "false"] as [string, string, string],
          ]),
          ...[...TRUE_VALUES, ...FALSE_VALUES, ...BAD_VALUES].map((v) => ["POST", `enable=${encodeURIComponent(v)}`, v] as [string, string, string]),
          ...ENCODED_VALUES.map(([q, v]) => ["POST", q, v] as [string, string, string]),
        ];
        const mismatches: unknown[] = [];
        for (const [method, rawQuery, value] of requests) {
          await setState(steps, state);
          const target = rawQuery === "" ? path : `${path}?${rawQuery}`;
          const answer = await adminRequest(agent.adminAddr, method, target);
          const expected = kmesh(state, path, method, value);
          const after = await switchStates(agent.adminAddr);
          const got = { ...view(answer), next: after };
          if (!Bun.deepEquals(got, expected)) mismatches.push({ request: `${method} ${target}`, got, expected });
        }
        expect(mismatches).toEqual([]);
      });
    }
  }

  test("GET /version: Kmesh's version fields (two-space JSON, no newline), plus which process answers", async () => {
    const answer = await adminRequest(agent.adminAddr, "GET", "/version");
    expect(answer.status).toBe(200);
    const info = JSON.parse(answer.body);
    expect(answer.body).toBe(JSON.stringify(info, null, 2));
    expect(info).toMatchObject({ program: "kmesh-accesslog", pid: agent.agent.pid, compiler: "bun", platform: expect.stringMatching(/^linux\//) });
    expect(Object.keys(info).slice(0, 7)).toEqual(["gitVersion", "gitCommit", "gitTreeState", "buildDate", "goVersion", "compiler", "platform"]);
    // Kmesh answers it whatever the method
    expect((await adminRequest(agent.adminAddr, "POST", "/version")).status).toBe(200);
  });

  test("GET /debug/ready: 200 OK once the probe is attached (the harness waited for it)", async () => {
    expect(view(await adminRequest(agent.adminAddr, "GET", "/debug/ready"))).toEqual({
      status: 200,
      body: "OK",
      contentType: "text/plain; charset=utf-8",
      nosniff: null,
    });
  });

  test("/debug/loggers: what kmeshctl log sends, Kmesh's answers; a level set is in force at once", async () => {
    expect(view(await adminRequest(agent.adminAddr, "GET", "/debug/loggers"))).toEqual({ status: 200, body: '[\n    "default"\n]', contentType: "text/plain; charset=utf-8", nosniff: null });
    expect(view(await adminRequest(agent.adminAddr, "GET", "/debug/loggers?name=default"))).toMatchObject({ status: 200, body: '{\n    "name": "default",\n    "level": "info"\n}' });
    expect(view(await adminRequest(agent.adminAddr, "GET", "/debug/loggers?name=bpf"))).toMatchObject({ status: 400, body: "\tlogger bpf does not exist\n" });
    const set = (level: string) =>
      fetch(`http://${agent.adminAddr}/debug/loggers`, { method: "POST", body: JSON.stringify({ name: "default", level }), headers: { "content-type": "application/json" } });
    const loud = await set("loud");
    expect([loud.status, await loud.text()]).toEqual([400, '\tInvalid request body format: not a valid logrus Level: "loud"\n']);
    const debug = await set("debug");
    expect([debug.status, await debug.text()]).toEqual([200, "OK"]);
    // at debug level the agent says each admin request on stderr
    await adminRequest(agent.adminAddr, "GET", "/healthz?after=debug");
    expect(view(await adminRequest(agent.adminAddr, "GET", "/debug/loggers?name=default")).body).toContain('"level": "debug"');
    expect((await set("info")).status).toBe(200);
    await adminRequest(agent.adminAddr, "GET", "/healthz?after=info");
    const { stderr } = await agent.agent.stop();
    // who changed it: the access gate's audit line (admin-access.test.ts)
    expect(stderr).toMatch(/^kmesh-accesslog: admin API: accepted \(200\) POST "\/debug\/loggers" from uid 0, pid \d+, command "[^"]*", 127\.0\.0\.1:\d+: log level info -> debug$/m);
    expect(stderr).toContain('kmesh-accesslog: debug: admin API: GET "/healthz?after=debug" -> 200\n');
    expect(stderr).not.toContain("after=info");
    agent = await startAdminAgent({ args: ["--report-interval", "3600"] });
  });

  test("GET /healthz, HEAD /healthz; POST is 405", async () => {
    expect(view(await adminRequest(agent.adminAddr, "GET", "/healthz"))).toMatchObject({ status: 200, body: "OK" });
    expect(view(await adminRequest(agent.adminAddr, "HEAD", "/healthz"))).toMatchObject({ status: 200, body: "" });
    expect(view(await adminRequest(agent.adminAddr, "POST", "/healthz"))).toMatchObject({ status: 405, body: "Method Not Allowed\n" });
  });

  test("GET /metrics: Prometheus text with the agent's counters and the switches as 0/1", async () => {
    await setState(["/monitoring?enable=true", "/workload_metrics?enable=false"], {
      monitoring: true,
      accesslog: true,
      connection_metrics: true,
      workload_metrics: false,
    });
    const answer = await adminRequest(agent.adminAddr, "GET", "/metrics");
    expect(answer.contentType).toBe("text/plain; version=0.0.4; charset=utf-8");
    for (const line of answer.body.trimEnd().split("\n")) {
      expect(line).toMatch(/^(# HELP \w+ .+|# TYPE \w+ (counter|gauge)|\w+(\{\w+="[^"]*"\})? -?[\d.e+]+)$/);
    }
    const m = await metrics(agent.adminAddr);
    for (const name of [
      "records_read_total",
      "lines_written_total",
      "lines_dropped_total",
      "kernel_records_lost_total",
      "records_malformed_total",
      "connections_untracked_total",
      "kernel_closes_missed_total",
      "kernel_closes_at_end_total",
      "kernel_runs_skipped_total",
      "kernel_stand_ins_attached",
      "kernel_runs_stood_in_total",
      "connections_open",
      "periodic_reports_total",
    ]) {
      expect({ name, value: m.get(`kmesh_accesslog_${name}`) }).toEqual({ name, value: expect.any(Number) });
    }
    expect(m.get('kmesh_accesslog_switch_enabled{switch="workload_metrics"}')).toBe(0);
    expect(m.get('kmesh_accesslog_switch_enabled{switch="connection_metrics"}')).toBe(1);
    expect(m.get("kmesh_accesslog_kernel_emit_enabled")).toBe(1);
    expect(m.get("kmesh_accesslog_ready")).toBe(1);
  });

  test.each(["/", "/accesslog/", "/Monitoring", "/debug/pprof/", "/metrics/x", "/nope"])("%s → 404 with a clear body", async (path) => {
    const answer = await adminRequest(agent.adminAddr, "GET", path);
    expect(answer.status).toBe(404);
    expect(answer.body).toStartWith(`404 page not found: ${JSON.stringify(path)}\nthis agent serves: POST /monitoring?enable=true|false,`);
  });

  test("requests that are not HTTP, or barely, never take the agent down", async () => {
    const garbage = [
      "\x00\x01\x02\r\n\r\n",
      "GET\r\n\r\n",
      "GET / HTTP/9.9\r\n\r\n",
      "post /accesslog?enable=false HTTP/1.1\r\nHost: x\r\n\r\n",
      `GET /${"a".repeat(100_000)} HTTP/1.1\r\nHost: x\r\n\r\n`,
      `POST /accesslog?enable=true HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n`, // body never comes
      "POST /accesslog?enable=%%% HTTP/1.1\r\nHost: x\r\n\r\n",
      "GET /version HTTP/1.1\r\nHost: x\r\nX: " + "y".repeat(200_000) + "\r\n\r\n",
    ];
    await Promise.all(garbage.map((raw) => rawRequest(agent.adminAddr, raw, 300)));
    await Promise.all(Array.from({ length: 200 }, (_, i) => adminRequest(agent.adminAddr, i % 2 ? "GET" : "POST", i % 2 ? "/metrics" : "/workload_metrics?enable=false")));
    expect(view(await adminRequest(agent.adminAddr, "GET", "/healthz"))).toMatchObject({ status: 200, body: "OK" });
    expect(agent.agent.proc.exitCode).toBeNull();
  });
});

// ── What the switches do to the lines ─────────────────────────────────────────

describe.skipIf(!ready)("admin API: switches reach the kernel", () => {
  let node: TestNode;
  let a: Pod;
  let b: Pod;
  let agent: AdminAgent;
  let lines: Agent;

  beforeAll(async () => {
    node = await createTestNode({ pods: ["client", "server"] });
    [a, b] = [node.pod("client"), node.pod("server")];
    agent = await startAdminAgent({ args: ["--report-interval", "3600"] });
    lines = agent.agent;
    await waitUntilCapturing(lines, a, b);
  }, 60_000);
  afterAll(async () => {
    await agent?.[Symbol.asyncDispose]();
    await node?.[Symbol.asyncDispose]();
  });

  const post = async (target: string) => view(await adminRequest(agent.adminAddr, "POST", target));
  const keyOf = async () => {
    const { client, server } = await exchange(a, b, { family: 4, clientSend: 100, serverSend: 200, closeFirst: "client" });
    return { srcAddr: client.localAddress, srcPort: client.localPort, dstAddr: server.localAddress, dstPort: server.localPort };
  };
  /** A connection made now must get both its lines. */
  async function expectLines() {
    const key = await keyOf();
    await lines.waitForLines(matchConnection(key, "OUTBOUND"), 1, 10_000);
    await lines.waitForLines(matchConnection(key, "INBOUND"), 1, 10_000);
  }
  /** While off, the kernel writes nothing at all: not one record read, for any connection on the node. */
  async function expectSilence() {
    await Bun.sleep(200); // what was queued before the switch is drained
    const before = (await metrics(agent.adminAddr)).get("kmesh_accesslog_records_read_total");
    const key = await keyOf();
    await Bun.sleep(500);
    const after = (await metrics(agent.adminAddr)).get("kmesh_accesslog_records_read_total");
    expect({ recordsReadWhileOff: after! - before! }).toEqual({ recordsReadWhileOff: 0 });
    expect((await metrics(agent.adminAddr)).get("kmesh_accesslog_kernel_emit_enabled")).toBe(0);
    return key;
  }

  test("accesslog off: the kernel writes nothing; on again: lines again, and none for the connection made while off", async () => {
    expect(await post("/accesslog?enable=false")).toMatchObject({ status: 200 });
    const silent = await expectSilence();
    expect(await post("/accesslog?enable=true")).toMatchObject({ status: 200 });
    await expectLines(); // drained in order: the silent connection's lines would be here by now
    expect(lines.filter(matchConnection(silent))).toEqual([]);
  });

  test("monitoring off: nothing; accesslog cannot be turned on meanwhile; monitoring on: lines again", async () => {
    expect(await post("/monitoring?enable=false")).toMatchObject({ status: 200 });
    const silent = await expectSilence();
    expect(await post("/accesslog?enable=true")).toMatchObject({ status: 400, body: "Kmesh monitoring is disabled, cannot enable accesslog.\n" });
    await expectSilence();
    expect(await post("/monitoring?enable=true")).toMatchObject({ status: 200 });
    await expectLines();
    expect(lines.filter(matchConnection(silent))).toEqual([]);
    expect(await post("/connection_metrics?enable=false")).toMatchObject({ status: 200 });
  });

  test("connection_metrics and workload_metrics off change nothing for close reports", async () => {
    expect(await post("/connection_metrics?enable=false")).toMatchObject({ status: 200 });
    expect(await post("/workload_metrics?enable=false")).toMatchObject({ status: 200 });
    await expectLines();
  });
});

describe.skipIf(!ready)("start-up switches", () => {
  test("--accesslog=false: nothing until POST /accesslog?enable=true", async () => {
    await using node = await createTestNode({ pods: ["client", "server"] });
    const [a, b] = [node.pod("client"), node.pod("server")];
    await using agent = await startAdminAgent({ args: ["--accesslog=false"] });
    expect(await switchStates(agent.adminAddr)).toEqual({ monitoring: true, accesslog: false, connection_metrics: false, workload_metrics: false });
    const { client, server } = await exchange(a, b, { family: 4, clientSend: 1, serverSend: 1, closeFirst: "client" });
    await Bun.sleep(500);
    expect(agent.agent.lines).toEqual([]);
    expect((await metrics(agent.adminAddr)).get("kmesh_accesslog_records_read_total")).toBe(0);
    expect((await adminRequest(agent.adminAddr, "POST", "/accesslog?enable=true")).status).toBe(200);
    await waitUntilCapturing(agent.agent, a, b);
    expect(agent.agent.filter(matchConnection({ srcAddr: client.localAddress, srcPort: client.localPort, dstAddr: server.localAddress, dstPort: server.localPort }))).toEqual([]);
  }, 60_000);

  test("--monitoring=false: every switch off, enabling one is refused, POST /monitoring?enable=true turns them all on", async () => {
    await using agent = await startAdminAgent({ args: ["--monitoring=false"] });
    expect(await switchStates(agent.adminAddr)).toEqual({ monitoring: false, accesslog: false, connection_metrics: false, workload_metrics: false });
    expect(view(await adminRequest(agent.adminAddr, "POST", "/connection_metrics?enable=1"))).toMatchObject({
      status: 400,
      body: "Kmesh monitoring is disabled, cannot enable connection metrics.\n",
    });
    expect((await adminRequest(agent.adminAddr, "POST", "/monitoring?enable=1")).status).toBe(200);
    expect(await switchStates(agent.adminAddr)).toEqual({ monitoring: true, accesslog: true, connection_metrics: true, workload_metrics: true });
  });
});
