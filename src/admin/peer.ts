// Who is at the other end of an admin API connection over TCP, from the kernel: the row of
// /proc/self/net/tcp (or tcp6) for the request's addresses gives the socket's owner and inode, a
// `socket:[inode]` link under /proc/<pid>/fd the process (docs/admin-api.md, "Who may change
// state"). The table is read as text, not over sock_diag, because the systemd unit allows no
// netlink socket; off the event loop's thread, and only for requests that may change state.
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { endianness } from "node:os";
import { canonicalIp, formatHostPort, ipBytes } from "../address.ts";

export interface Peer {
  /** ip:port as the agent saw it, `[v6]:port` for IPv6 */
  address: string;
  /** the socket's owner; null when the agent cannot tell (`unknown` says why) */
  uid: number | null;
  /** the process holding the socket, when the agent may see it */
  pid: number | null;
  command: string | null;
  /** that process's effective and supplementary groups; null when it is not visible */
  groups: readonly number[] | null;
  /** why uid is null */
  unknown?: string;
}

/** One row of the socket table: the owner, the inode (0: no process holds it any more). */
export interface SocketRow {
  uid: number;
  inode: number;
}

const LITTLE_ENDIAN = endianness() === "LE";
/** A process's slice of the event loop while the agent looks for the socket's holder, ms. */
const SLICE_MS = 2;

/**
 * How the table writes an address and port: each 32-bit word of the address as a number in host
 * byte order, eight upper-case hex digits, then the port in four (`0100007F:3B70` is
 * 127.0.0.1:15216 on a little-endian machine).
 */
export function tableKey(address: Uint8Array, port: number, littleEndian = LITTLE_ENDIAN): string {
  const view = new DataView(address.buffer, address.byteOffset, address.byteLength);
  let hex = "";
  for (let at = 0; at < address.byteLength; at += 4) hex += view.getUint32(at, littleEndian).toString(16).toUpperCase().padStart(8, "0");
  return `${hex}:${port.toString(16).toUpperCase().padStart(4, "0")}`;
}

/**
 * The rows of a table whose local end is `localKey` and whose remote port is `remotePort`. A row is
 * `sl: local remote st tx:rx tr:when retrnsmt uid timeout inode ...`; only the local field follows
 * `: `, so the search cannot match a remote end. Searched as bytes: a node's table can be megabytes,
 * and only the matching lines become text.
 */
export function findRows(table: Uint8Array, localKey: string, remotePort: number): SocketRow[] {
  const bytes = Buffer.from(table.buffer, table.byteOffset, table.byteLength);
  const rows: SocketRow[] = [];
  const needle = `: ${localKey} `;
  for (let at = bytes.indexOf(needle, 0, "latin1"); at >= 0; at = bytes.indexOf(needle, at + needle.length, "latin1")) {
    const end = bytes.indexOf(0x0a, at);
    const fields = bytes.toString("latin1", at + 2, end < 0 ? bytes.length : end).trim().split(/\s+/);
    const [, remote, , , , , uid, , inode] = fields;
    if (remote === undefined || inode === undefined || !/^\d+$/.test(uid!) || !/^\d+$/.test(inode)) continue;
    if (Number.parseInt(remote.slice(remote.indexOf(":") + 1), 16) !== remotePort) continue;
    rows.push({ uid: Number(uid), inode: Number(inode) });
  }
  return rows;
}

/** The tables to search for a peer at `address`, with the key it has in each. */
function searches(address: Uint8Array, port: number): { table: string; key: string }[] {
  if (address.byteLength === 16) return [{ table: "tcp6", key: tableKey(address, port) }];
  // An IPv4 client's socket is in tcp, or in tcp6 as ::ffff:a.b.c.d if it is an IPv6 socket.
  const mapped = new Uint8Array(16);
  mapped.set([0xff, 0xff], 10);
  mapped.set(address, 12);
  return [
    { table: "tcp", key: tableKey(address, port) },
    { table: "tcp6", key: tableKey(mapped, port) },
  ];
}

