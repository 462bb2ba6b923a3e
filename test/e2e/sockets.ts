/**
 * TCP corners that Node's sockets cannot make, for the end-to-end tests: plain blocking libc
 * sockets over bun:ffi, run inside a pod as their own process (`bun test/e2e/sockets.ts <what>`),
 * printing one JSON report on stdout.
 *
 *   sockets.ts fastopen --host <addr> [--port <p>] --syn-data <n> --more <n> --reply <n> --close-first client|server
 *     A Fast Open listener (on --port, else one the kernel picks) and client in one process: the
 *     client's SYN carries --syn-data bytes, it writes --more after; the server answers --reply
 *     bytes. Needs net.ipv4.tcp_fastopen with the server and client bits and "no cookie" (0x207)
 *     in the pod.
 *   sockets.ts fastopen-client --host <addr> --port <p> --syn-data <n>
 *     A Fast Open client whose SYN carries --syn-data bytes; it reads to the end, then closes with
 *     a RST (SO_LINGER 0), and prints its port and what it read.
 *   sockets.ts fastopen-server --host <addr>
 *     A Fast Open listener that accepts nothing: prints {"event":"listening","port":p}, then waits to
 *     be killed.
 *   sockets.ts syn-data --host <own IPv4> --to <IPv4> --port <p> --data <n>
 *     One raw SYN carrying --data bytes from a port no socket holds: a Fast Open server makes a
 *     child for it, and this side's kernel resets the child's SYN-ACK.
 *   sockets.ts self-connect --host <addr> --bytes <n>
 *     A socket bound to a port connects to that same address and port (a simultaneous open with
 *     itself), writes --bytes, reads them back, and closes.
 *   sockets.ts ending --host <addr> --port <p> --case <case> --first client|server
 *     A listener on --port and a client of it, each step's data acknowledged before the next;
 *     unless --case is zero, the client writes 1000 bytes and the server 5000. Then, with "first"
 *     the side --first names and "second" the other:
 *       zero, fin: first shuts down, second reads to the end and shuts down (zero: no payload);
 *       reset: first writes 10 bytes that second never reads; second closes: a RST, no FIN;
 *       shutdown-reset: as reset, but first shuts down before second closes (its FIN acknowledged);
 *       fin-unacked: as shutdown-reset, but first's FIN never arrives (the test's iptables rule).
 *     Prints each side's port, the bytes it wrote, and the bytes that reached it (read or not).
 *   sockets.ts fin-in-synack --host <own IPv4> --port <p> --data <n>
 *     A raw stand-in for a Fast Open server of another system: answers the first SYN to --port
 *     with a SYN-ACK that carries --data bytes and the FIN (Linux servers never do), and
 *     acknowledges the SYN's data. The pod must drop its kernel's RSTs for it. Prints
 *     {"event":"listening"} once the raw socket is open, then the SYN it answered.
 */
import { dlopen, FFIType, ptr, read } from "bun:ffi";
import { isIPv4 } from "node:net";

const libc = dlopen("libc.so.6", {
  socket: { args: ["i32", "i32", "i32"], returns: "i32" },
  setsockopt: { args: ["i32", "i32", "i32", "ptr", "u32"], returns: "i32" },
  bind: { args: ["i32", "ptr", "u32"], returns: "i32" },
  listen: { args: ["i32", "i32"], returns: "i32" },
  accept: { args: ["i32", "ptr", "ptr"], returns: "i32" },
  connect: { args: ["i32", "ptr", "u32"], returns: "i32" },
  sendto: { args: ["i32", "ptr", "u64", "i32", "ptr", "u32"], returns: FFIType.i64_fast },
  recv: { args: ["i32", "ptr", "u64", "i32"], returns: FFIType.i64_fast },
  shutdown: { args: ["i32", "i32"], returns: "i32" },
  close: { args: ["i32"], returns: "i32" },
  getsockname: { args: ["i32", "ptr", "ptr"], returns: "i32" },
  getsockopt: { args: ["i32", "i32", "i32", "ptr", "ptr"], returns: "i32" },
  __errno_location: { args: [], returns: "ptr" },
}).symbols;

const AF_INET = 2;
const AF_INET6 = 10;
const SOCK_STREAM = 1;
const SOCK_RAW = 3;
const IPPROTO_TCP = 6;
const SOL_SOCKET = 1;
const SO_REUSEADDR = 2;
const SO_LINGER = 13;
const TCP_FASTOPEN = 23;
const MSG_FASTOPEN = 0x20000000;
const SHUT_WR = 1;
const TCP_INFO = 11;
const MSG_PEEK = 0x2;
const MSG_DONTWAIT = 0x40;

