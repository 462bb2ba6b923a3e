/**
 * The process behind each socket, end to end: a client and a server process of known pid and
 * command name (python3 started through a symlink whose name becomes the kernel's comm), each
 * moved into a cgroup v2 laid out as a kubelet's runtime lays out a container's (the server's
 * cgroupfs-style, the client's systemd-style), named in the pod list of a local kubelet by
 * containerStatuses. Both ways of keeping state (hash map, socket storage) and the OTLP export
 * must name, on each side, the process that called connect() or accept(): pid, command, container
 * id and container name, exactly. A connection open before the agents started is named after the
 * process that holds each socket (what the kernel can tell), never anything else. A close the
 * probe skipped, written when its socket ends (test/e2e/skipped-close.test.ts), names the same
 * processes: with socket storage the accept() side's owner waits in accept_owners until then.
 * The programs at accept()'s exit are attached only when an output names processes (JSON lines,
 * OTLP): the text line never does, and while they are attached every system call on the node is
 * slower (README, "The kernel's cost per connection").
 *
 * Needs root, python3, openssl, a cgroup2 mount, bpftool and dist/kmesh-accesslog. Also part of the kernel
 * matrix (test/kernels/subset.ts). Run: `bun test test/e2e/processes.test.ts`.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { cgroup2Mounts } from "../../src/kernel/cgroups.ts";
import { kubeletUnavailableReason, type LocalKubelet, startKubelet } from "../support/kubelet-server.ts";
import { type OtlpReceiver, startReceiver } from "../support/otlp-receiver.ts";
import { closeCounts, closesMadeRight, closesSince, freePort } from "./admin-support.ts";
import { type AccessLogEntry, type Agent, agentUnavailableReason, keptWithEachSocket, matchConnection, PREEMPTIBLE_TRACEPOINTS } from "./agent.ts";
import { waitUntilCapturing } from "./exchange.ts";
import { podEntry, startKubeletAgent } from "./kubelet-agent.ts";
import { createTestNode, type Pod, type PodProcess, type TestNode } from "./node.ts";
import { netnsUnavailableReason, prerequisitesMet } from "./prereq.ts";
import { agentMapSize, attachedEvents, bpftoolUnavailableReason, ignoreCloses } from "./probe-maps.ts";

const CGROUP2 = (() => {
  try {
    return cgroup2Mounts(readFileSync("/proc/mounts", "utf8"))[0] ?? null;
  } catch {
    return null;
  }
})();
/** The interpreter itself (python3 on PATH may be a launcher script, whose name would not carry over). */
const PYTHON = (() => {
  try {
    const found = Bun.spawnSync(["python3", "-c", "import os, sys; print(os.path.realpath(sys.executable))"], { stdout: "pipe", stderr: "ignore" });
    return found.success ? found.stdout.toString().trim() : null;
  } catch {
    return null; // no python3 at all
  }
})();

const ready = prerequisitesMet(
  "the process behind each socket",
  netnsUnavailableReason() ??
    agentUnavailableReason() ??
    kubeletUnavailableReason() ??
    (PYTHON === null
      ? "python3 is not installed"
      : CGROUP2 === null
        ? "no cgroup2 file system is mounted"
        : bpftoolUnavailableReason()),
);

/** The commands as the kernel will name them (its comm: the name the program was started by). */
const CLIENT_COMMAND = "kal-owner-cli";
const SERVER_COMMAND = "kal-owner-srv";
const CLIENT_CONTAINER = { id: "c1".repeat(32), name: "shop-frontend" };
const SERVER_CONTAINER = { id: "5e".repeat(32), name: "payments-api" };

