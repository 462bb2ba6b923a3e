/**
 * Our CLI in a cluster, as kmeshctl does it: `status`, `monitoring` and `accesslog` with
 * --kubeconfig find the agent pods through the local API server of the tests (api-server.ts) and
 * reach each one's admin port through its port-forward, a real WebSocket (v4.channel.k8s.io)
 * whose bytes the server carries to two real agents it stands for ("pods" of the DaemonSet).
 *
 * Asserts: one result line per pod, exact; each pod's switches changed, and only the named pod's
 * when one is named; a refusal or an unreachable pod is its own line on stderr and exit 1, the
 * others still done; a refused port-forward (403) and no pods say so; the kmeshctl variant's pods
 * (app=kmesh in kmesh-system) are found too.
 *
 * Needs root and dist/kmesh-accesslog (scripts/build).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import packageJson from "../../package.json" with { type: "json" };
import { agentUnavailableReason } from "./agent.ts";
import { type AdminAgent, freePort, runBinary, startAdminAgent, switchStates } from "./admin-support.ts";
import { type LocalApiServer, startApiServer } from "./api-server.ts";
import { pod } from "../support/kubelet-pods.ts";
import { prerequisitesMet } from "./prereq.ts";

const ready = prerequisitesMet("the CLI through the API server", agentUnavailableReason());

const NAMES = ["kmesh-accesslog-7xkq2", "kmesh-accesslog-b9m4t"] as const;
const OURS = { "app.kubernetes.io/name": "kmesh-accesslog" };

/** An agent pod of the DaemonSet as the API server lists it. */
const agentPod = (name: string, namespace = "kmesh-accesslog", labels: Record<string, string> = OURS, phase: "Running" | "Pending" = "Running") =>
  pod({ name, namespace, ip4: "10.244.9.9", owner: { kind: "DaemonSet", name: "kmesh-accesslog" }, labels, phase });

