// The admin API's one rule (GET and HEAD are open; every other method is for root, the allowed
// uids and groups, and the Unix socket), the 403's words, the audit line, and the gate that puts
// them together in front of the real routes.
import { describe, expect, test } from "bun:test";
import { AccessGate, auditLine, decide, mayChangeState, type Requester, whoMayChange } from "../../../src/admin/access.ts";
import type { Peer } from "../../../src/admin/peer.ts";
import { handleAdminRequest } from "../../../src/admin/routes.ts";
import { createLogger } from "../../../src/log.ts";
import { FakeBackend, SWITCHES_OFF, SWITCHES_ON } from "../fixtures.ts";

const NONE = { uids: [], gids: [] };
const ALL_ON = { monitoring: true, accesslog: true, connectionMetrics: true, workloadMetrics: true };
const peer = (fields: Partial<Peer> = {}): Requester => ({
  via: "tcp",
  peer: { address: "127.0.0.1:41234", uid: 0, pid: 4242, command: "curl", groups: [0], ...fields },
});
const UNKNOWN = { uid: null, pid: null, command: null, groups: null, unknown: "no socket of the agent's network namespace is that end" };

test("only GET and HEAD are read-only; every other method, known or not, may change state", () => {
  expect(["GET", "HEAD"].map(mayChangeState)).toEqual([false, false]);
  expect(["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE", "PROPFIND", "get"].map(mayChangeState)).toEqual(Array(9).fill(true));
});

describe("decide", () => {
  test("root, and the uids named, are allowed; so is a process in a group named; anyone else is not", () => {
    const policy = { uids: [1000], gids: [50] };
    expect(decide(NONE, peer({ uid: 0 }))).toEqual({ allowed: true });
    expect(decide(policy, peer({ uid: 1000, groups: [1000] }))).toEqual({ allowed: true });
    expect(decide(policy, peer({ uid: 2000, groups: [2000, 50] }))).toEqual({ allowed: true });
    expect(decide(policy, peer({ uid: 2000, groups: [2000, 51] }))).toEqual({
      allowed: false,
      reason: "not_allowed",
      message:
        "only root, uid 1000 and gid 50 may change this agent's switches, and this request came from uid 2000: " +
        "send it as root (sudo), or start the agent with --admin-allow-uid 2000",
    });
    // Groups unknown (the process is not visible): only the uid counts.
    expect(decide(policy, peer({ uid: 2000, groups: null }))).toMatchObject({ allowed: false, reason: "not_allowed" });
    expect(decide(NONE, peer({ uid: 65534 }))).toMatchObject({ allowed: false, reason: "not_allowed" });
  });

  test("a peer the agent cannot identify is refused, even with every group allowed", () => {
    expect(decide({ uids: [65534], gids: [0] }, peer(UNKNOWN))).toEqual({
      allowed: false,
      reason: "unidentified",
      message:
        "only root, uid 65534 and gid 0 may change this agent's switches, and the agent cannot tell who sent this request (no socket of the agent's network namespace is that end): send it from the " +
        "agent's own network namespace (127.0.0.1 on its node, or in its pod through kubectl port-forward or exec), or through its Unix socket",
    });
  });

  test("the Unix socket's clients are allowed: its mode let them connect", () => {
    expect(decide(NONE, { via: "unix", socket: "/run/kmesh-accesslog/agent.sock" })).toEqual({ allowed: true });
  });

  test("who may, in words", () => {
    expect(whoMayChange(NONE)).toBe("root");
    expect(whoMayChange({ uids: [1000], gids: [] })).toBe("root and uid 1000");
    expect(whoMayChange({ uids: [1000, 1001], gids: [50] })).toBe("root, uid 1000, uid 1001 and gid 50");
  });
});