function check(what: string, result: number | bigint): number {
  const n = Number(result);
  if (n < 0) throw new Error(`${what}: errno ${read.i32(libc.__errno_location()!, 0)}`);
  return n;
}

/** struct sockaddr_in or sockaddr_in6 for `host`:`port`. */
function sockaddr(host: string, port: number): Uint8Array {
  const v4 = isIPv4(host);
  const bytes = new Uint8Array(v4 ? 16 : 28);
  const view = new DataView(bytes.buffer);
  view.setUint16(0, v4 ? AF_INET : AF_INET6, true);
  view.setUint16(2, port, false);
  if (v4) bytes.set(host.split(".").map(Number), 4);
  else bytes.set(ipv6Bytes(host), 8);
  return bytes;
}

function ipv6Bytes(host: string): number[] {
  const [head = "", tail] = host.split("::");
  const groups = (part: string) => (part === "" ? [] : part.split(":").map((g) => Number.parseInt(g, 16)));
  const left = groups(head);
  const right = tail === undefined ? [] : groups(tail);
  const all = [...left, ...Array<number>(8 - left.length - right.length).fill(0), ...right];
  return all.flatMap((g) => [g >> 8, g & 255]);
}

function tcpSocket(host: string): number {
  return check("socket", libc.socket(isIPv4(host) ? AF_INET : AF_INET6, SOCK_STREAM, 0));
}

function setInt(fd: number, level: number, name: number, value: number): void {
  check("setsockopt", libc.setsockopt(fd, level, name, new Int32Array([value]), 4));
}

function localPort(fd: number): number {
  const address = new Uint8Array(28);
  check("getsockname", libc.getsockname(fd, address, new Uint32Array([28])));
  return new DataView(address.buffer).getUint16(2, false);
}

function listener(host: string, fastOpen: boolean, port = 0): number {
  const fd = tcpSocket(host);
  setInt(fd, SOL_SOCKET, SO_REUSEADDR, 1);
  const address = sockaddr(host, port);
  check("bind", libc.bind(fd, address, address.byteLength));
  if (fastOpen) setInt(fd, IPPROTO_TCP, TCP_FASTOPEN, 16);
  check("listen", libc.listen(fd, 16));
  return fd;
}

function writeAll(fd: number, count: number, flags = 0, to: Uint8Array | null = null): number {
  const chunk = new Uint8Array(Math.max(count, 1)).fill(0x61);
  return check("send", libc.sendto(fd, chunk, count, flags, to, to === null ? 0 : to.byteLength));
}

/** Reads until `count` bytes (or the end, with count Infinity); returns how many came. */
function readUpTo(fd: number, count: number): number {
  const buffer = new Uint8Array(64 * 1024);
  let got = 0;
  while (got < count) {
    const n = check("recv", libc.recv(fd, buffer, Math.min(buffer.byteLength, count - got), 0));
    if (n === 0) break;
    got += n;
  }
  return got;
}

function fastOpen(host: string, synData: number, more: number, reply: number, closeFirst: string, port = 0) {
  const server = listener(host, true, port);
  port = localPort(server);
  const client = tcpSocket(host);
  // The SYN carries synData bytes; the call returns once the handshake is done.
  let clientWritten = writeAll(client, synData, MSG_FASTOPEN, sockaddr(host, port));
  clientWritten += writeAll(client, more);
  const clientPort = localPort(client);
  const accepted = check("accept", libc.accept(server, null, null));
  const serverRead = readUpTo(accepted, synData + more);
  const serverWritten = writeAll(accepted, reply);
  const clientRead = readUpTo(client, reply);
  const [first, second] = closeFirst === "client" ? [client, accepted] : [accepted, client];
  check("shutdown", libc.shutdown(first, SHUT_WR));
  const extra = readUpTo(second, Infinity); // the FIN
  libc.close(second);
  readUpTo(first, Infinity);
  libc.close(first);
  libc.close(server);
  return {
    clientPort,
    serverPort: port,
    client: { written: clientWritten, read: clientRead },
    server: { written: serverWritten, read: serverRead + extra },
  };
}

/** Waits until all but `outstanding` of the segments `fd` sent are acknowledged (tcp_info's tcpi_unacked). */
function waitAcked(fd: number, outstanding = 0): void {
  const info = new Uint8Array(104);
  const view = new DataView(info.buffer);
  for (const deadline = Date.now() + 10_000; ; Bun.sleepSync(5)) {
    check("getsockopt", libc.getsockopt(fd, IPPROTO_TCP, TCP_INFO, info, new Uint32Array([info.byteLength])));
    const unacked = view.getUint32(24, true);
    if (unacked === outstanding) return;
    if (Date.now() > deadline) throw new Error(`${unacked} segments unacknowledged, expected ${outstanding}`);
  }
}