// The peers. The server listens, says its port, accepts one connection, reads `recv` bytes, sends
// `send`, and closes once the client has; the client connects, says its local port, sends, reads,
// and closes, at once or (`hold` 1) when a line comes on its stdin.
const SERVER = `
import socket, sys
host, send, recv = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
s.bind((host, 0)); s.listen(1)
print(s.getsockname()[1], flush=True)
c, _ = s.accept()
got = 0
while got < recv:
    got += len(c.recv(65536))
c.sendall(b"s" * send)
while c.recv(65536):
    pass
c.close()
`;
const CLIENT = `
import socket, sys
host, port, send, recv, hold = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
c = socket.create_connection((host, port))
print(c.getsockname()[1], flush=True)
c.sendall(b"c" * send)
got = 0
while got < recv:
    got += len(c.recv(65536))
if hold:
    sys.stdin.readline()
c.close()
`;

/** A cgroup v2 directory made for the test (under the mount's root), removed at dispose. */
class TestCgroups {
  readonly root: string;
  readonly #made: string[] = [];

  constructor() {
    this.root = mkdtempSync(join(CGROUP2!, "kal-e2e-"));
    this.#made.push(this.root);
  }

  /** Makes `relative` (each level) under the root; its full path. */
  make(relative: string): string {
    let path = this.root;
    for (const part of relative.split("/")) {
      path = join(path, part);
      mkdirSync(path);
      this.#made.push(path);
    }
    return path;
  }

  /** Removes every cgroup made, deepest first (their processes must have exited; a cgroup just emptied may be busy a moment). */
  remove(): void {
    for (const path of this.#made.splice(0).reverse()) {
      for (let i = 0; ; i++) {
        try {
          rmdirSync(path);
          break;
        } catch (error) {
          if (i >= 50) throw error;
          Bun.sleepSync(20);
        }
      }
    }
  }
}

/** One process of a peer: started in `cgroup` under the name `command`; its pid. */
interface Peer {
  proc: PodProcess;
  pid: number;
  /** writes a line to its stdin */
  say(line: string): void;
  /** the first line it printed (the server's port, the client's local port) */
  firstLine: Promise<number>;
}

function startPeer(pod: Pod, bin: string, command: string, cgroup: string, script: string, args: (string | number)[]): Peer {
  // The shell waits until it is in the cgroup (`ip netns exec` mounts a sysfs of its own, without
  // the cgroup2 mount: it is moved from here), then becomes the program: same pid, and the
  // symlink's name as its comm.
  const proc = pod.exec(["sh", "-c", 'read go && exec "$@"', "sh", join(bin, command), "-c", script, ...args.map(String)], { stdin: "pipe" });
  writeFileSync(join(cgroup, "cgroup.procs"), String(proc.pid));
  const stdin = proc.stdin as import("bun").FileSink;
  const say = (line: string) => {
    stdin.write(`${line}\n`);
    stdin.flush();
  };
  say("go");
  const reader = proc.stdout.getReader();
  const firstLine = (async () => {
    let text = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`${command} exited before it printed a port: ${await new Response(proc.stderr).text()}`);
      text += new TextDecoder().decode(value);
      if (text.includes("\n")) return Number(text.split("\n")[0]);
    }
  })();
  return { proc, pid: proc.pid, say, firstLine };
}

const identity = (e: AccessLogEntry) => ({ pid: e.processPid, command: e.processCommand, containerId: e.containerId, containerName: e.containerName });