describe("the audit line", () => {
  const base = { method: "POST", requester: peer(), why: "", before: SWITCHES_ON, after: SWITCHES_ON };

  test("accepted: the switch named first with its old and new value, then every switch that followed it, then what the agent writes", () => {
    const on = { ...ALL_ON, connectionMetrics: false };
    expect(auditLine({ ...base, target: "/monitoring?enable=false", status: 200, before: on, after: SWITCHES_OFF })).toBe(
      'admin API: accepted (200) POST "/monitoring?enable=false" from uid 0, pid 4242, command "curl", 127.0.0.1:41234: ' +
        "monitoring true -> false, accesslog true -> false, workload_metrics true -> false; writing nothing (monitoring off)",
    );
    expect(auditLine({ ...base, target: "/accesslog?enable=1", status: 200 })).toBe(
      'admin API: accepted (200) POST "/accesslog?enable=1" from uid 0, pid 4242, command "curl", 127.0.0.1:41234: ' +
        "accesslog true -> true; writing close reports (periodic reports off)",
    );
  });

  test("refused: the switch stays, and why; unknowns and the socket are said so", () => {
    expect(
      auditLine({ ...base, before: ALL_ON, after: ALL_ON, requester: peer(UNKNOWN), target: "/connection_metrics?enable=false", status: 403, why: "only root may ..." }),
    ).toBe(
      'admin API: refused (403) POST "/connection_metrics?enable=false" from uid unknown, pid unknown, command unknown, 127.0.0.1:41234: ' +
        "connection_metrics stays true; only root may ...",
    );
    expect(
      auditLine({
        ...base,
        requester: { via: "unix", socket: "/run/kmesh-accesslog/agent.sock" },
        target: "/accesslog?enable=true",
        status: 400,
        why: JSON.stringify("Kmesh monitoring is disabled, cannot enable accesslog."),
        before: SWITCHES_OFF,
        after: SWITCHES_OFF,
      }),
    ).toBe(
      'admin API: refused (400) POST "/accesslog?enable=true" from unix socket /run/kmesh-accesslog/agent.sock: ' +
        'accesslog stays false; "Kmesh monitoring is disabled, cannot enable accesslog."',
    );
  });

  test("/debug/loggers: the log level's old and new value, or that it stays", () => {
    const logLevel = { before: "info", after: "debug" } as const;
    expect(auditLine({ ...base, target: "/debug/loggers", status: 200, logLevel })).toBe(
      'admin API: accepted (200) POST "/debug/loggers" from uid 0, pid 4242, command "curl", 127.0.0.1:41234: log level info -> debug',
    );
    expect(auditLine({ ...base, target: "/debug/loggers", status: 403, why: "only root may ...", logLevel: { before: "info", after: "info" } })).toBe(
      'admin API: refused (403) POST "/debug/loggers" from uid 0, pid 4242, command "curl", 127.0.0.1:41234: log level stays info; only root may ...',
    );
  });

  test("a path that is no switch; what a client chose stays quoted on one line", () => {
    expect(auditLine({ ...base, method: "PUT", target: "/filters", status: 404, why: '"404 page not found"' })).toBe(
      'admin API: refused (404) PUT "/filters" from uid 0, pid 4242, command "curl", 127.0.0.1:41234; "404 page not found"',
    );
    expect(auditLine({ ...base, requester: peer({ command: "x\nkmesh-accesslog: fake" }), target: "/version\n", status: 200 })).toBe(
      'admin API: accepted (200) POST "/version\\n" from uid 0, pid 4242, command "x\\nkmesh-accesslog: fake", 127.0.0.1:41234',
    );
  });
});

