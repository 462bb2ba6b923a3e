// The agent's hot path, in process, without the kernel: recorded ring-buffer records are replayed
// through the same steps the agent takes for each drain (src/agent.ts #drain and #onRecord: the
// ring-buffer reader → RecordView → the pool's AccessRecords → Enricher with a 1,000-pod index →
// LineSink → /dev/null), once for text and once for JSON, each in its own process pinned to one
// core (taskset), so that the JIT, the GC and its helper threads all share that core. The records
// lie in a ring buffer laid out as the kernel's (headers, 8-byte alignment), big enough for all of
// them; each drain moves the producer position on by a drain's worth, so nothing is copied.
//
// The records file is generated here (deterministic): a node's mix of pod-to-pod connections on
// the node (two records each, IPv4 and dual-stack IPv6), connections to and from other nodes,
// services and the outside (10,000 remote addresses, a few hot and a long tail), kubelet probes
// from the node's own address, failed attempts and periodic reports of long-lived connections,
// 5 µs apart (200,000 records/s), in the conn_record layout (RECORD_SIZE bytes).
//
// Bytes allocated per line: JSC exposes no allocation counter, so the run is bracketed by markers
// on stderr with JSC's GC log on (BUN_JSC_logGC=1): every collection JSC starts on its own logs
// "bytes allocated this cycle: N", the heap's growth since the previous collection, and the sum of
// those between the markers (a full collection just before the first one starts the count at
// zero) is what the GC heap took. Memory from malloc (string buffers, typed-array stores) is not
// in that count: mimalloc's own cumulative counter (malloc_requested, in bun:jsc heapStats) is
// read before and after. The cycle still open at the end (under 8 MB) is not counted.
//
// --stages runs the text path cut short after each step instead (read and decode; + the record;
// + enrichment; the full path), to show where the time goes.
//
// --formatter string formats with the plain string formatter the tests keep as their oracle
// (test/unit/accesslog/format-reference.ts: a string per line, encoded into the sink's chunk) instead of the
// byte writer of src/accesslog/format.ts; --formatter both runs each format with one, then the
// other.
//
//   bun scripts/bench/pipeline.ts [--records 500000] [--seconds 5] [--short] [--stages] [--formatter bytes|string|both] [--profile <dir>]
import { mkdtempSync, rmSync, writeFileSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { heapStats } from "bun:jsc";
import { seededRandom } from "../../test/support/random.ts";
import { Enricher, type NameSource } from "../../src/accesslog/enrich.ts";
import { ReportFilter } from "../../src/accesslog/filters.ts";
import { filtersOf } from "../../src/options.ts";
import { type AccessRecord, JsonLines, KmeshText, type LineFormat, WRITE_SLACK } from "../../src/accesslog/format.ts";
import { AccessRecordPool, BATCH_RECORDS } from "../../src/accesslog/record.ts";
import { LineSink } from "../../src/accesslog/sink.ts";
import { makeClock } from "../../src/kernel/clock.ts";
import { RINGBUF_DISCARD_BIT, RINGBUF_HEADER_BYTES, RingBufferReader } from "../../src/kernel/ring-buffer.ts";
import {
  AF_INET,
  AF_INET6,
  BPF_TCP,
  DIRECTION_INBOUND,
  DIRECTION_OUTBOUND,
  RECORD_ESTABLISHED,
  RECORD_FIELDS as F,
  RECORD_SIZE,
  RecordError,
  RecordView,
} from "../../src/kernel/record.ts";
import { PodIndex } from "../../src/kube/kubelet/pod-index.ts";
import { checkPodList } from "../../src/kube/kubelet/pod-list.ts";
import { podIps } from "../../src/kube/pod.ts";
import { busyNodePodList } from "../../test/support/kubelet-pods.ts";
import { reference } from "../../test/unit/accesslog/format-reference.ts";
import { median, option, table } from "./common.ts";

const short = process.argv.includes("--short");
const PODS = 1000;
const HOST_IP = "172.18.0.3"; // busyNodePodList's node
const BATCH = 4096; // records the agent reads from the ring buffer per read (RECORDS_PER_READ)
const NOW_SEC = 1_764_000_000;

/** CPU seconds this process has used (user + system, every thread). */
function cpuSeconds(): number {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1e6;
}

function podIndex(): PodIndex {
  const list = checkPodList(busyNodePodList(PODS));
  if (!list.ok) throw new Error(list.problem);
  return PodIndex.fromPods(list.pods);
}

// ── The records file ─────────────────────────────────────────────────────────

function generate(path: string, records: number): string {
  const list = checkPodList(busyNodePodList(PODS));
  if (!list.ok) throw new Error(list.problem);
  // The indexed pod IPs, in list order.
  const index = PodIndex.fromPods(list.pods);
  const ips = [...new Set(list.pods.flatMap(podIps))].filter((ip) => index.lookup(ip) !== undefined);
  const pods4 = ips.filter((ip) => !ip.includes(":"));
  const pods6 = ips.filter((ip) => ip.includes(":"));

  const { next, int, pick } = seededRandom(12345);
  const logUniform = (lo: number, hi: number) => Math.floor(lo * (hi / lo) ** next());

  const bytes = new Uint8Array(records * RECORD_SIZE);
  const view = new DataView(bytes.buffer);
  const counts = { pod2pod: 0, ipv6: 0, outbound: 0, inbound: 0, probe: 0, failed: 0, periodic: 0 };
  let n = 0;
  let reportNs = 3_600e9;

  const v4 = (text: string) => text.split(".").map(Number);
  const v6 = (text: string) => {
    const [head = "", tail = ""] = text.split("::");
    const h = head ? head.split(":") : [];
    const t = tail ? tail.split(":") : [];
    const groups = [...h, ...Array<string>(8 - h.length - t.length).fill("0"), ...t].map((g) => Number.parseInt(g, 16));
    return groups.flatMap((g) => [g >> 8, g & 255]);
  };

  function put(o: {
    family: 4 | 6;
    src: string;
    dst: string;
    srcPort: number;
    dstPort: number;
    direction: number;
    state?: number;
    failed?: boolean;
    durationNs: number;
  }): void {
    if (n >= records) return;
    const at = n++ * RECORD_SIZE;
    reportNs += 5000;
    const u64 = (field: { offset: number }, value: number) => view.setBigUint64(at + field.offset, BigInt(value), true);
    u64(F.start_ns, reportNs - o.durationNs);
    u64(F.report_ns, reportNs);
    u64(F.sent_bytes, o.failed ? 0 : logUniform(1, 10_000_000));
    u64(F.received_bytes, o.failed ? 0 : logUniform(1, 10_000_000));
    u64(F.sock_id, 0xffff8881_0000_0000 + at);
    if (o.family === 4) {
      bytes.set(v4(o.src), at + F.src_addr.offset);
      bytes.set(v4(o.dst), at + F.dst_addr.offset);
    } else {
      bytes.set(v6(o.src), at + F.src_addr.offset);
      bytes.set(v6(o.dst), at + F.dst_addr.offset);
    }
    view.setUint16(at + F.src_port.offset, o.srcPort, true);
    view.setUint16(at + F.dst_port.offset, o.dstPort, true);
    view.setUint16(at + F.family.offset, o.family === 4 ? AF_INET : AF_INET6, true);
    view.setUint8(at + F.direction.offset, o.direction);
    view.setUint8(at + F.state.offset, o.state ?? BPF_TCP.CLOSE);
    const srtt = o.failed ? 0 : logUniform(20, 5000);
    view.setUint32(at + F.packets_lost.offset, next() < 0.01 ? int(5) : 0, true);
    view.setUint32(at + F.retransmissions.offset, next() < 0.05 ? int(10) : 0, true);
    view.setUint32(at + F.srtt_us.offset, srtt, true);
    view.setUint32(at + F.min_rtt_us.offset, Math.floor(srtt * next()), true);
    view.setUint32(at + F.netns.offset, 4026531840 + int(PODS), true);
    view.setInt32(at + F.error.offset, o.failed ? pick([111, 110]) : 0, true);
    view.setUint32(at + F.flags.offset, o.failed ? 0 : RECORD_ESTABLISHED, true);
  }

  const ephemeral = () => 32768 + int(28232);
  const servicePort = () => pick([80, 443, 8080, 9090, 5432, 6379, 53]);
  // What a node talks to beyond itself: pods on other nodes, ClusterIPs, outside addresses, a few
  // hot ones (DNS, a database, an API) and a long tail: index = size * u^3.
  const remotes = [
    ...Array.from({ length: 6000 }, () => `10.244.${100 + int(100)}.${2 + int(250)}`),
    ...Array.from({ length: 1000 }, () => `10.96.${int(256)}.${1 + int(254)}`),
    ...Array.from({ length: 3000 }, () => `${1 + int(223)}.${int(256)}.${int(256)}.${1 + int(254)}`),
  ];
  for (let i = remotes.length - 1; i > 0; i--) {
    const j = int(i + 1);
    [remotes[i], remotes[j]] = [remotes[j]!, remotes[i]!];
  }
  const remote4 = () => remotes[Math.floor(remotes.length * next() ** 3)]!;
  const shortLived = () => logUniform(50_000, 60e9);

  while (n < records) {
    const kind = next();
    const client = ephemeral();
    const port = servicePort();
    const durationNs = shortLived();
    if (kind < 0.4) {
      // pod to pod on this node: the client's line, then the server's
      counts.pod2pod++;
      const [src, dst] = [pick(pods4), pick(pods4)];
      put({ family: 4, src, dst, srcPort: client, dstPort: port, direction: DIRECTION_OUTBOUND, durationNs });
      put({ family: 4, src, dst, srcPort: client, dstPort: port, direction: DIRECTION_INBOUND, durationNs: durationNs - 40_000 });
    } else if (kind < 0.5) {
      counts.ipv6++;
      const [src, dst] = [pick(pods6), pick(pods6)];
      put({ family: 6, src, dst, srcPort: client, dstPort: port, direction: DIRECTION_OUTBOUND, durationNs });
      put({ family: 6, src, dst, srcPort: client, dstPort: port, direction: DIRECTION_INBOUND, durationNs: durationNs - 40_000 });
    } else if (kind < 0.75) {
      counts.outbound++;
      put({ family: 4, src: pick(pods4), dst: remote4(), srcPort: client, dstPort: port, direction: DIRECTION_OUTBOUND, durationNs });
    } else if (kind < 0.9) {
      counts.inbound++;
      put({ family: 4, src: remote4(), dst: pick(pods4), srcPort: client, dstPort: port, direction: DIRECTION_INBOUND, durationNs });
    } else if (kind < 0.95) {
      // the kubelet's probes come from the node's own address
      counts.probe++;
      put({ family: 4, src: HOST_IP, dst: pick(pods4), srcPort: client, dstPort: 8080, direction: DIRECTION_OUTBOUND, durationNs: logUniform(100_000, 5e6) });
    } else if (kind < 0.98) {
      counts.failed++;
      put({ family: 4, src: pick(pods4), dst: remote4(), srcPort: client, dstPort: port, direction: DIRECTION_OUTBOUND, failed: true, durationNs: logUniform(50_000, 3e9) });
    } else {
      counts.periodic++;
      put({
        family: 4,
        src: pick(pods4),
        dst: remote4(),
        srcPort: client,
        dstPort: port,
        direction: DIRECTION_OUTBOUND,
        state: BPF_TCP.ESTABLISHED,
        durationNs: logUniform(5e9, 86_400e9),
      });
    }
  }
  writeFileSync(path, bytes);
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  const share = (k: keyof typeof counts) => `${((counts[k] / total) * 100).toFixed(0)}%`;
  return (
    `${records} records (${((records * RECORD_SIZE) / 2 ** 20).toFixed(0)} MiB); connections: pod to pod on the node ${share("pod2pod")} ` +
    `(IPv6 ${share("ipv6")}), to other nodes/services ${share("outbound")}, from them ${share("inbound")}, node probes ${share("probe")}, ` +
    `failed attempts ${share("failed")}, periodic reports ${share("periodic")}; ${pods4.length + pods6.length} pod IPs indexed (${PODS} pods)`
  );
}

// ── One format, in a child process ───────────────────────────────────────────

/** How far down the path a run goes: the full path, or its first steps only (--stages). */
type Stage = "decode" | "record" | "enrich" | "full";
const STAGES: readonly Stage[] = ["decode", "record", "enrich", "full"];

type Formatter = "bytes" | "string";

/** A string formatter as a LineFormat: one string per line, encoded into the sink's chunk. */
function stringFormat(format: (r: AccessRecord) => string): LineFormat {
  const utf8 = new TextEncoder();
  return {
    maxBytes: (r) => 3 * format(r).length,
    write(r, out, at) {
      const line = format(r);
      const { read, written } = utf8.encodeInto(line, out.subarray(at, out.length - WRITE_SLACK));
      if (read < line.length) throw new RangeError("line does not fit");
      return at + written;
    },
  };
}

function lineFormat(format: "text" | "json", formatter: Formatter): LineFormat {
  if (formatter === "bytes") return format === "json" ? new JsonLines() : new KmeshText();
  return stringFormat(format === "json" ? reference.formatJsonLine : reference.formatKmeshLine);
}

interface ChildResult {
  format: "text" | "json";
  formatter: Formatter;
  stage: Stage;
  lines: number;
  /** wall time and CPU time of the measurement */
  seconds: number;
  cpu: number;
  /** lines per CPU second of the median slice */
  medianRate: number;
  mallocBytes: number;
  bytesOut: number;
}

async function child(format: "text" | "json", formatter: Formatter, stage: Stage, path: string, seconds: number): Promise<void> {
  const records = new Uint8Array(await Bun.file(path).arrayBuffer());
  const total = records.length / RECORD_SIZE;
  const index = podIndex();
  const source: NameSource = {
    lookup: (ip) => index.lookup(ip),
    lookupV4: (address) => index.lookupV4(address),
    isNodeAddress: (ip) => index.isNodeAddress(ip),
    completedStartNs: 0, // the last refresh completed before these records: a miss is not a new pod
    answering: true,
    requestRefresh: () => undefined,
  };
  // The agent's clock with a fixed offset: monotonic 0 is NOW_SEC - 1 h.
  const clock = makeClock(NOW_SEC - 3600, 123_456_789, () => 0);
  let bytesOut = 0;
  const devNull = Bun.file("/dev/null").writer();
  const writer = {
    write: (bytes: Uint8Array) => {
      bytesOut += bytes.length;
      return devNull.write(bytes);
    },
    flush: () => devNull.flush(),
  };
  const sink = new LineSink(writer, lineFormat(format, formatter), {
    maxBufferedBytes: 64 << 20,
    notice: (m) => console.error(m),
  });
  let kept: unknown = null; // what a partial run keeps, so that nothing is optimised away
  // As the agent does: the filters (none set) before the sink.
  const filter = new ReportFilter(filtersOf({}));
  const emit = stage === "full" ? (r: AccessRecord) => void (filter.drops(r) === null && sink.add(r)) : (r: AccessRecord) => void (kept = r);
  const enricher = new Enricher({ source, holdNs: 2e9, emit });
  const record = new RecordView();
  const pool = new AccessRecordPool(BATCH_RECORDS);
  let invalid = 0;

  // The records in a ring buffer as the kernel lays them out, the last one followed by a discarded
  // filler to the end of the ring; the doubled mapping's second half is never reached.
  const step = (RECORD_SIZE + RINGBUF_HEADER_BYTES + 7) & ~7;
  let size = 8;
  while (size < total * step + RINGBUF_HEADER_BYTES) size *= 2;
  const data = new ArrayBuffer(2 * size);
  const ringBytes = new Uint8Array(data);
  const ringView = new DataView(data);
  for (let i = 0; i < total; i++) {
    ringView.setUint32(i * step, RECORD_SIZE, true);
    ringBytes.set(records.subarray(i * RECORD_SIZE, (i + 1) * RECORD_SIZE), i * step + RINGBUF_HEADER_BYTES);
  }
  ringView.setUint32(total * step, (size - total * step - RINGBUF_HEADER_BYTES) | RINGBUF_DISCARD_BIT, true);
  const producer = new Uint32Array(2);
  const reader = new RingBufferReader({ consumer: new BigUint64Array(1), producer, data, size });
  let produced = 0; // producer position, bytes (the low word is enough: a pass is under 2^32 bytes)

  // What src/agent.ts does in #onRecord and #endBatch.
  const endBatch = () => {
    enricher.endBatch(0);
    pool.reset();
  };
  const onRecord = (view: DataView, offset: number, length: number) => {
    try {
      const ev = record.select(view, offset, length);
      if (stage === "decode") {
        kept = ev.srcAddr;
        return;
      }
      if (pool.full) endBatch();
      const r = pool.fill(ev, clock);
      if (stage === "record") kept = r;
      else enricher.accept(r, ev.reportNs, ev.srcV4, ev.dstV4);
    } catch (error) {
      if (!(error instanceof RecordError)) throw error;
      invalid++;
    }
  };

  // One drain: the kernel has queued `count` records (the filler after the last one, at the end of
  // the ring), the agent reads them.
  function drainBatch(from: number, count: number): void {
    produced += count * step + (from + count === total ? size - total * step : 0);
    producer[0] = produced >>> 0;
    producer[1] = Math.floor(produced / 2 ** 32);
    enricher.release(0);
    reader.read(onRecord);
    endBatch();
    sink.flush();
  }
  const pass = () => {
    for (let at = 0; at < total; at += BATCH) drainBatch(at, Math.min(BATCH, total - at));
  };

  pass(); // warm-up: JIT, caches
  // Timed in slices of SLICE batches, in CPU time of this process (all its threads: the GC's
  // too) rather than wall time, so that another process on this core does not count against us;
  // the median slice is reported (a slice with a collection in it is slower, one without faster).
  const SLICE = 32;
  const rates: number[] = [];
  let at = 0;
  Bun.gc(true);
  const mallocBefore = (heapStats() as unknown as { mimalloc: { malloc_requested: number } }).mimalloc.malloc_requested;
  writeSync(2, "@@measure-start\n");
  const start = performance.now();
  const cpuStart = cpuSeconds();
  let lines = 0;
  let outBefore = bytesOut;
  while (performance.now() - start < seconds * 1000) {
    const sliceStart = cpuSeconds();
    let sliceLines = 0;
    for (let b = 0; b < SLICE; b++) {
      const count = Math.min(BATCH, total - at);
      drainBatch(at, count);
      sliceLines += count;
      at = at + count === total ? 0 : at + count;
    }
    rates.push(sliceLines / (cpuSeconds() - sliceStart));
    lines += sliceLines;
  }
  const elapsed = (performance.now() - start) / 1000;
  const cpu = cpuSeconds() - cpuStart;
  writeSync(2, "@@measure-end\n");
  const mallocBytes = (heapStats() as unknown as { mimalloc: { malloc_requested: number } }).mimalloc.malloc_requested - mallocBefore;
  outBefore = bytesOut - outBefore;
  await sink.close();
  if (invalid > 0 || sink.linesDropped > 0 || kept === undefined) throw new Error(`${invalid} invalid records, ${sink.linesDropped} lines dropped`);
  const result: ChildResult = { format, formatter, stage, lines, seconds: elapsed, cpu, medianRate: median(rates), mallocBytes, bytesOut: outBefore };
  console.log(JSON.stringify(result));
}

// ── The parent: generate, run both, print the table ──────────────────────────

async function runChild(format: "text" | "json", formatter: Formatter, stage: Stage, path: string, seconds: number, profileDir: string | null) {
  const taskset = Bun.which("taskset");
  const cpu = String(Math.max(0, navigator.hardwareConcurrency - 1));
  const argv = [
    ...(taskset ? [taskset, "-c", cpu] : []),
    process.execPath,
    ...(profileDir ? ["--cpu-prof", "--cpu-prof-md", `--cpu-prof-dir=${profileDir}`] : []),
    import.meta.path,
    "--child",
    format,
    formatter,
    stage,
    path,
    String(seconds),
  ];
  const proc = Bun.spawn(argv, { stdout: "pipe", stderr: "pipe", env: { ...process.env, BUN_JSC_logGC: "1" } });
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  if (code !== 0) throw new Error(`pipeline child (${format}) exited with ${code}:\n${err.split("\n").filter((l) => !l.startsWith("[GC") && !l.includes("GC")).join("\n")}`);
  const result = JSON.parse(out.trim().split("\n").at(-1)!) as ChildResult;
  const window = err.slice(err.indexOf("@@measure-start"), err.indexOf("@@measure-end"));
  let gcBytes = 0;
  let cycles = 0;
  for (const m of window.matchAll(/bytes allocated this cycle: (\d+)/g)) {
    gcBytes += Number(m[1]);
    cycles++;
  }
  return { ...result, gcBytes, cycles, pinned: taskset ? `cpu ${cpu}` : "not pinned (no taskset)" };
}

if (process.argv[2] === "--child") {
  const [format, formatter, stage, path, seconds] = process.argv.slice(3);
  await child(format as "text" | "json", formatter as Formatter, stage as Stage, path!, Number(seconds));
} else {
  const records = option("records", short ? 100_000 : 500_000);
  const seconds = option("seconds", short ? 0.5 : 5);
  const profileAt = process.argv.indexOf("--profile");
  const profileDir = profileAt > 0 ? (process.argv[profileAt + 1] ?? null) : null;
  const dir = mkdtempSync(join(tmpdir(), "kal-pipeline-"));
  try {
    const path = join(dir, "records.bin");
    const described = generate(path, records);
    const rows: string[][] = [];
    let pinned = "";
    const at = process.argv.indexOf("--formatter");
    const chosen = at > 0 ? process.argv[at + 1] : "bytes";
    if (chosen !== "bytes" && chosen !== "string" && chosen !== "both") throw new Error("--formatter takes bytes, string or both");
    const formatters: Formatter[] = chosen === "both" ? ["bytes", "string"] : [chosen];
    const runs = process.argv.includes("--stages")
      ? STAGES.map((stage) => ["text", formatters[0]!, stage] as const)
      : (["text", "json"] as const).flatMap((format) => formatters.map((formatter) => [format, formatter, "full"] as const));
    for (const [format, formatter, stage] of runs) {
      const r = await runChild(format, formatter, stage, path, seconds, profileDir);
      pinned = r.pinned;
      const named = formatter === "bytes" ? format : `${format}, string formatter`;
      rows.push([
        stage === "full" ? named : `${named}, up to ${stage}`,
        Math.round(r.medianRate).toLocaleString("en-US"),
        Math.round(r.lines / r.cpu).toLocaleString("en-US"),
        `${r.lines.toLocaleString("en-US")} in ${r.seconds.toFixed(1)} s (${Math.round(r.lines / r.seconds).toLocaleString("en-US")}/s)`,
        (r.bytesOut / r.lines).toFixed(0),
        (r.gcBytes / r.lines).toFixed(0),
        (r.mallocBytes / r.lines).toFixed(0),
        ((r.gcBytes + r.mallocBytes) / r.lines).toFixed(0),
        String(r.cycles),
      ]);
    }
    console.log(`pipeline: ring buffer → RecordView → AccessRecord → enrich (${PODS} pods) → format → LineSink → /dev/null, one core (${pinned})`);
    console.log(described);
    console.log(
      table(["format", "lines/CPU-s (median slice)", "lines/CPU-s (all)", "lines in wall time", "bytes/line out", "GC heap B/line", "malloc B/line", "allocated B/line", "GCs"], rows),
    );
    if (profileDir) console.log(`CPU profiles (markdown and .cpuprofile) in ${profileDir}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