describe.skipIf(!ready)("the process behind each socket", () => {
  let node: TestNode;
  let client: Pod;
  let server: Pod;
  let cgroups: TestCgroups;
  let clientCgroup: string;
  let serverCgroup: string;
  let bin: string;
  let kubelet: LocalKubelet;

  beforeAll(async () => {
    node = await createTestNode({ pods: ["client", "server"] });
    [client, server] = [node.pod("client"), node.pod("server")];
    cgroups = new TestCgroups();
    clientCgroup = cgroups.make(
      `kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0c1d2e3f_4a5b_6c7d_8e9f_a0b1c2d3e4f5.slice/cri-containerd-${CLIENT_CONTAINER.id}.scope`,
    );
    serverCgroup = cgroups.make(`kubepods/burstable/pod9f8e7d6c-5b4a-3c2d-1e0f-a9b8c7d6e5f4/${SERVER_CONTAINER.id}`);
    bin = mkdtempSync(join(tmpdir(), "kal-owner-"));
    symlinkSync(PYTHON!, join(bin, CLIENT_COMMAND));
    symlinkSync(PYTHON!, join(bin, SERVER_COMMAND));
    kubelet = await startKubelet({
      pods: [
        podEntry(client, { name: "shop-web-5d9f7c6b8-x2x4z", namespace: "shop" }, { containerNames: [CLIENT_CONTAINER.name], containerIds: [CLIENT_CONTAINER.id] }),
        podEntry(server, { name: "pay-api-7c6b85d9f-q9k7m", namespace: "payments" }, { containerNames: [SERVER_CONTAINER.name], containerIds: [SERVER_CONTAINER.id] }),
      ],
    });
  }, 60_000);

  afterAll(async () => {
    await kubelet?.[Symbol.asyncDispose]();
    await node?.[Symbol.asyncDispose](); // kills what is left of the peers
    cgroups?.remove();
    if (bin !== undefined) rmSync(bin, { recursive: true, force: true });
  });

  /**
   * One connection between the peers; both processes, and the connection's 4-tuple. `listening`
   * runs once the server's port is known, before the client connects. `done` closes a held
   * connection and resolves once both peers have exited.
   */
  async function connection(hold: boolean, listening: (port: number) => void = () => {}) {
    const srv = startPeer(server, bin, SERVER_COMMAND, serverCgroup, SERVER, [server.ip4, 5000, 1000]);
    const port = await srv.firstLine;
    listening(port);
    const cli = startPeer(client, bin, CLIENT_COMMAND, clientCgroup, CLIENT, [server.ip4, port, 1000, 5000, hold ? 1 : 0]);
    const localPort = await cli.firstLine;
    const key = { srcAddr: client.ip4, srcPort: localPort, dstAddr: server.ip4, dstPort: port };
    const done = async () => {
      if (hold) cli.say("close");
      expect(await Promise.all([cli.proc.exited, srv.proc.exited])).toEqual([0, 0]);
    };
    return { cli, srv, key, done };
  }

  const expected = (cli: Peer, srv: Peer) => ({
    OUTBOUND: { pid: cli.pid, command: CLIENT_COMMAND, containerId: CLIENT_CONTAINER.id, containerName: CLIENT_CONTAINER.name },
    INBOUND: { pid: srv.pid, command: SERVER_COMMAND, containerId: SERVER_CONTAINER.id, containerName: SERVER_CONTAINER.name },
  });

  /** The agent's two close lines of `key`, each checked to name `want`'s process of its side. */
  async function ownedCloseLines(agent: Agent, key: Parameters<typeof matchConnection>[0], want: ReturnType<typeof expected>) {
    const [out] = await agent.waitForLines((e) => matchConnection(key, "OUTBOUND")(e) && e.state === "BPF_TCP_CLOSE", 1, 15_000);
    const [inb] = await agent.waitForLines((e) => matchConnection(key, "INBOUND")(e) && e.state === "BPF_TCP_CLOSE", 1, 15_000);
    const lines = { OUTBOUND: out!, INBOUND: inb! };
    for (const direction of ["OUTBOUND", "INBOUND"] as const) {
      const line = lines[direction];
      expect({ line: line.raw, owner: identity(line) }).toEqual({ line: line.raw, owner: want[direction] });
    }
    return lines;
  }

  /** The OTLP records of `key`, each checked to name `want`'s process of its side. */
  async function expectOtlpOwners(receiver: OtlpReceiver, key: Parameters<typeof matchConnection>[0], want: ReturnType<typeof expected>) {
    for (const direction of ["OUTBOUND", "INBOUND"] as const) {
      const [record] = await receiver.waitForRecords(
        (r) => r.attributes["source.port"] === BigInt(key.srcPort) && r.attributes["destination.port"] === BigInt(key.dstPort) && r.attributes["kmesh.direction"] === direction,
      );
      const w = want[direction];
      expect({
        pid: record!.attributes["process.pid"],
        command: record!.attributes["process.executable.name"],
        containerId: record!.attributes["container.id"],
        containerName: record!.attributes["k8s.container.name"],
      }).toEqual({ pid: BigInt(w.pid), command: w.command, containerId: w.containerId, containerName: w.containerName });
    }
    expect(receiver.malformed).toEqual([]);
  }

  /** connection()'s exchange: the client sends 1000 bytes, the server 5000. */
  const expectExchanged = (lines: Awaited<ReturnType<typeof ownedCloseLines>>) =>
    expect([lines.OUTBOUND.sentBytes, lines.OUTBOUND.receivedBytes, lines.INBOUND.sentBytes, lines.INBOUND.receivedBytes]).toEqual([1000, 5000, 5000, 1000]);

  test("connect() and accept() callers: pid, command, container id and name on both lines, with each way of keeping state, and in OTLP", async () => {
    await using receiver: OtlpReceiver = await startReceiver();
    await using hashMap = startKubeletAgent(kubelet, {
      output: "json",
      args: ["--connection-state", "hash-map", "--otlp-endpoint", receiver.endpoint, "--otlp-batch-delay", "0.1"],
    });
    await using storage = startKubeletAgent(kubelet, { output: "json", args: ["--connection-state", "socket-storage"] });
    await using table = startKubeletAgent(kubelet, { output: "json", args: ["--connection-state", "socket-table"] });
    for (const agent of [hashMap, storage, table]) await waitUntilCapturing(agent, client, server);
    const { cli, srv, key, done } = await connection(false);
    await done();
    const want = expected(cli, srv);
    for (const agent of [hashMap, storage, table]) expectExchanged(await ownedCloseLines(agent, key, want));
    // The text line never says: its bytes are Kmesh's (test/e2e/capture.test.ts).
    await expectOtlpOwners(receiver, key, want);
  }, 90_000);

  test("the accept() programs are attached only for an output that names processes: not for text, for JSON and for OTLP", async () => {
    await using receiver: OtlpReceiver = await startReceiver();
    const storage = ["--connection-state", "socket-storage"];
    await using text = startKubeletAgent(kubelet, { args: storage });
    await using json = startKubeletAgent(kubelet, { output: "json", args: storage });
    await using otlp = startKubeletAgent(kubelet, { args: ["--connection-state", "hash-map", "--otlp-endpoint", receiver.endpoint, "--otlp-batch-delay", "0.1"] });
    for (const agent of [text, json, otlp]) await waitUntilCapturing(agent, client, server);
    // The state-change and socket-end programs (tp_btf) are always attached; where tracepoints are
    // preemptible each has three stand-ins: with socket storage three more tp_btf programs, with the
    // hash map a classic tracepoint program and two tp_btf ones. The accept side is two syscall
    // tracepoints.
    const tpBtf = ["raw_tracepoint inet_sock_set_state", "raw_tracepoint tcp_destroy_sock"];
    const times = (hooks: string[], n: number) => hooks.flatMap((hook) => Array<string>(n).fill(hook));
    const mapHooks = PREEMPTIBLE_TRACEPOINTS ? [...times(tpBtf, 3), "tracepoint inet_sock_set_state", "tracepoint tcp_destroy_sock"] : tpBtf;
    // (a kernel that refuses socket storage gets the hash map)
    const storageHooks = keptWithEachSocket(json.stderrLines) ? times(tpBtf, PREEMPTIBLE_TRACEPOINTS ? 4 : 1) : mapHooks;
    const accept = ["tracepoint sys_exit_accept", "tracepoint sys_exit_accept4"];
    expect({ text: attachedEvents(text.pid), json: attachedEvents(json.pid), otlp: attachedEvents(otlp.pid) }).toEqual({
      text: [...storageHooks].sort(),
      json: [...storageHooks, ...accept].sort(),
      otlp: [...mapHooks, ...accept].sort(),
    });
    // With socket storage the accept programs' table of owners has one entry when nothing writes it.
    const ownersTable = keptWithEachSocket(json.stderrLines) ? 16384 : 1;
    expect({ text: agentMapSize(text.pid, "accept_owners"), json: agentMapSize(json.pid, "accept_owners") }).toEqual({ text: 1, json: ownersTable });

    const { cli, srv, key, done } = await connection(false);
    await done();
    const want = expected(cli, srv);
    expectExchanged(await ownedCloseLines(json, key, want));
    await expectOtlpOwners(receiver, key, want);
    // The text agent wrote both lines, and said nothing of the accept side: it did not need it.
    const [out] = await text.waitForLines((e) => matchConnection(key, "OUTBOUND")(e) && e.state === "BPF_TCP_CLOSE", 1, 15_000);
    const [inb] = await text.waitForLines((e) => matchConnection(key, "INBOUND")(e) && e.state === "BPF_TCP_CLOSE", 1, 15_000);
    expectExchanged({ OUTBOUND: out!, INBOUND: inb! });
    expect([...text.stderrLines, ...json.stderrLines, ...otlp.stderrLines].filter((line) => line.includes("accepted a connection"))).toEqual([]);
  }, 90_000);

  test("closes the probe skipped, written when each socket ends: the same callers on both lines, with each way of keeping state", async () => {
    const [hashMapAdmin, storageAdmin, tableAdmin] = [`127.0.0.1:${freePort()}`, `127.0.0.1:${freePort()}`, `127.0.0.1:${freePort()}`];
    await using hashMap = startKubeletAgent(kubelet, { output: "json", args: ["--connection-state", "hash-map", "--admin-addr", hashMapAdmin] });
    await using storage = startKubeletAgent(kubelet, { output: "json", args: ["--connection-state", "socket-storage", "--admin-addr", storageAdmin] });
    await using table = startKubeletAgent(kubelet, { output: "json", args: ["--connection-state", "socket-table", "--admin-addr", tableAdmin] });
    const agents = [
      { agent: hashMap, adminAddr: hashMapAdmin },
      { agent: storage, adminAddr: storageAdmin },
      { agent: table, adminAddr: tableAdmin },
    ];
    for (const { agent } of agents) await waitUntilCapturing(agent, client, server);
    const before = await Promise.all(agents.map(({ adminAddr }) => closeCounts(adminAddr)));
    const { cli, srv, key, done } = await connection(false, (port) => {
      for (const { agent } of agents) ignoreCloses(agent.proc.pid, port);
    });
    await done();
    const want = expected(cli, srv);
    for (const [i, { adminAddr, agent }] of agents.entries()) {
      expectExchanged(await ownedCloseLines(agent, key, want));
      // Both lines were written when the sockets ended (by the stand-in where it is attached), none by the state-change program.
      const after = await closeCounts(adminAddr);
      expect(closesSince(before[i]!, after, 2)).toEqual(closesMadeRight(after, 2));
    }
  }, 90_000);

  test("a connection open before the agents started: the process that holds each socket, on both lines", async () => {
    const { cli, srv, key, done } = await connection(true);
    await Bun.sleep(300); // the exchange is over; the connection idles until done()
    await using hashMap = startKubeletAgent(kubelet, { output: "json", args: ["--connection-state", "hash-map"] });
    await using storage = startKubeletAgent(kubelet, { output: "json", args: ["--connection-state", "socket-storage"] });
    await using table = startKubeletAgent(kubelet, { output: "json", args: ["--connection-state", "socket-table"] });
    for (const agent of [hashMap, storage, table]) await waitUntilCapturing(agent, client, server);
    await done();
    const want = expected(cli, srv);
    for (const agent of [hashMap, storage, table]) {
      const lines = await ownedCloseLines(agent, key, want);
      // open before the agents: its start is not known
      expect([lines.OUTBOUND.startTime, lines.INBOUND.startTime]).toEqual(["null", "null"]);
    }
  }, 90_000);
});