describe.skipIf(!ready)("the CLI through the API server's port-forward", () => {
  let api: LocalApiServer;
  const agents: AdminAgent[] = [];
  /** pod name → its agent's admin port */
  const ports = new Map<string, number>();

  beforeAll(async () => {
    api = await startApiServer();
    for (const name of NAMES) {
      const agent = await startAdminAgent({ args: ["--no-kubelet", "--no-kube-api"] });
      agents.push(agent);
      ports.set(name, Number(agent.adminAddr.split(":")[1]));
      api.put("pods", agentPod(name));
    }
    // the kubelet's side: the pod's port 15200 is its agent's admin API
    api.forwardTo = (object, port) => {
      const admin = ports.get((object.metadata as { name: string }).name);
      return port === 15200 && admin !== undefined ? { host: "127.0.0.1", port: admin } : null;
    };
  }, 60_000);

  afterAll(async () => {
    for (const agent of agents) await agent[Symbol.asyncDispose]();
    await api?.[Symbol.asyncDispose]();
  });

  const cli = (...args: string[]) => runBinary([...args, "--kubeconfig", api.kubeconfig]);
  const pids = () => agents.map((a) => a.agent.pid);

  test("status: one line per pod, through a port-forward of each", async () => {
    const before = api.requests.filter((r) => r.kind === "portforward").length;
    const result = await cli("status");
    expect([result.exitCode, result.stderr]).toEqual([0, ""]);
    // every TCP connection of the host is a line: the count is whatever it is, nothing dropped
    expect(result.stdout.replace(/; \d+ lines written/g, "; N lines written")).toBe(
      NAMES.map(
        (name, i) =>
          `pod kmesh-accesslog/${name}: ready, kmesh-accesslog ${packageJson.version} (pid ${pids()[i]}), writing close reports; ` +
          "monitoring on, accesslog on, connection_metrics off, workload_metrics off; N lines written, 0 dropped\n",
      ).join(""),
    );
    // /version, /debug/ready and /metrics of each pod: a port-forward per connection (kept alive between requests)
    const forwards = api.requests.filter((r) => r.kind === "portforward").length - before;
    expect(forwards).toBeGreaterThanOrEqual(2);
    expect(forwards).toBeLessThanOrEqual(6);
  });

  test("status --json: one object per line, naming its pod", async () => {
    const result = await cli("status", "--json");
    expect(result.exitCode).toBe(0);
    const objects = result.stdout.trimEnd().split("\n").map((line) => JSON.parse(line));
    expect(objects.map((o) => [o.agent, o.pid, o.ready, o.switches])).toEqual(
      NAMES.map((name, i) => [`pod kmesh-accesslog/${name}`, pids()[i], true, { monitoring: true, accesslog: true, connection_metrics: false, workload_metrics: false }]),
    );
  });

  test("monitoring: every pod switched, in kmeshctl's order, one line each", async () => {
    const result = await cli("monitoring", "--connectionMetrics", "enable", "--accesslog", "disable");
    expect(result).toEqual({
      exitCode: 0,
      stdout: NAMES.map((name) => `accesslog disabled, connection_metrics enabled on pod kmesh-accesslog/${name}\n`).join(""),
      stderr: "",
    });
    for (const agent of agents) {
      expect(await switchStates(agent.adminAddr)).toEqual({ monitoring: true, accesslog: false, connection_metrics: true, workload_metrics: false });
    }
  });

  test("a pod named: only that one", async () => {
    const result = await cli("accesslog", NAMES[1], "enable");
    expect(result).toEqual({ exitCode: 0, stdout: `accesslog enabled on pod kmesh-accesslog/${NAMES[1]}\n`, stderr: "" });
    expect((await switchStates(agents[0]!.adminAddr)).accesslog).toBe(false);
    expect((await switchStates(agents[1]!.adminAddr)).accesslog).toBe(true);
    const unknown = await cli("status", "kmesh-accesslog-nope1");
    expect(unknown.exitCode).toBe(1);
    expect(unknown.stderr).toBe(
      `kmesh-accesslog: no agent pod "kmesh-accesslog-nope1" through the API server (kubeconfig ${api.kubeconfig}): none labelled app.kubernetes.io/name=kmesh-accesslog in kmesh-accesslog, nor app=kmesh in kmesh-system has that name\n`,
    );
  });

  test("refusals are one line each on stderr, exit 1; the others are still done", async () => {
    // monitoring off on the first pod only: enabling accesslog is refused there, done on the second
    expect((await runBinary(["monitoring", "--all", "disable", "--admin-addr", agents[0]!.adminAddr])).exitCode).toBe(0);
    const result = await cli("accesslog", "enable");
    expect(result).toEqual({
      exitCode: 1,
      stdout: `accesslog enabled on pod kmesh-accesslog/${NAMES[1]}\n`,
      stderr:
        `kmesh-accesslog: the agent on pod kmesh-accesslog/${NAMES[0]} refused to enable accesslog: Kmesh monitoring is disabled, cannot enable accesslog. ` +
        "(turn monitoring on first: kmesh-accesslog monitoring --all enable)\n",
    });
    expect((await cli("monitoring", "--all", "enable")).exitCode).toBe(0);
    expect((await switchStates(agents[0]!.adminAddr)).monitoring).toBe(true);
  });

  test("a pod whose agent does not answer, a pod not running: their lines say why, the others answer", async () => {
    const closed = freePort();
    const forwardTo = api.forwardTo;
    api.forwardTo = (object, port) => ((object.metadata as { name: string }).name === NAMES[0] ? { host: "127.0.0.1", port: closed } : forwardTo(object, port));
    api.put("pods", agentPod("kmesh-accesslog-zzzzz", undefined, undefined, "Pending"));
    try {
      const result = await cli("accesslog", "enable");
      expect(result.exitCode).toBe(1);
      expect(result.stdout).toBe(`accesslog enabled on pod kmesh-accesslog/${NAMES[1]}\n`);
      const lines = result.stderr.split("\n").filter((l) => l !== "");
      expect(lines).toHaveLength(2);
      // what the kubelet's side said on the error channel
      expect(lines[0]).toStartWith(`kmesh-accesslog: pod kmesh-accesslog/${NAMES[0]}: error forwarding port 15200 to pod ${NAMES[0]}, uid : failed to connect to 127.0.0.1:${closed}`);
      expect(lines[1]).toBe("kmesh-accesslog: pod kmesh-accesslog/kmesh-accesslog-zzzzz is Pending: no agent to reach");
    } finally {
      api.forwardTo = forwardTo;
      api.remove("pods", "kmesh-accesslog", "kmesh-accesslog-zzzzz");
    }
  });

  test("a port-forward the API server refuses (403): every pod's line says so", async () => {
    api.portForwardStatus = 403;
    try {
      const result = await cli("status");
      expect(result).toEqual({
        exitCode: 1,
        stdout: "",
        stderr: NAMES.map((name) => `kmesh-accesslog: pod kmesh-accesslog/${name}: the API server answered the port-forward with HTTP 403\n`).join(""),
      });
    } finally {
      api.portForwardStatus = null;
    }
  });

  test("--in-cluster outside a cluster says so (exit 2); an unusable kubeconfig too", async () => {
    const outside = await runBinary(["status", "--in-cluster"]);
    expect(outside).toEqual({
      exitCode: 2,
      stdout: "",
      stderr: "kmesh-accesslog: cannot use the API server: --in-cluster: not in a cluster (no KUBERNETES_SERVICE_HOST/_PORT and service-account token): give --kubeconfig <file>\n",
    });
    const missing = await runBinary(["status", "--kubeconfig", "/nonexistent/kubeconfig"]);
    expect(missing.exitCode).toBe(2);
    expect(missing.stderr).toStartWith("kmesh-accesslog: cannot use the API server: ");
  });

  test("the kmeshctl variant's pods (app=kmesh in kmesh-system) are found when there are none of ours; none at all says where it looked", async () => {
    for (const name of NAMES) api.remove("pods", "kmesh-accesslog", name);
    try {
      const none = await cli("status");
      expect(none).toEqual({
        exitCode: 1,
        stdout: "",
        stderr: `kmesh-accesslog: no agent pods through the API server (kubeconfig ${api.kubeconfig}): none labelled app.kubernetes.io/name=kmesh-accesslog in kmesh-accesslog, nor app=kmesh in kmesh-system (scripts/deploy/ or scripts/deploy/kmeshctl/ deploys them)\n`,
      });
      for (const name of NAMES) api.put("pods", agentPod(name, "kmesh-system", { ...OURS, app: "kmesh" }));
      const result = await cli("monitoring", "--workloadMetrics", "disable");
      expect(result).toEqual({ exitCode: 0, stdout: NAMES.map((name) => `workload_metrics disabled on pod kmesh-system/${name}\n`).join(""), stderr: "" });
    } finally {
      for (const name of NAMES) {
        api.remove("pods", "kmesh-system", name);
        api.put("pods", agentPod(name));
      }
    }
  });
});
