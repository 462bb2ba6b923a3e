/**
 * Reads and rewrites a running agent's connections map (with bpftool), so that a test can put the
 * map in the state the kernel would leave it in when it skips the probe: an entry the probe's run
 * at ESTABLISHED never touched, an entry whose close was never seen, an entry whose socket's
 * memory now holds another connection. The entry layout is CONN_STATE_FIELDS (checked against
 * the object's BTF by test/kernel/record-layout.test.ts). Also what the kernel says of an agent's
 * probe: the events its programs are attached to, a map's size.
 */
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { CONN_STATE_FIELDS, CONN_STATE_SIZE, PROBE_SWITCHES_FIELDS } from "../../src/kernel/probe.ts";
import { run } from "./node.ts";

export interface ConnState {
  startNs: bigint;
  /** the last 32 bits of the peer's address, as bytes in network order read as a big-endian number */
  remoteAddr: number;
  remotePort: number;
  /** 0 until known */
  localPort: number;
  direction: number;
  flags: number;
}

export interface ConnEntry {
  /** the socket's kernel address */
  key: bigint;
  state: ConnState;
}

/** Why these helpers cannot run here (they drive bpftool), or null. */
export function bpftoolUnavailableReason(): string | null {
  return Bun.which("bpftool") ? null : "bpftool is not installed (scripts/setup installs it)";
}

/** The id of the map called `name` that process `pid` holds open. */
export function agentMapId(pid: number, name: string): number {
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    let target: string;
    try {
      target = readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      continue;
    }
    if (target !== "anon_inode:bpf-map") continue;
    const id = /^map_id:\s*(\d+)$/m.exec(readFileSync(`/proc/${pid}/fdinfo/${fd}`, "utf8"))?.[1];
    if (id === undefined) continue;
    const shown = JSON.parse(run(["bpftool", "-j", "map", "show", "id", id]).stdout) as { name?: string };
    if (shown.name === name) return Number(id);
  }
  throw new Error(`process ${pid} holds no BPF map called ${name}`);
}

/** The size (max_entries) of the map called `name` that process `pid` holds open. */
export function agentMapSize(pid: number, name: string): number {
  const shown = JSON.parse(run(["bpftool", "-j", "map", "show", "id", String(agentMapId(pid, name))]).stdout) as { max_entries: number };
  return shown.max_entries;
}

/**
 * The kernel events process `pid`'s BPF programs are attached to, as the kernel lists them
 * (bpftool perf: each attachment it holds, e.g. "tracepoint sys_exit_accept4",
 * "raw_tracepoint inet_sock_set_state"), sorted.
 */
export function attachedEvents(pid: number): string[] {
  const attached = JSON.parse(run(["bpftool", "-j", "perf", "list"]).stdout) as { pid: number; fd_type: string; tracepoint?: string; func?: string }[];
  return attached.filter((a) => a.pid === pid).map((a) => `${a.fd_type} ${a.tracepoint ?? a.func ?? "?"}`).sort();
}

const hex = (bytes: Uint8Array) => Array.from(bytes, (b) => `0x${b.toString(16).padStart(2, "0")}`);
const fromHex = (words: string[]) => Uint8Array.from(words, (w) => Number.parseInt(w, 16));

function encodeKey(key: bigint): Uint8Array {
  const bytes = new Uint8Array(8);
  new DataView(bytes.buffer).setBigUint64(0, key, true);
  return bytes;
}

function decodeState(bytes: Uint8Array): ConnState {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const f = CONN_STATE_FIELDS;
  return {
    startNs: view.getBigUint64(f.start_ns.offset, true),
    remoteAddr: view.getUint32(f.remote_addr.offset, false),
    remotePort: view.getUint16(f.remote_port.offset, false),
    localPort: view.getUint16(f.local_port.offset, false),
    direction: view.getUint8(f.direction.offset),
    flags: view.getUint8(f.flags.offset),
  };
}

function encodeState(state: ConnState): Uint8Array {
  const bytes = new Uint8Array(CONN_STATE_SIZE);
  const view = new DataView(bytes.buffer);
  const f = CONN_STATE_FIELDS;
  view.setBigUint64(f.start_ns.offset, state.startNs, true);
  view.setUint32(f.remote_addr.offset, state.remoteAddr, false);
  view.setUint16(f.remote_port.offset, state.remotePort, false);
  view.setUint16(f.local_port.offset, state.localPort, false);
  view.setUint8(f.direction.offset, state.direction);
  view.setUint8(f.flags.offset, state.flags);
  return bytes;
}

/** Every entry of the map. */
export function dumpConnections(mapId: number): ConnEntry[] {
  const out = run(["bpftool", "-j", "map", "dump", "id", String(mapId)]).stdout;
  const entries = (JSON.parse(out) ?? []) as { key: string[]; value: string[] }[];
  return entries.map((e) => ({
    key: new DataView(fromHex(e.key).buffer).getBigUint64(0, true),
    state: decodeState(fromHex(e.value)),
  }));
}

/** The IPv4 address a.b.c.d as ConnState.remoteAddr holds it. */
export function ipv4Word(address: string): number {
  return address.split(".").reduce((word, byte) => word * 256 + Number(byte), 0);
}

/** The entries whose peer is `address`:`port` (IPv4). */
export function entriesTo(mapId: number, address: string, port: number): ConnEntry[] {
  const word = ipv4Word(address);
  return dumpConnections(mapId).filter((e) => e.state.remotePort === port && e.state.remoteAddr === word);
}

export function writeEntry(mapId: number, entry: ConnEntry): void {
  run(["bpftool", "map", "update", "id", String(mapId), "key", ...hex(encodeKey(entry.key)), "value", ...hex(encodeState(entry.state))]);
}

export function deleteEntry(mapId: number, key: bigint): void {
  run(["bpftool", "map", "delete", "id", String(mapId), "key", ...hex(encodeKey(key))]);
}

export function hasEntry(mapId: number, key: bigint): boolean {
  return dumpConnections(mapId).some((e) => e.key === key);
}

/**
 * Sets the test switch of agent `pid`'s probe (its .data map): the closes of `port` ignored (0:
 * none). The other switches keep their values.
 */
export function ignoreCloses(pid: number, port: number): void {
  const id = String(agentMapId(pid, "kmesh_ac.data"));
  const shown = JSON.parse(run(["bpftool", "-j", "map", "lookup", "id", id, "key", "0", "0", "0", "0"]).stdout) as { value: string[] };
  const value = fromHex(shown.value);
  new DataView(value.buffer).setUint16(PROBE_SWITCHES_FIELDS.ignore_close_port.offset, port, true);
  run(["bpftool", "map", "update", "id", id, "key", "0", "0", "0", "0", "value", ...hex(value)]);
}
