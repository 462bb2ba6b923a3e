/**
 * Who may change the agent's switches, end to end with the compiled binary and real users: curl
 * run as uid 65534 (setpriv) is refused and the lines keep coming; root is served and the lines
 * stop; every change request, either way, is one audit line naming the switch (or the log level),
 * its old and new value and the peer (uid, pid, command, address); read-only requests stay open,
 * and the TCP metrics' address has no gate; the uids and groups an operator allows; the Unix
 * socket (0600, root's, replaced after kill -9, used by the CLI); kmeshctl's path (a root relay inside the agent's network namespace, as the container
 * runtime is for kubectl port-forward) against a client elsewhere, which is refused; a peer whose
 * socket was closed before its request was read (the kernel keeps it as uid 0, without an owner).
 *
 * Needs root, curl, setpriv and dist/kmesh-accesslog (scripts/build).
 * Run: `bun test test/e2e/admin-access.test.ts`.
 */
import { describe, expect, test } from "bun:test";
import { existsSync, lstatSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { AGENT_BINARY, agentUnavailableReason, matchConnection, startAgent } from "./agent.ts";
import { adminRequest, curlAs, freePort, metrics, privateLockFile, removePrivateLockDir, runBinary, startAdminAgent, switchStates } from "./admin-support.ts";
import { checkExchange, keyOf } from "./connection-checks.ts";
import { exchange, waitUntilCapturing } from "./exchange.ts";
import { LineCollector } from "./lines.ts";
import { createTestNode } from "./node.ts";
import { netnsUnavailableReason, prerequisitesMet } from "./prereq.ts";

const toolsMissing = () => ["curl", "setpriv"].map((tool) => (Bun.which(tool) ? null : `needs \`${tool}\` on PATH`)).find((r) => r !== null) ?? null;
const ready = prerequisitesMet("admin API access", netnsUnavailableReason() ?? agentUnavailableReason() ?? toolsMissing());

const NOBODY = 65534;
const PREFIX = "kmesh-accesslog: admin API: ";
const isAudit = (line: string) => line.startsWith(PREFIX);
const ALL_ON_BUT_METRICS = { monitoring: true, accesslog: true, connection_metrics: false, workload_metrics: false };
const REFUSED = (reason: string) => `kmesh_accesslog_admin_requests_refused_total{reason="${reason}"}`;

const only = (who = "root") => `only ${who} may change this agent's switches`;
const notAllowed = (uid: number, who = "root") =>
  `${only(who)}, and this request came from uid ${uid}: send it as root (sudo), or start the agent with --admin-allow-uid ${uid}`;
const unidentified = (why: string) =>
  `${only()}, and the agent cannot tell who sent this request (${why}): send it from the agent's own network namespace ` +
  "(127.0.0.1 on its node, or in its pod through kubectl port-forward or exec), or through its Unix socket";

/** The compiled CLI run as another user: exit code and stderr. */
function asUser(uid: number, args: string[]) {
  const result = Bun.spawnSync(["setpriv", `--reuid=${uid}`, `--regid=${uid}`, "--clear-groups", AGENT_BINARY, ...args], { stdout: "pipe", stderr: "pipe", timeout: 20_000 });
  return { exitCode: result.exitCode, stderr: result.stderr.toString() };
}

async function refusals(where: string) {
  const m = await metrics(where);
  return { not_allowed: m.get(REFUSED("not_allowed")), unidentified: m.get(REFUSED("unidentified")) };
}

describe.skipIf(!ready)("only root changes the switches", () => {
  test("uid 65534: POST /monitoring?enable=false is 403 and the lines keep coming; root: 200 and the lines stop; one audit line each", async () => {
    await using node = await createTestNode({ pods: ["client", "server"] });
    const [a, b] = [node.pod("client"), node.pod("server")];
    await using agent = await startAdminAgent({ args: ["--report-interval", "3600"] });
    const addr = agent.adminAddr;
    await waitUntilCapturing(agent.agent, a, b);

    const nobodyPort = freePort();
    const refused = await curlAs({ uid: NOBODY, localPort: nobodyPort }, "POST", `http://${addr}/monitoring?enable=false`);
    expect({ status: refused.status, body: refused.body }).toEqual({ status: 403, body: `${notAllowed(NOBODY)}\n` });
    expect(await agent.agent.waitForStderr(isAudit)).toBe(
      `${PREFIX}refused (403) POST "/monitoring?enable=false" from uid ${NOBODY}, pid ${refused.pid}, command "curl", ` +
        `127.0.0.1:${nobodyPort}: monitoring stays true; ${notAllowed(NOBODY)}`,
    );
    expect(await switchStates(addr)).toEqual(ALL_ON_BUT_METRICS);
    // A connection made after the refusal: both its lines, exact.
    await checkExchange(agent.agent, a, b, { family: 4, clientSend: 1000, serverSend: 5000, closeFirst: "client" });
    expect(await refusals(addr)).toEqual({ not_allowed: 1, unidentified: 0 });

    const rootPort = freePort();
    const served = await curlAs({ uid: 0, localPort: rootPort }, "POST", `http://${addr}/monitoring?enable=false`);
    expect({ status: served.status, body: served.body }).toEqual({ status: 200, body: "" });
    expect(await agent.agent.waitForStderr((line) => isAudit(line) && line.includes("accepted"))).toBe(
      `${PREFIX}accepted (200) POST "/monitoring?enable=false" from uid 0, pid ${served.pid}, command "curl", 127.0.0.1:${rootPort}: ` +
        "monitoring true -> false, accesslog true -> false; writing nothing (monitoring off)",
    );
    // Off: the kernel writes nothing, for this connection or any other.
    await Bun.sleep(200);
    const before = (await metrics(addr)).get("kmesh_accesslog_records_read_total")!;
    const { client, server } = await exchange(a, b, { family: 4, clientSend: 10, serverSend: 20, closeFirst: "server" });
    await Bun.sleep(500);
    expect((await metrics(addr)).get("kmesh_accesslog_records_read_total")! - before).toBe(0);
    expect(agent.agent.filter(matchConnection(keyOf(client, server)))).toEqual([]);
    expect(await refusals(addr)).toEqual({ not_allowed: 1, unidentified: 0 });
    expect(agent.agent.stderrLines.filter(isAudit)).toHaveLength(2);
  }, 60_000);

  test("reads stay open to every user; every other method needs root, whatever the path (a later PUT or DELETE route too)", async () => {
    await using agent = await startAdminAgent();
    const addr = agent.adminAddr;
    const asNobody = (method: string, path: string) => curlAs({ uid: NOBODY }, method, `http://${addr}${path}`);
    for (const [method, path, body] of [
      ["GET", "/debug/ready", "OK"],
      ["GET", "/healthz", "OK"],
      ["HEAD", "/healthz", ""],
      ["HEAD", "/metrics", ""],
    ] as const) {
      expect({ method, path, ...(({ status, body }) => ({ status, body }))(await asNobody(method, path)) }).toEqual({ method, path, status: 200, body });
    }
    expect(JSON.parse((await asNobody("GET", "/version")).body)).toMatchObject({ program: "kmesh-accesslog", pid: agent.agent.pid });
    expect((await asNobody("GET", "/metrics")).body).toContain(`${REFUSED("not_allowed")} 0\n`);

    for (const [method, path] of [
      ["PUT", "/monitoring?enable=false"],
      ["DELETE", "/filters"],
      ["PUT", "/filters"],
      ["POST", "/version"],
      ["OPTIONS", "/metrics"],
      ["PATCH", "/accesslog?enable=false"],
    ]) {
      const answer = await asNobody(method!, path!);
      expect({ method, path, status: answer.status, body: answer.body }).toEqual({ method, path, status: 403, body: `${notAllowed(NOBODY)}\n` });
    }
    // Root gets what the routes answer: Kmesh's 405, ours (/filters takes GET and PUT), our 404.
    expect((await adminRequest(addr, "PUT", "/monitoring?enable=false")).status).toBe(405);
    expect((await adminRequest(addr, "DELETE", "/filters")).status).toBe(405);
    expect((await adminRequest(addr, "DELETE", "/routes-to-come")).status).toBe(404);
    expect(await switchStates(addr)).toEqual(ALL_ON_BUT_METRICS);
    expect(await refusals(addr)).toEqual({ not_allowed: 6, unidentified: 0 });
    // One audit line per change request, none for a read.
    const lines = agent.agent.stderrLines.filter(isAudit);
    expect(lines.map((line) => /^\S+ admin API: (\w+ \(\d+\) \w+ "[^"]*")/.exec(line)?.[1])).toEqual([
      'refused (403) PUT "/monitoring?enable=false"',
      'refused (403) DELETE "/filters"',
      'refused (403) PUT "/filters"',
      'refused (403) POST "/version"',
      'refused (403) OPTIONS "/metrics"',
      'refused (403) PATCH "/accesslog?enable=false"',
      'refused (405) PUT "/monitoring?enable=false"',
      'refused (405) DELETE "/filters"',
      'refused (404) DELETE "/routes-to-come"',
    ]);
    expect(lines.at(-3)).toEndWith(': monitoring stays true; "Method Not Allowed"');
    expect(lines.at(-2)).toEndWith(': filters stay none; "Method Not Allowed"');
  });

  test("the TCP metrics' switches and /debug/loggers: uid 65534 gets 403 and changes nothing, root is served; one audit line each; the metrics address has no gate", async () => {
    const metricsAddr = `127.0.0.1:${freePort()}`;
    await using agent = await startAdminAgent({ args: ["--metrics-addr", metricsAddr] });
    const addr = agent.adminAddr;
    const setLevel = (level: string) => JSON.stringify({ name: "default", level });
    const level = async () => JSON.parse((await adminRequest(addr, "GET", "/debug/loggers?name=default")).body).level;
    const requests = [
      ["/workload_metrics?enable=true", undefined, "workload_metrics stays false"],
      ["/connection_metrics?enable=true", undefined, "connection_metrics stays false"],
      ["/debug/loggers", setLevel("debug"), "log level stays info"],
    ] as const;
    for (const [path, data, stays] of requests) {
      const localPort = freePort();
      const refused = await curlAs({ uid: NOBODY, localPort, ...(data === undefined ? {} : { data }) }, "POST", `http://${addr}${path}`);
      expect({ path, status: refused.status, body: refused.body }).toEqual({ path, status: 403, body: `${notAllowed(NOBODY)}\n` });
      expect(await agent.agent.waitForStderr((line) => isAudit(line) && line.includes(`127.0.0.1:${localPort}:`))).toBe(
        `${PREFIX}refused (403) POST ${JSON.stringify(path)} from uid ${NOBODY}, pid ${refused.pid}, command "curl", 127.0.0.1:${localPort}: ${stays}; ${notAllowed(NOBODY)}`,
      );
    }
    expect(await switchStates(addr)).toEqual(ALL_ON_BUT_METRICS);
    expect(await level()).toBe("info");
    // Workload metrics still off: nothing listens on the metrics address.
    expect((await curlAs({ uid: NOBODY }, "GET", `http://${metricsAddr}/status/metric`)).exitCode).toBe(7);
    expect(await refusals(addr)).toEqual({ not_allowed: 3, unidentified: 0 });

    const rootPort = freePort();
    const served = await curlAs({ uid: 0, localPort: rootPort }, "POST", `http://${addr}/workload_metrics?enable=true`);
    expect({ status: served.status, body: served.body }).toEqual({ status: 200, body: "" });
    expect(await agent.agent.waitForStderr((line) => isAudit(line) && line.includes("accepted"))).toBe(
      `${PREFIX}accepted (200) POST "/workload_metrics?enable=true" from uid 0, pid ${served.pid}, command "curl", 127.0.0.1:${rootPort}: ` +
        "workload_metrics false -> true; writing close reports (periodic reports off); TCP metrics on",
    );
    // The metrics address only reads: open to every user, a POST is 405 and no change request.
    const scrape = await curlAs({ uid: NOBODY }, "GET", `http://${metricsAddr}/status/metric`);
    expect(scrape.status).toBe(200);
    const post = await curlAs({ uid: NOBODY }, "POST", `http://${metricsAddr}/status/metric`);
    expect({ status: post.status, body: post.body }).toEqual({ status: 405, body: "Method Not Allowed\n" });

    // Each level change is audited, even the one that quiets the log below its own line's level.
    for (const [from, to] of [["info", "debug"], ["debug", "error"]]) {
      const port = freePort();
      const set = await curlAs({ uid: 0, localPort: port, data: setLevel(to!) }, "POST", `http://${addr}/debug/loggers`);
      expect({ status: set.status, body: set.body }).toEqual({ status: 200, body: "OK" });
      expect(await agent.agent.waitForStderr((line) => isAudit(line) && line.includes(`127.0.0.1:${port}`))).toBe(
        `${PREFIX}accepted (200) POST "/debug/loggers" from uid 0, pid ${set.pid}, command "curl", 127.0.0.1:${port}: log level ${from} -> ${to}`,
      );
    }
    expect(await level()).toBe("error");
    expect(await refusals(addr)).toEqual({ not_allowed: 3, unidentified: 0 });
    expect(agent.agent.stderrLines.filter(isAudit)).toHaveLength(6);
  });

  test("--admin-allow-uid lets uid 65534 in, --admin-allow-gid a member of the group; anyone else is still refused", async () => {
    await using agent = await startAdminAgent({ args: ["--admin-allow-uid", String(NOBODY), "--admin-allow-gid", "4242"] });
    const addr = agent.adminAddr;
    const who = `root, uid ${NOBODY} and gid 4242`;
    const nobodyPort = freePort();
    const nobody = await curlAs({ uid: NOBODY, localPort: nobodyPort }, "POST", `http://${addr}/accesslog?enable=false`);
    expect({ status: nobody.status, body: nobody.body }).toEqual({ status: 200, body: "" });
    expect(await agent.agent.waitForStderr(isAudit)).toBe(
      `${PREFIX}accepted (200) POST "/accesslog?enable=false" from uid ${NOBODY}, pid ${nobody.pid}, command "curl", 127.0.0.1:${nobodyPort}: ` +
        "accesslog true -> false; writing nothing (accesslog off)",
    );

    const other = await curlAs({ uid: 4000 }, "POST", `http://${addr}/accesslog?enable=true`);
    expect({ status: other.status, body: other.body }).toEqual({ status: 403, body: `${notAllowed(4000, who)}\n` });
    // Our CLI, run by that user, says the agent's words.
    expect(asUser(4000, ["monitoring", "--all", "disable", "--admin-addr", addr])).toEqual({
      exitCode: 1,
      stderr: `kmesh-accesslog: the agent on ${addr} refused to disable monitoring: ${notAllowed(4000, who)}\n`,
    });
    const member = await curlAs({ uid: 4000, groups: [4242] }, "POST", `http://${addr}/accesslog?enable=true`);
    expect({ status: member.status, body: member.body }).toEqual({ status: 200, body: "" });
    expect(await switchStates(addr)).toEqual(ALL_ON_BUT_METRICS);
    expect(await refusals(addr)).toEqual({ not_allowed: 2, unidentified: 0 });
    expect(agent.agent.stderrLines).toContain(`kmesh-accesslog: admin API on http://${addr} and unix socket ${agent.socket} (only ${who} may change the switches); writing close reports (periodic reports off)`);
  });

  test("a peer whose socket was closed before its request was read is refused: the kernel lists it as uid 0 with no owner", async () => {
    await using agent = await startAdminAgent();
    const port = Number(agent.adminAddr.split(":")[1]);
    const localPort = freePort();
    // The agent stopped: the kernel accepts the connection and the request; the client closes
    // before the agent reads a byte, and its socket becomes an ownerless FIN_WAIT2 entry.
    agent.agent.proc.kill("SIGSTOP");
    try {
      const client = Bun.spawnSync(
        [
          ...["setpriv", `--reuid=${NOBODY}`, `--regid=${NOBODY}`, "--clear-groups", process.execPath, "-e"],
          `const s = require("node:net").connect({ host: "127.0.0.1", port: ${port}, localPort: ${localPort} }, () =>
             s.end("POST /monitoring?enable=false HTTP/1.1\\r\\nHost: x\\r\\nContent-Length: 0\\r\\n\\r\\n", () => s.destroy()));`,
        ],
        { stdout: "pipe", stderr: "pipe", timeout: 10_000 },
      );
      expect({ exitCode: client.exitCode, stderr: client.stderr.toString() }).toEqual({ exitCode: 0, stderr: "" });
      const key = `0100007F:${localPort.toString(16).toUpperCase().padStart(4, "0")} `;
      const row = () => readFileSync("/proc/net/tcp", "latin1").split("\n").find((line) => line.includes(`: ${key}`)) ?? "";
      for (let i = 0; i < 100 && !/^\s*\d+: \S+ \S+ 05 /.test(row()); i++) await Bun.sleep(20);
      // FIN_WAIT2, uid 0, inode 0: what a check of the uid alone would take for root.
      const [, , , state, , , , uid, , inode] = row().trim().split(/\s+/);
      expect({ state, uid, inode }).toEqual({ state: "05", uid: "0", inode: "0" });
    } finally {
      agent.agent.proc.kill("SIGCONT");
    }
    expect(await agent.agent.waitForStderr(isAudit)).toBe(
      `${PREFIX}refused (403) POST "/monitoring?enable=false" from uid unknown, pid unknown, command unknown, 127.0.0.1:${localPort}: ` +
        `monitoring stays true; ${unidentified("its socket was closed before the request was read, and a closed socket has no owner")}`,
    );
    expect(await switchStates(agent.adminAddr)).toEqual(ALL_ON_BUT_METRICS);
    expect(await refusals(agent.adminAddr)).toEqual({ not_allowed: 0, unidentified: 1 });
  });
});

describe.skipIf(!ready)("the Unix socket", () => {
  test("0600 and root's, beside the lock; uid 65534 cannot connect; the CLI drives the agent through it; removed at stop", async () => {
    const agent = await startAdminAgent();
    try {
      const stat = lstatSync(agent.socket);
      expect({ socket: stat.isSocket(), mode: (stat.mode & 0o777).toString(8), uid: stat.uid, gid: stat.gid }).toEqual({ socket: true, mode: "600", uid: 0, gid: 0 });
      expect(agent.socket).toBe(agent.lockFile.replace(/\.lock$/, ".sock"));

      const nobody = await curlAs({ uid: NOBODY, socket: agent.socket }, "POST", "http://localhost/monitoring?enable=false");
      expect({ exitCode: nobody.exitCode, status: nobody.status }).toEqual({ exitCode: 7, status: 0 }); // curl: could not connect (EACCES)
      expect(asUser(NOBODY, ["accesslog", "disable", "--admin-socket", agent.socket])).toEqual({
        exitCode: 1,
        stderr: `kmesh-accesslog: cannot connect to ${agent.socket}: permission denied (the agent's socket is mode 0600: run this as root)\n`,
      });

      expect(await runBinary(["accesslog", "disable", "--admin-socket", agent.socket])).toEqual({
        exitCode: 0,
        stdout: `accesslog disabled on ${agent.socket}\n`,
        stderr: "",
      });
      expect(await agent.agent.waitForStderr(isAudit)).toBe(
        `${PREFIX}accepted (200) POST "/accesslog?enable=false" from unix socket ${agent.socket}: accesslog true -> false; writing nothing (accesslog off)`,
      );
      const status = await runBinary(["status", "--json", "--admin-socket", agent.socket]);
      expect(JSON.parse(status.stdout)).toMatchObject({ address: agent.socket, pid: agent.agent.pid, switches: { ...ALL_ON_BUT_METRICS, accesslog: false } });
      expect(agent.agent.stderrLines.filter(isAudit)).toHaveLength(1);

      expect((await agent.agent.stop("SIGTERM")).exitCode).toBe(0);
      expect(existsSync(agent.socket)).toBe(false);
    } finally {
      await agent[Symbol.asyncDispose]();
    }
  });

  test("kill -9 leaves the socket file; the next agent on the lock removes it and serves", async () => {
    const lockFile = privateLockFile();
    const first = await startAdminAgent({ lockFile });
    await first.agent[Symbol.asyncDispose](); // SIGKILL; the directory stays for the next agent

    expect(lstatSync(first.socket).isSocket()).toBe(true);
    await using second = await startAdminAgent({ lockFile });
    expect(second.socket).toBe(first.socket);
    expect(second.agent.stderrLines).toContain(
      `kmesh-accesslog: removed ${first.socket}: no agent listened on it (one stopped without removing it, e.g. killed with SIGKILL)`,
    );
    expect((await adminRequest(second.socket, "POST", "/workload_metrics?enable=false")).status).toBe(200);
  });

  test("a live agent's socket is never taken over; a file that is not a socket is refused and left alone", async () => {
    await using first = await startAdminAgent();
    const otherLock = privateLockFile();
    const taken = await runBinary(["run", "--admin-addr", "", "--lock-file", otherLock, "--admin-socket", first.socket, "--duration", "30"]);
    removePrivateLockDir(otherLock);
    expect(taken).toEqual({
      exitCode: 1,
      stdout: "",
      stderr: `kmesh-accesslog: another kmesh-accesslog agent (pid ${first.agent.pid}) already serves the admin API on ${first.socket}: stop it first\n`,
    });
    const lockFile = privateLockFile();
    const file = join(lockFile, "..", "not-a-socket");
    writeFileSync(file, "keep me\n");
    try {
      const refused = await runBinary(["run", "--admin-addr", "", "--lock-file", lockFile, "--admin-socket", file, "--duration", "30"]);
      expect(refused).toEqual({
        exitCode: 1,
        stdout: "",
        stderr:
          `kmesh-accesslog: cannot serve the admin API on ${file}: something that is not a socket is there ` +
          '(remove it, or choose another path with --admin-socket, or none with --admin-socket "")\n',
      });
      expect(readFileSync(file, "utf8")).toBe("keep me\n");
      expect(existsSync(lockFile)).toBe(false); // the lock it took is given back
    } finally {
      removePrivateLockDir(lockFile);
    }
    expect((await adminRequest(first.socket, "GET", "/healthz")).body).toBe("OK");
  });

  test("without --admin-addr or --admin-socket, the CLI uses the node's socket (/run/kmesh-accesslog/agent.sock) when it may", async () => {
    const lock = "/run/kmesh-accesslog/agent.lock";
    const socket = "/run/kmesh-accesslog/agent.sock";
    // Named here only because the harness gives every agent a private lock unless told. The TCP
    // listener is elsewhere than Kmesh's port: only the socket can lead the CLI to this agent.
    await using agent = startAgent({ args: ["--admin-addr", `127.0.0.1:${freePort()}`, "--lock-file", lock] });
    for (let i = 0; i < 200 && !existsSync(socket); i++) await Bun.sleep(25);
    expect(await runBinary(["monitoring", "--connectionMetrics", "enable"])).toEqual({
      exitCode: 0,
      stdout: `connection_metrics enabled on ${socket}\n`,
      stderr: "",
    });
    const status = await runBinary(["status", "--json"]);
    expect(JSON.parse(status.stdout)).toMatchObject({ address: socket, pid: agent.pid, switches: { connection_metrics: true } });
    const stopped = await agent.stop("SIGTERM");
    expect(stopped.exitCode).toBe(0);
    expect(existsSync(socket)).toBe(false);
  });
});

describe.skipIf(!ready)("kmeshctl's path: a port-forward into the agent's network namespace", () => {
  test("a root relay inside the namespace is served whoever connected to it; a client of another namespace is refused, even root", async () => {
    await using node = await createTestNode({ pods: ["agent", "remote"] });
    const [pod, remote] = [node.pod("agent"), node.pod("remote")];
    // The DaemonSet's layout: the agent in its pod's namespace, Kmesh's port there (on every
    // address of the pod, so that the remote pod can also try it directly).
    await using agent = await startAdminAgent({ netns: pod.netns, adminAddr: "0.0.0.0:15200" });
    // As the container runtime does for kubectl port-forward: root, dialling 127.0.0.1 in the pod.
    const relay = pod.exec([process.execPath, join(import.meta.dir, "forwarder.ts"), `${pod.ip4}:9000`, "127.0.0.1:15200"]);
    const said = new LineCollector(relay.stdout, (line) => JSON.parse(line) as { listening?: number; upstreamPort?: number });
    await said.waitFor((m) => m.listening === 9000);

    const viaRelay = await curlAs({ uid: NOBODY, netns: remote.netns }, "POST", `http://${pod.ip4}:9000/accesslog?enable=false`);
    expect({ status: viaRelay.status, body: viaRelay.body }).toEqual({ status: 200, body: "" });
    const upstreamPort = (await said.waitFor((m) => m.upstreamPort !== undefined))[0]!.upstreamPort;
    const relayCommand = readFileSync(`/proc/${relay.pid}/comm`, "utf8").trim();
    expect(await agent.agent.waitForStderr(isAudit)).toBe(
      `${PREFIX}accepted (200) POST "/accesslog?enable=false" from uid 0, pid ${relay.pid}, command ${JSON.stringify(relayCommand)}, ` +
        `127.0.0.1:${upstreamPort}: accesslog true -> false; writing nothing (accesslog off)`,
    );

    const localPort = freePort();
    const direct = await curlAs({ uid: 0, netns: remote.netns, localPort }, "POST", `http://${pod.ip4}:15200/accesslog?enable=true`);
    const why = "no socket of the agent's network namespace is that end: it came from another namespace or host";
    expect({ status: direct.status, body: direct.body }).toEqual({ status: 403, body: `${unidentified(why)}\n` });
    expect(await agent.agent.waitForStderr((line) => isAudit(line) && line.includes("refused"))).toBe(
      `${PREFIX}refused (403) POST "/accesslog?enable=true" from uid unknown, pid unknown, command unknown, ${remote.ip4}:${localPort}: ` +
        `accesslog stays false; ${unidentified(why)}`,
    );
    // Reads from there stay open.
    expect((await curlAs({ uid: NOBODY, netns: remote.netns }, "GET", `http://${pod.ip4}:15200/healthz`)).body).toBe("OK");
    expect(await switchStates(agent.socket)).toEqual({ ...ALL_ON_BUT_METRICS, accesslog: false });
    expect(await refusals(agent.socket)).toEqual({ not_allowed: 0, unidentified: 1 });
  }, 60_000);
});