/** Waits until `count` bytes wait unread on `fd` (they are left there). */
function waitUnread(fd: number, count: number): void {
  const buffer = new Uint8Array(count + 1);
  for (const deadline = Date.now() + 10_000; ; Bun.sleepSync(5)) {
    const n = Number(libc.recv(fd, buffer, buffer.byteLength, MSG_PEEK | MSG_DONTWAIT));
    if (n === count) return;
    if (Date.now() > deadline) throw new Error(`${n} bytes unread, expected ${count}`);
  }
}

function ending(host: string, port: number, how: string, firstSide: string) {
  const server = listener(host, false, port);
  const client = tcpSocket(host);
  const to = sockaddr(host, port);
  check("connect", libc.connect(client, to, to.byteLength));
  const accepted = check("accept", libc.accept(server, null, null));
  libc.close(server);
  const sides = {
    client: { port: localPort(client), fd: client, written: 0, received: 0 },
    server: { port, fd: accepted, written: 0, received: 0 },
  };
  const [first, second] = firstSide === "client" ? [sides.client, sides.server] : [sides.server, sides.client];
  const send = (from: typeof first, to: typeof first, count: number) => {
    from.written += writeAll(from.fd, count);
    to.received += readUpTo(to.fd, count);
    waitAcked(from.fd);
  };
  if (how !== "zero") {
    send(sides.client, sides.server, 1000);
    send(sides.server, sides.client, 5000);
  }
  if (how === "zero" || how === "fin") {
    check("shutdown", libc.shutdown(first.fd, SHUT_WR));
    second.received += readUpTo(second.fd, Infinity);
    check("shutdown", libc.shutdown(second.fd, SHUT_WR));
    first.received += readUpTo(first.fd, Infinity);
    waitAcked(second.fd);
    libc.close(first.fd);
    libc.close(second.fd);
  } else {
    // 10 bytes the second side leaves unread: its close() sends a RST instead of a FIN.
    first.written += writeAll(first.fd, 10);
    waitUnread(second.fd, 10);
    waitAcked(first.fd);
    second.received += 10;
    if (how === "shutdown-reset" || how === "fin-unacked") {
      check("shutdown", libc.shutdown(first.fd, SHUT_WR));
      waitAcked(first.fd, how === "fin-unacked" ? 1 : 0);
    } else if (how !== "reset") {
      throw new Error(`--case ${how}: not a case`);
    }
    libc.close(second.fd);
    libc.recv(first.fd, new Uint8Array(1), 1, 0); // returns at the RST (ECONNRESET)
    libc.close(first.fd);
  }
  const report = ({ port, written, received }: typeof first) => ({ port, written, received });
  return { client: report(sides.client), server: report(sides.server) };
}

function fastOpenClient(host: string, port: number, synData: number) {
  const fd = tcpSocket(host);
  const written = writeAll(fd, synData, MSG_FASTOPEN, sockaddr(host, port));
  const clientPort = localPort(fd);
  const got = readUpTo(fd, Infinity);
  // struct linger { int l_onoff; int l_linger; } = { 1, 0 }: close() sends a RST at once
  check("setsockopt", libc.setsockopt(fd, SOL_SOCKET, SO_LINGER, new Int32Array([1, 0]), 8));
  libc.close(fd);
  return { clientPort, written, read: got };
}

function selfConnect(host: string, bytes: number) {
  const fd = tcpSocket(host);
  const address = sockaddr(host, 0);
  check("bind", libc.bind(fd, address, address.byteLength));
  const port = localPort(fd);
  const self = sockaddr(host, port);
  check("connect", libc.connect(fd, self, self.byteLength));
  const written = writeAll(fd, bytes);
  const got = readUpTo(fd, bytes);
  check("shutdown", libc.shutdown(fd, SHUT_WR));
  const fin = readUpTo(fd, Infinity);
  libc.close(fd);
  return { port, written, read: got + fin };
}

