// Many open loopback TCP connections, held by a process of their own, for the burst and
// footprint benchmarks: plain socket/connect/accept/close through bun:ffi on libc, so that a
// connection costs two file descriptors and no JS object, and closing them all is one tight
// loop of close(2) calls.
//
// A holder process (openConnections() starts as many as the file limit needs):
//   bun scripts/bench/connections.ts <pairs>
// prints {"port":…,"clientPorts":[…]} once every pair is connected and accepted, then reads commands on stdin:
// "close" closes every socket (clients first, then servers) and prints {"closed":…}. At the
// end of stdin it closes what is left and exits, so a parent that dies cleans up too.
import { dlopen, ptr } from "bun:ffi";
import { createInterface } from "node:readline";

const AF_INET = 2;
const SOCK_STREAM = 1;
const SOL_SOCKET = 1;
const SO_REUSEADDR = 2;

export interface OpenConnections {
  /** the listening ports on 127.0.0.1 (one per holder process) */
  ports: number[];
  /** per holder (as in `ports`), its clients' local ports, in the order they connected and close */
  clientPorts: number[][];
  pairs: number;
  /** holder processes (each within the per-process file limit) */
  holders: number;
  openSeconds: number;
  /** closes every socket at once; resolves with how long it took until all were closed */
  closeAll(): Promise<{ closed: number; closeSeconds: number }>;
  /** ends the holder processes (closing whatever is still open) */
  dispose(): Promise<void>;
}

/** The hard limit on open files of a process started from here. */
function hardFileLimit(): number {
  const out = Bun.spawnSync(["sh", "-c", "ulimit -Hn"]).stdout.toString().trim();
  return out === "unlimited" ? 1_048_576 : Number(out);
}

interface Holder {
  proc: Bun.Subprocess<"pipe", "pipe", "inherit">;
  next(): Promise<Record<string, unknown>>;
}

function startHolder(pairs: number): Holder {
  // The soft limit raised to the hard one; root without CAP_SYS_RESOURCE cannot go beyond it.
  const proc = Bun.spawn(["sh", "-c", 'ulimit -n "$(ulimit -Hn)" && exec "$@"', "sh", process.execPath, import.meta.path, String(pairs)], {
    stdin: "pipe",
    stdout: "pipe",
    stderr: "inherit",
  });
  const reader = proc.stdout.getReader();
  const decoder = new TextDecoder();
  let pending = "";
  const next = async (): Promise<Record<string, unknown>> => {
    for (;;) {
      const nl = pending.indexOf("\n");
      if (nl >= 0) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        return JSON.parse(line) as Record<string, unknown>;
      }
      const { value, done } = await reader.read();
      if (done) throw new Error(`a connection holder exited (${await proc.exited})`);
      pending += decoder.decode(value, { stream: true });
    }
  };
  return { proc, next };
}

/**
 * Opens `pairs` connections on loopback (client and server socket of each held open), in as many
 * holder processes as the per-process file limit needs; resolves once all are open.
 */
export async function openConnections(pairs: number): Promise<OpenConnections> {
  // Two descriptors a pair, and some to spare; one listening port per holder (the kernel picks
  // client ports per destination: ~28,000 of them).
  const perHolder = Math.min(Math.floor((hardFileLimit() - 64) / 2), 25_000);
  const holders: Holder[] = [];
  for (let left = pairs; left > 0; left -= perHolder) holders.push(startHolder(Math.min(left, perHolder)));
  const started = performance.now();
  const ready = await Promise.all(holders.map((h) => h.next()));
  const openSeconds = (performance.now() - started) / 1000;
  let closed = false;
  const dispose = async () => {
    for (const h of holders) {
      try {
        await h.proc.stdin.end();
      } catch {
        // already gone
      }
    }
    const timer = setTimeout(() => {
      for (const h of holders) h.proc.kill("SIGKILL");
    }, 10_000);
    await Promise.all(holders.map((h) => h.proc.exited));
    clearTimeout(timer);
  };
  return {
    ports: ready.map((r) => r.port as number),
    clientPorts: ready.map((r) => r.clientPorts as number[]),
    pairs,
    holders: holders.length,
    openSeconds,
    async closeAll() {
      if (closed) throw new Error("already closed");
      closed = true;
      const t = performance.now();
      for (const h of holders) h.proc.stdin.write("close\n");
      await Promise.all(holders.map((h) => h.proc.stdin.flush()));
      const results = await Promise.all(holders.map((h) => h.next()));
      return { closed: results.reduce((n, r) => n + (r.closed as number), 0), closeSeconds: (performance.now() - t) / 1000 };
    },
    dispose,
  };
}