describe("the gate, in front of the real routes", () => {
  function gate(policy = NONE) {
    const backend = new FakeBackend({ ...SWITCHES_ON });
    const lines: string[] = [];
    const g = new AccessGate(policy, () => backend.state, createLogger("info", (line) => lines.push(line)));
    const serve = (method: string, target: string, requester: Requester, identifyMs = 0) =>
      g.serve(
        method,
        target,
        async () => {
          await Bun.sleep(identifyMs);
          return requester;
        },
        () => handleAdminRequest(backend, method, `http://127.0.0.1:15200${target}`),
      );
    return { backend, lines, gate: g, serve };
  }

  test("a refused request never reaches the routes: 403 with the reason, counted, a warning line", async () => {
    const { backend, lines, gate: g, serve } = gate();
    const response = await serve("POST", "/monitoring?enable=false", peer({ uid: 65534, pid: 7, command: "sh" }));
    expect(response.status).toBe(403);
    expect(response.headers.get("content-type")).toBe("text/plain; charset=utf-8");
    expect(response.headers.get("x-content-type-options")).toBe("nosniff");
    const body = await response.text();
    expect(body).toBe(
      "only root may change this agent's switches, and this request came from uid 65534: send it as root (sudo), or start the agent with --admin-allow-uid 65534\n",
    );
    expect(backend.applied).toEqual([]);
    expect(g.refused).toEqual({ not_allowed: 1, unidentified: 0 });
    expect(lines).toEqual([
      `kmesh-accesslog: admin API: refused (403) POST "/monitoring?enable=false" from uid 65534, pid 7, command "sh", 127.0.0.1:41234: monitoring stays true; ${body.trimEnd()}\n`,
    ]);
    await serve("POST", "/accesslog?enable=false", peer(UNKNOWN));
    expect(g.refused).toEqual({ not_allowed: 1, unidentified: 1 });
  });

  test("an allowed request gets the route's answer, with the route's refusal quoted in its line", async () => {
    const { backend, lines, serve } = gate();
    expect((await serve("POST", "/monitoring?enable=false", peer())).status).toBe(200);
    expect(backend.state).toEqual(SWITCHES_OFF);
    const refused = await serve("POST", "/accesslog?enable=true", peer());
    expect(refused.status).toBe(400);
    expect(await refused.text()).toBe("Kmesh monitoring is disabled, cannot enable accesslog.\n"); // the body is still the client's
    expect(lines).toEqual([
      'kmesh-accesslog: admin API: accepted (200) POST "/monitoring?enable=false" from uid 0, pid 4242, command "curl", 127.0.0.1:41234: ' +
        "monitoring true -> false, accesslog true -> false; writing nothing (monitoring off)\n",
      'kmesh-accesslog: admin API: refused (400) POST "/accesslog?enable=true" from uid 0, pid 4242, command "curl", 127.0.0.1:41234: ' +
        'accesslog stays false; "Kmesh monitoring is disabled, cannot enable accesslog."\n',
    ]);
  });

  test("a request that makes the log quieter still gets its line, at the level in force when it came", async () => {
    const { backend, lines } = gate();
    const log = createLogger("info", (line) => lines.push(line));
    const quiet = new AccessGate(NONE, () => backend.state, log);
    backend.setLogLevel = (level) => log.setLevel(level);
    const body = new TextEncoder().encode(JSON.stringify({ name: "default", level: "error" }));
    const response = await quiet.serve("POST", "/debug/loggers", async () => peer(), () =>
      handleAdminRequest(backend, "POST", "http://127.0.0.1:15200/debug/loggers", body),
    );
    expect([response.status, log.level]).toEqual([200, "error"]);
    expect(lines).toEqual(['kmesh-accesslog: admin API: accepted (200) POST "/debug/loggers" from uid 0, pid 4242, command "curl", 127.0.0.1:41234: log level info -> error\n']);
  });

  test("requests are served one at a time, in arrival order: each line's old and new values are its own", async () => {
    const { lines, serve } = gate();
    await Promise.all([
      serve("POST", "/accesslog?enable=false", peer(), 30),
      serve("POST", "/accesslog?enable=true", peer()),
      serve("POST", "/accesslog?enable=false", peer()),
    ]);
    expect(lines.map((line) => /: (accesslog [^;]+);/.exec(line)?.[1])).toEqual(["accesslog true -> false", "accesslog false -> true", "accesslog true -> false"]);
  });
});