/** The Internet checksum of `bytes`. */
function checksum(bytes: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < bytes.length; i += 2) sum += (bytes[i]! << 8) | (bytes[i + 1] ?? 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** A TCP segment (20-byte header, no options, `data` bytes of payload) with its checksum. */
function segment(from: string, to: string, o: { sourcePort: number; port: number; seq: number; ack: number; flags: number; data: number }): Uint8Array {
  const bytes = new Uint8Array(20 + o.data).fill(0x62, 20);
  const tcp = new DataView(bytes.buffer);
  tcp.setUint16(0, o.sourcePort, false);
  tcp.setUint16(2, o.port, false);
  tcp.setUint32(4, o.seq >>> 0, false);
  tcp.setUint32(8, o.ack >>> 0, false);
  tcp.setUint8(12, 5 << 4);
  tcp.setUint8(13, o.flags);
  tcp.setUint16(14, 65535, false);
  const pseudo = new Uint8Array(12 + bytes.length);
  pseudo.set(from.split(".").map(Number), 0);
  pseudo.set(to.split(".").map(Number), 4);
  pseudo[9] = IPPROTO_TCP;
  new DataView(pseudo.buffer).setUint16(10, bytes.length, false);
  pseudo.set(bytes, 12);
  tcp.setUint16(16, checksum(pseudo), false);
  return bytes;
}

function sendRaw(fd: number, to: string, bytes: Uint8Array): void {
  const target = sockaddr(to, 0);
  check("sendto", libc.sendto(fd, ptr(bytes), bytes.length, 0, target, target.byteLength));
}

const SYN = 0x02;
const FIN = 0x01;
const ACK = 0x10;

function finInSynAck(host: string, port: number, data: number) {
  const fd = check("socket", libc.socket(AF_INET, SOCK_RAW, IPPROTO_TCP));
  process.stdout.write(`${JSON.stringify({ event: "listening", port })}\n`);
  const packet = new Uint8Array(65536);
  const view = new DataView(packet.buffer);
  for (;;) {
    const length = check("recv", libc.recv(fd, packet, packet.byteLength, 0));
    const ihl = (packet[0]! & 0x0f) * 4;
    if (view.getUint16(ihl + 2, false) !== port || packet[ihl + 13] !== SYN) continue; // a SYN to us
    const client = Array.from(packet.subarray(12, 16)).join(".");
    const clientPort = view.getUint16(ihl, false);
    const synData = length - ihl - (packet[ihl + 12]! >> 4) * 4;
    // Acknowledges the SYN and its data; our own initial sequence number is arbitrary.
    const ack = view.getUint32(ihl + 4, false) + 1 + synData;
    sendRaw(fd, client, segment(host, client, { sourcePort: port, port: clientPort, seq: 0x2000_0000, ack, flags: SYN | ACK | FIN, data }));
    libc.close(fd);
    return { event: "answered", clientPort, synData };
  }
}

function synData(host: string, to: string, port: number, data: number) {
  const sourcePort = 40_000 + Math.floor(Math.random() * 20_000);
  const fd = check("socket", libc.socket(AF_INET, SOCK_RAW, IPPROTO_TCP));
  sendRaw(fd, to, segment(host, to, { sourcePort, port, seq: 0x1000_0000, ack: 0, flags: SYN, data }));
  libc.close(fd);
  return { sourcePort };
}

function fastOpenServer(host: string): never {
  const fd = listener(host, true);
  process.stdout.write(`${JSON.stringify({ event: "listening", port: localPort(fd) })}\n`);
  for (;;) Bun.sleepSync(1_000);
}

function option(args: string[], name: string): string {
  const at = args.indexOf(name);
  const value = at < 0 ? undefined : args[at + 1];
  if (value === undefined) throw new Error(`${name} is required`);
  return value;
}

if (import.meta.main) {
  const [what, ...args] = process.argv.slice(2);
  const int = (name: string) => Number(option(args, name));
  try {
    const report =
      what === "fastopen"
        ? fastOpen(option(args, "--host"), int("--syn-data"), int("--more"), int("--reply"), option(args, "--close-first"), args.includes("--port") ? int("--port") : 0)
        : what === "fastopen-client"
          ? fastOpenClient(option(args, "--host"), int("--port"), int("--syn-data"))
          : what === "self-connect"
            ? selfConnect(option(args, "--host"), int("--bytes"))
            : what === "fin-in-synack"
              ? finInSynAck(option(args, "--host"), int("--port"), int("--data"))
              : what === "syn-data"
                ? synData(option(args, "--host"), option(args, "--to"), int("--port"), int("--data"))
                : what === "fastopen-server"
                  ? fastOpenServer(option(args, "--host"))
                  : what === "ending"
                    ? ending(option(args, "--host"), int("--port"), option(args, "--case"), option(args, "--first"))
              : null;
    if (report === null) throw new Error(`usage: sockets.ts fastopen|fastopen-client|fastopen-server|syn-data|self-connect|fin-in-synack|ending [options] (got ${what})`);
    process.stdout.write(`${JSON.stringify(report)}\n`);
    process.exit(0);
  } catch (error) {
    process.stderr.write(`sockets.ts ${what}: ${(error as Error).message}\n`);
    process.exit(2);
  }
}