// ── The holder process ───────────────────────────────────────────────────────

function hold(pairs: number): void {
  const libc = dlopen("libc.so.6", {
    socket: { args: ["i32", "i32", "i32"], returns: "i32" },
    bind: { args: ["i32", "ptr", "u32"], returns: "i32" },
    listen: { args: ["i32", "i32"], returns: "i32" },
    connect: { args: ["i32", "ptr", "u32"], returns: "i32" },
    accept: { args: ["i32", "ptr", "ptr"], returns: "i32" },
    getsockname: { args: ["i32", "ptr", "ptr"], returns: "i32" },
    setsockopt: { args: ["i32", "i32", "i32", "ptr", "u32"], returns: "i32" },
    close: { args: ["i32"], returns: "i32" },
  }).symbols;
  const check = (what: string, result: number) => {
    if (result < 0) throw new Error(`${what} failed`);
    return result;
  };

  // struct sockaddr_in { u16 family; u16 port (network order); u32 addr (network order); u8 zero[8] }
  const address = (port: number) => {
    const bytes = new Uint8Array(16);
    const view = new DataView(bytes.buffer);
    view.setUint16(0, AF_INET, true);
    view.setUint16(2, port, false);
    bytes.set([127, 0, 0, 1], 4);
    return bytes;
  };

  const listener = check("socket", libc.socket(AF_INET, SOCK_STREAM, 0));
  libc.setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, ptr(Int32Array.of(1)), 4);
  check("bind", libc.bind(listener, ptr(address(0)), 16));
  check("listen", libc.listen(listener, 4096));
  const bound = new Uint8Array(16);
  check("getsockname", libc.getsockname(listener, ptr(bound), ptr(Uint32Array.of(16))));
  const port = new DataView(bound.buffer).getUint16(2, false);

  const clients = new Int32Array(pairs);
  const servers = new Int32Array(pairs);
  const target = address(port);
  for (let i = 0; i < pairs; i++) {
    const fd = check("socket", libc.socket(AF_INET, SOCK_STREAM, 0));
    check(`connect (pair ${i})`, libc.connect(fd, ptr(target), 16));
    clients[i] = fd;
    servers[i] = check("accept", libc.accept(listener, null, null));
  }
  libc.close(listener);
  const clientPorts: number[] = [];
  const name = new Uint8Array(16);
  for (let i = 0; i < pairs; i++) {
    check("getsockname", libc.getsockname(clients[i]!, ptr(name), ptr(Uint32Array.of(16))));
    clientPorts.push(new DataView(name.buffer).getUint16(2, false));
  }
  console.log(JSON.stringify({ port, clientPorts }));

  let open = true;
  const closeAll = () => {
    if (!open) return { closed: 0 };
    open = false;
    for (let i = 0; i < pairs; i++) libc.close(clients[i]!);
    for (let i = 0; i < pairs; i++) libc.close(servers[i]!);
    return { closed: 2 * pairs };
  };
  const commands = createInterface({ input: process.stdin });
  commands.on("line", (line) => {
    if (line.trim() === "close") console.log(JSON.stringify(closeAll()));
  });
  commands.on("close", () => {
    closeAll();
    process.exit(0);
  });
}

if (import.meta.main) hold(Number(process.argv[2]));