/** The owner of the socket at `remote` connected to our `localPort`, and the process holding it. */
export async function findTcpPeer(remote: { address: string; port: number }, localPort: number): Promise<Peer> {
  const canonical = canonicalIp(remote.address);
  const address = canonical === null ? `${remote.address}:${remote.port}` : formatHostPort({ host: canonical, port: remote.port });
  const unknown = (why: string): Peer => ({ address, uid: null, pid: null, command: null, groups: null, unknown: why });
  const bytes = canonical === null ? null : ipBytes(canonical);
  if (bytes === null) return unknown(`${JSON.stringify(remote.address)} is not an IP address`);

  const rows: SocketRow[] = [];
  for (const { table, key } of searches(bytes, remote.port)) {
    const path = `/proc/self/net/${table}`;
    let contents: Uint8Array;
    try {
      contents = await readFile(path);
    } catch (error) {
      return unknown(`cannot read ${path}: ${error instanceof Error ? error.message : String(error)}`);
    }
    rows.push(...findRows(contents, key, localPort));
  }
  // A socket closed by its process stays in the table a while, as uid 0 with no inode: never an owner.
  const owned = rows.filter((row) => row.inode !== 0);
  if (owned.length === 0) {
    return unknown(
      rows.length === 0
        ? "no socket of the agent's network namespace is that end: it came from another namespace or host"
        : "its socket was closed before the request was read, and a closed socket has no owner",
    );
  }
  if (owned.some((row) => row.uid !== owned[0]!.uid)) return unknown("sockets of different owners match that end");
  const { uid, inode } = owned[0]!;
  const holder = await findHolder(inode);
  return { address, uid, pid: holder?.pid ?? null, command: holder?.command ?? null, groups: holder?.groups ?? null };
}

interface Holder {
  pid: number;
  command: string | null;
  groups: readonly number[] | null;
}

/**
 * The first process holding `socket:[inode]` that the agent may see. Newest first: a client is
 * usually younger than the node's daemons, whose descriptors are most of what there is to read.
 * The event loop gets a turn every few ms, even inside a process holding many thousands.
 */
async function findHolder(inode: number): Promise<Holder | null> {
  const link = `socket:[${inode}]`;
  let sliceStart = performance.now();
  let links = 0;
  let pids: string[];
  try {
    pids = readdirSync("/proc").filter((name) => /^\d+$/.test(name));
  } catch {
    return null;
  }
  pids.sort((a, b) => Number(b) - Number(a));
  for (const pid of pids) {
    const fdDir = `/proc/${pid}/fd`;
    let fds: string[];
    try {
      fds = readdirSync(fdDir);
    } catch {
      continue; // gone, or not ours to see
    }
    for (const fd of fds) {
      try {
        if (readlinkSync(`${fdDir}/${fd}`) === link) return describeProcess(Number(pid));
      } catch {
        // closed meanwhile
      }
      if (++links % 64 === 0 && performance.now() - sliceStart > SLICE_MS) {
        await new Promise((resolve) => setImmediate(resolve));
        sliceStart = performance.now();
      }
    }
  }
  return null;
}

/** A process's command name and groups (effective, then supplementary), each null when unreadable. */
function describeProcess(pid: number): Holder {
  const read = (file: string) => {
    try {
      return readFileSync(`/proc/${pid}/${file}`, "utf8");
    } catch {
      return null;
    }
  };
  const command = read("comm")?.replace(/\n$/, "") ?? null;
  const status = read("status");
  const effectiveGid = status === null ? undefined : /^Gid:\s+\d+\s+(\d+)/m.exec(status)?.[1];
  const supplementary = status === null ? undefined : /^Groups:[ \t]*([\d ]*)$/m.exec(status)?.[1];
  const groups =
    effectiveGid === undefined || supplementary === undefined
      ? null
      : [Number(effectiveGid), ...supplementary.trim().split(/\s+/).filter(Boolean).map(Number)];
  return { pid, command, groups };
}
