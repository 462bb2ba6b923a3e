// The peer of an admin connection, from the kernel's socket table: the table's text format (real
// rows, taken from /proc/net/tcp and tcp6 on this machine), and findTcpPeer against real sockets
// of this process, which must find its own uid, pid and command.
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import net from "node:net";
import { findRows, findTcpPeer, tableKey } from "../../../src/admin/peer.ts";

const LOOPBACK = new Uint8Array([127, 0, 0, 1]);
const V6_LOOPBACK = new Uint8Array(16);
V6_LOOPBACK[15] = 1;

describe("the table's keys", () => {
  test("each 32-bit word in host byte order, the port in four hex digits", () => {
    expect(tableKey(LOOPBACK, 15200, true)).toBe("0100007F:3B60");
    expect(tableKey(LOOPBACK, 15200, false)).toBe("7F000001:3B60");
    expect(tableKey(new Uint8Array([10, 244, 2, 79]), 40114, true)).toBe("4F02F40A:9CB2");
    expect(tableKey(V6_LOOPBACK, 1, true)).toBe("00000000000000000000000001000000:0001");
    const mapped = new Uint8Array([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1]);
    expect(tableKey(mapped, 65535, true)).toBe("0000000000000000FFFF00000100007F:FFFF");
  });
});

// Rows as the kernel writes them (trailing fields cut): a listener, the peer's socket, the
// agent's end of the same connection, an ownerless FIN_WAIT2 entry, another peer of port 9999.
const TCP_TEXT = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:3B60 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 21657 1 0000000000000000 100 0 0 10 0
   1: 0100007F:9CB2 0100007F:3B60 01 00000000:00000000 00:00000000 00000000 65534        0 88412 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:3B60 0100007F:9CB2 01 00000000:00000000 00:00000000 00000000     0        0 88413 1 0000000000000000 20 4 30 10 -1
   3: 0100007F:9CBB 0100007F:3B60 05 00000000:00000000 03:00001754 00000000     0        0 0 3 0000000000000000
   4: 0100007F:9CB3 0100007F:270F 01 00000000:00000000 00:00000000 00000000  1000        0 88500 1 0000000000000000 20 4 30 10 -1
`;
const TCP6_TEXT = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:D431 00000000000000000000000001000000:3B60 01 00000000:00000000 00:00000000 00000000     0        0 90001 1 0000000000000000 20 4 30 10 -1
`;

const TCP = Buffer.from(TCP_TEXT, "latin1");
const TCP6 = Buffer.from(TCP6_TEXT, "latin1");

describe("rows", () => {
  test("the row whose local end is the peer and whose remote port is ours: its owner and inode", () => {
    expect(findRows(TCP, "0100007F:9CB2", 15200)).toEqual([{ uid: 65534, inode: 88412 }]);
    expect(findRows(TCP6, "00000000000000000000000001000000:D431", 15200)).toEqual([{ uid: 0, inode: 90001 }]);
  });

  test("a remote end is never taken for a local one, nor a connection to another port", () => {
    // 0100007F:3B60 is the listener's local end and the remote end of rows 1 and 3.
    expect(findRows(TCP, "0100007F:3B60", 40114)).toEqual([{ uid: 0, inode: 88413 }]);
    expect(findRows(TCP, "0100007F:9CB3", 15200)).toEqual([]);
    expect(findRows(TCP, "0100007F:9CB4", 15200)).toEqual([]);
  });

  test("a closed socket's entry is returned as the kernel writes it: uid 0, inode 0 (the caller refuses it)", () => {
    expect(findRows(TCP, "0100007F:9CBB", 15200)).toEqual([{ uid: 0, inode: 0 }]);
  });

  test("the real tables of this machine parse (every row of every local end)", () => {
    for (const table of ["tcp", "tcp6"]) {
      const bytes = readFileSync(`/proc/self/net/${table}`);
      for (const line of bytes.toString("latin1").split("\n").slice(1, 50)) {
        const [, local, remote, , , , , uid, , inode] = line.trim().split(/\s+/);
        if (local === undefined || remote === undefined) continue;
        const port = Number.parseInt(remote.split(":")[1]!, 16);
        expect(findRows(bytes, local, port)).toContainEqual({ uid: Number(uid), inode: Number(inode) });
      }
    }
  });
});

describe("findTcpPeer, against real sockets of this process", () => {
  async function connected(host: string) {
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(0, host, resolve));
    const port = (server.address() as net.AddressInfo).port;
    const client = net.connect(port, host);
    await new Promise<void>((resolve) => client.once("connect", () => resolve()));
    return {
      port,
      client,
      [Symbol.asyncDispose]: async () => {
        client.destroy();
        await new Promise((resolve) => server.close(resolve));
      },
    };
  }
  const me = () => ({
    uid: process.getuid!(),
    pid: process.pid,
    command: readFileSync("/proc/self/comm", "utf8").trim(),
  });

  test.each(["127.0.0.1", "::1"])("%s: this process's uid, pid, command and groups", async (host) => {
    await using c = await connected(host);
    const peer = await findTcpPeer({ address: c.client.localAddress!, port: c.client.localPort! }, c.port);
    const address = host.includes(":") ? `[${host}]:${c.client.localPort}` : `${host}:${c.client.localPort}`;
    expect(peer).toEqual({ address, ...me(), groups: [process.getegid!(), ...process.getgroups!()] });
  });

  test("an IPv4 client as Bun names it on a dual-stack listener (::ffff:127.0.0.1) is the same peer", async () => {
    await using c = await connected("127.0.0.1");
    const peer = await findTcpPeer({ address: "::ffff:127.0.0.1", port: c.client.localPort! }, c.port);
    expect(peer).toMatchObject({ address: `127.0.0.1:${c.client.localPort}`, ...me() });
  });

  test("an end that is no socket of this namespace, or connected to another port: unknown, and why", async () => {
    await using c = await connected("127.0.0.1");
    const nobody = { uid: null, pid: null, command: null, groups: null };
    expect(await findTcpPeer({ address: "10.255.255.1", port: 40000 }, c.port)).toEqual({
      address: "10.255.255.1:40000",
      ...nobody,
      unknown: "no socket of the agent's network namespace is that end: it came from another namespace or host",
    });
    expect(await findTcpPeer({ address: "127.0.0.1", port: c.client.localPort! }, c.port + 1)).toMatchObject(nobody);
    expect(await findTcpPeer({ address: "not-an-ip", port: 1 }, c.port)).toEqual({
      address: "not-an-ip:1",
      ...nobody,
      unknown: '"not-an-ip" is not an IP address',
    });
  });
});
