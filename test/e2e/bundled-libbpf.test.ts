// The binary carries its own libbpf: on a node without one it still loads
// the probe and logs. The node here is a root file system holding only the
// binary and the C library it links (no libbpf, no libelf, no zlib), mounted
// read-only, in a private mount namespace with /proc, /sys and /dev bound in.
// The agent runs chrooted there and must capture real connections exactly,
// writing nothing anywhere (the libraries are loaded from memory files).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { AGENT_BINARY, agentUnavailableReason, type AccessLogEntry, parseTextLine } from "./agent.ts";
import { exchange } from "./exchange.ts";
import { createTestNode, type TestNode } from "./node.ts";
import { netnsUnavailableReason, prerequisitesMet } from "./prereq.ts";

const ready = prerequisitesMet("bundled libbpf", netnsUnavailableReason() ?? agentUnavailableReason());

/** Every file below `root` with its size: what the run must leave unchanged. */
function inventory(root: string): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else out.push(`${path.slice(root.length)} ${statSync(path).size}`);
    }
  };
  walk(root);
  return out.sort();
}

/** A root file system with the binary and what `ldd` says it links, nothing else. */
function makeRootfs(): string {
  const root = mkdtempSync(join(tmpdir(), "kal-rootfs-"));
  for (const dir of ["bin", "proc", "sys", "dev", "run", "tmp"]) mkdirSync(join(root, dir));
  copyFileSync(AGENT_BINARY, join(root, "bin/kmesh-accesslog"));
  const ldd = Bun.spawnSync(["ldd", AGENT_BINARY]).stdout.toString();
  for (const lib of ldd.match(/\/\S+/g) ?? []) {
    mkdirSync(join(root, dirname(lib)), { recursive: true });
    copyFileSync(lib, join(root, lib));
  }
  return root;
}

describe.skipIf(!ready)("bundled libbpf", () => {
  let node: TestNode;
  let root: string;

  beforeAll(async () => {
    node = await createTestNode({ pods: ["client", "server"] });
    root = makeRootfs();
  });

  afterAll(async () => {
    await node?.[Symbol.asyncDispose]();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  test("a node without libbpf, libelf or zlib: the built-in libbpf loads and lines are exact", async () => {
    const files = inventory(root);
    expect(files.some((f) => /lib(bpf|elf|z)\.so/.test(f))).toBe(false);
    const script = [
      'r="$1"',
      'mount --bind "$r" "$r" && mount -o remount,bind,ro "$r"',
      'mount --rbind /proc "$r/proc" && mount --rbind /sys "$r/sys" && mount --rbind /dev "$r/dev"',
      'mount -t tmpfs none "$r/run"',
      'exec chroot "$r" /bin/kmesh-accesslog run --admin-addr ""',
    ].join(" && ");
    const agent = Bun.spawn(["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, "sh", root], {
      stdout: "pipe",
      stderr: "pipe",
    });
    try {
      const stderr = agent.stderr.getReader();
      let said = "";
      while (!said.includes("capturing TCP connections")) {
        const { value, done } = await stderr.read();
        if (done) throw new Error(`agent exited: ${said}`);
        said += new TextDecoder().decode(value);
      }
      expect(said).toContain("capturing TCP connections (libbpf 1.1 bundled,");

      const client = node.pod("client");
      const server = node.pod("server");
      const { client: c, server: s } = await exchange(client, server, {
        family: 4,
        clientSend: 1000,
        serverSend: 5000,
        closeFirst: "client",
      });
      await Bun.sleep(300);
      agent.kill("SIGTERM");
      expect(await agent.exited).toBe(0);
      const lines = (await new Response(agent.stdout).text()).split("\n").filter((l) => l.includes(`src.addr=${c.localAddress}:${c.localPort},`));
      const entries: AccessLogEntry[] = lines.map(parseTextLine);
      const seen = entries.map((e) => [e.direction, e.state, e.dstAddr, e.dstPort, e.sentBytes, e.receivedBytes]);
      expect(seen.sort()).toEqual([
        ["INBOUND", "BPF_TCP_CLOSE", s.localAddress, s.localPort, 5000, 1000],
        ["OUTBOUND", "BPF_TCP_CLOSE", s.localAddress, s.localPort, 1000, 5000],
      ]);
      expect(inventory(root)).toEqual(files);
    } finally {
      agent.kill("SIGKILL");
      await agent.exited;
    }
  }, 60_000);
});
