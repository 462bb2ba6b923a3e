// The OTLP exporter's CPU cost per report, and why it has its own encoder: reports → the gzipped
// bytes of ExportLogsServiceRequest, as the exporter makes them, by three encoders, each in its own
// process pinned to one core (taskset) so that the JIT, the GC and zlib share that core:
//
//   ours           src/sink/otlp/encode.ts: each LogRecord written straight into the request
//   otlp-transformer  @opentelemetry/otlp-transformer 0.301.1, the maintained package: its
//                  ProtobufLogsSerializer over the SDK's record objects (attributes from the same
//                  table, the body as the text line's string); installed on first use into
//                  ~/.cache/kmesh-accesslog/ (npm), since its peer dependencies clash with the
//                  0.214.0 the tests decode with
//   protobufjs     the code protobufjs generated from the official .proto files (in
//                  @opentelemetry/otlp-transformer 0.214.0, the dev dependency): encode() of
//                  plain message objects
//
// The reports: a busy node's mix (pod names from a 1,000-pod list, both families, services,
// failed attempts, periodic reports), 50,000 of them, encoded in batches of 1,024 (the default
// --otlp-batch-size) and gzipped at level 1 (the exporter's; one row at level 6, zlib's default,
// for the choice); "encode only" rows leave gzip out. The
// figure to beat is 200,000 reports per CPU-second: five times the ~40,000 lines/s of the churn
// benchmark on this VM, the exporter's headroom on one core.
//
//   bun scripts/bench/otlp.ts [--seconds 5] [--rounds 3] [--short]
import { existsSync, mkdirSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { type AccessRecord, KmeshText } from "../../src/accesslog/format.ts";
import { RECORD_ATTRIBUTES } from "../../src/sink/otlp/attributes.ts";
import { LogsRequestWriter } from "../../src/sink/otlp/encode.ts";
import { checkPodList } from "../../src/kube/kubelet/pod-list.ts";
import { busyNodePodList } from "../../test/support/kubelet-pods.ts";
import { seededRandom } from "../../test/support/random.ts";
import { median, option, table } from "./common.ts";

type Encoder = "ours" | "otlp-transformer" | "protobufjs";
const ENCODERS: readonly Encoder[] = ["ours", "otlp-transformer", "protobufjs"];
const short = process.argv.includes("--short");
const BATCH = 1024;
const REPORTS = 50_000;
const PACKAGE = "@opentelemetry/otlp-transformer@0.301.1";
const PACKAGE_DIR = join(process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "kmesh-accesslog", "bench-otlp-transformer-0.301.1");
const NOW_SEC = 1_764_000_000;
const resource: [string, string][] = [
  ["service.name", "kmesh-accesslog"],
  ["service.version", "0.1.0"],
  ["host.name", "kind-worker"],
  ["k8s.node.name", "kind-worker"],
];

// ── The reports ──────────────────────────────────────────────────────────────

function reports(): AccessRecord[] {
  const list = checkPodList(busyNodePodList(1000));
  if (!list.ok) throw new Error(list.problem);
  const pods = list.pods.flatMap((p) => {
    const ips = (p.status?.podIPs ?? []).map((a) => a.ip);
    return p.spec?.hostNetwork || ips.length === 0 ? [] : [{ name: p.metadata.name, namespace: p.metadata.namespace ?? "default", ips }];
  });
  const { int } = seededRandom(12345);
  const out: AccessRecord[] = [];
  for (let i = 0; i < REPORTS; i++) {
    const kind = int(10);
    const src = pods[int(pods.length)]!;
    const dst = pods[int(pods.length)]!;
    const family = int(5) === 0 ? 6 : 4;
    const ip = (p: (typeof pods)[number]) => p.ips.find((a) => a.includes(":") === (family === 6)) ?? p.ips[0]!;
    const remote = kind >= 6 && kind < 8; // to another node or the outside: no name at that end
    const failed = kind === 8;
    const periodic = kind === 9;
    const report = { sec: NOW_SEC + Math.floor(i / 20_000), nsec: int(1e9) };
    const started = { sec: report.sec - int(60), nsec: int(1e9) };
    out.push({
      reportTime: report,
      startTime: int(50) === 0 ? null : started,
      srcAddr: ip(src),
      srcPort: 32768 + int(28000),
      srcWorkload: src.name,
      srcNamespace: src.namespace,
      dstAddr: remote ? (family === 4 ? `10.96.${int(256)}.${int(256)}` : `fd00:10:96::${int(65536).toString(16)}`) : ip(dst),
      dstPort: [80, 443, 8080, 5432, 6379][int(5)]!,
      dstService: remote || int(2) === 0 ? `${dst.name.split("-")[0]}.${dst.namespace}.svc.cluster.local` : null,
      dstWorkload: remote ? null : dst.name,
      dstNamespace: remote ? null : dst.namespace,
      direction: int(2) === 0 ? "OUTBOUND" : "INBOUND",
      state: periodic ? "BPF_TCP_ESTABLISHED" : "BPF_TCP_CLOSE",
      sentBytes: failed ? 0 : int(1 << 20),
      receivedBytes: failed ? 0 : int(1 << 22),
      packetLoss: int(100) === 0 ? 1 + int(5) : 0,
      retransmissions: int(20) === 0 ? 1 + int(10) : 0,
      srttUs: failed ? 0 : 20 + int(5000),
      minRttUs: failed ? 0 : 10 + int(500),
      durationMs: int(50) === 0 ? null : int(1e12) / 1e6,
      error: failed ? "ECONNREFUSED" : null,
      family,
      netns: 4026531840 + int(1000),
      pid: 1000 + int(30_000),
      command: ["nginx", "java", "python3", "envoy"][int(4)]!,
      containerId: `${"0".repeat(56)}${(0x10000000 + int(1000)).toString(16)}`,
      containerName: ["app", "sidecar"][int(2)]!,
    });
  }
  return out;
}

// ── The encoders: a batch of reports → the request's bytes ──────────────────

type Encode = (batch: readonly AccessRecord[], observed: { sec: number; nsec: number }) => Uint8Array;

/** The attributes of a report as the SDK's attribute map (the same table the exporter writes). */
function attributeMap(r: AccessRecord, text: KmeshText): Record<string, string | number> {
  const map: Record<string, string | number> = {};
  const time = new Uint8Array(64);
  for (const spec of RECORD_ATTRIBUTES) {
    const value = spec.value(r);
    if (value === null) continue;
    map[spec.key] = typeof value === "object" ? new TextDecoder().decode(time.subarray(0, text.rfc3339(value, time, 0))) : value;
  }
  return map;
}

async function encoder(name: Encoder): Promise<Encode> {
  const text = new KmeshText();
  switch (name) {
    case "ours": {
      const writer = new LogsRequestWriter(text, resource, { name: "kmesh-accesslog", version: "0.1.0" }, RECORD_ATTRIBUTES);
      return (batch, observed) => {
        for (const r of batch) writer.add(r, observed);
        return writer.finish();
      };
    }
    case "otlp-transformer": {
      const entry = join(PACKAGE_DIR, "node_modules/@opentelemetry/otlp-transformer/dist/index.mjs");
      const { ProtobufLogsSerializer } = (await import(entry)) as { ProtobufLogsSerializer: { serializeRequest(records: unknown[]): Uint8Array } };
      const sdkResource = { attributes: Object.fromEntries(resource), schemaUrl: undefined };
      const scope = { name: "kmesh-accesslog", version: "0.1.0" };
      return (batch, observed) =>
        ProtobufLogsSerializer.serializeRequest(
          batch.map((r) => ({
            hrTime: [r.reportTime.sec, r.reportTime.nsec],
            hrTimeObserved: [observed.sec, observed.nsec],
            severityNumber: 9,
            severityText: "INFO",
            body: text.line(r),
            attributes: attributeMap(r, text),
            droppedAttributesCount: 0,
            resource: sdkResource,
            instrumentationScope: scope,
          })),
        );
    }
    case "protobufjs": {
      const { createRequire } = await import("node:module");
      const root = createRequire(import.meta.url)("@opentelemetry/otlp-transformer/build/src/generated/root.js") as {
        opentelemetry: { proto: { collector: { logs: { v1: { ExportLogsServiceRequest: { encode(m: unknown): { finish(): Uint8Array } } } } } } };
      };
      const request = root.opentelemetry.proto.collector.logs.v1.ExportLogsServiceRequest;
      const ns = (t: { sec: number; nsec: number }) => `${t.sec}${String(t.nsec).padStart(9, "0")}`;
      const anyValue = (v: string | number) =>
        typeof v === "string" ? { stringValue: v } : Number.isInteger(v) ? { intValue: v } : { doubleValue: v };
      const resourceMessage = { attributes: resource.map(([key, value]) => ({ key, value: { stringValue: value } })) };
      return (batch, observed) =>
        request
          .encode({
            resourceLogs: [
              {
                resource: resourceMessage,
                scopeLogs: [
                  {
                    scope: { name: "kmesh-accesslog", version: "0.1.0" },
                    logRecords: batch.map((r) => ({
                      timeUnixNano: ns(r.reportTime),
                      observedTimeUnixNano: ns(observed),
                      severityNumber: 9,
                      severityText: "INFO",
                      body: { stringValue: text.line(r) },
                      attributes: Object.entries(attributeMap(r, text)).map(([key, value]) => ({ key, value: anyValue(value) })),
                    })),
                  },
                ],
              },
            ],
          })
          .finish();
    }
  }
}

// ── A child: one encoder on one core ─────────────────────────────────────────

interface ChildResult {
  encoder: Encoder;
  /** gzip level, 0 for none */
  gzip: number;
  reports: number;
  cpu: number;
  bytes: number;
  gzipped: number;
}

function cpuSeconds(): number {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1e6;
}

async function child(name: Encoder, gzip: number, seconds: number): Promise<void> {
  const all = reports();
  const encode = await encoder(name);
  const observed = { sec: NOW_SEC + 1, nsec: 0 };
  let at = 0;
  const round = (until: number) => {
    let n = 0;
    let bytes = 0;
    let gzipped = 0;
    while (performance.now() < until) {
      const batch = all.slice(at, at + BATCH);
      at = at + BATCH >= all.length ? 0 : at + BATCH;
      const request = encode(batch, observed);
      bytes += request.length;
      if (gzip > 0) gzipped += gzipSync(request, { level: gzip }).length;
      n += batch.length;
    }
    return { n, bytes, gzipped };
  };
  round(performance.now() + Math.min(1_000, seconds * 500)); // warm up the JIT
  const cpu0 = cpuSeconds();
  const { n, bytes, gzipped } = round(performance.now() + seconds * 1000);
  const result: ChildResult = { encoder: name, gzip, reports: n, cpu: cpuSeconds() - cpu0, bytes, gzipped };
  console.log(JSON.stringify(result));
}

// ── The parent ───────────────────────────────────────────────────────────────

function ensurePackage(): void {
  if (existsSync(join(PACKAGE_DIR, "node_modules/@opentelemetry/otlp-transformer/package.json"))) return;
  mkdirSync(PACKAGE_DIR, { recursive: true });
  console.error(`installing ${PACKAGE} into ${PACKAGE_DIR} (once)`);
  const npm = Bun.spawnSync(["npm", "install", "--prefix", PACKAGE_DIR, "--no-save", "--no-audit", "--no-fund", PACKAGE], { stdout: "ignore", stderr: "inherit" });
  if (npm.exitCode !== 0) throw new Error(`npm install ${PACKAGE} failed`);
}

async function runChild(name: Encoder, gzip: number, seconds: number): Promise<ChildResult> {
  const taskset = Bun.which("taskset");
  const cpu = String(Math.max(0, navigator.hardwareConcurrency - 1));
  const argv = [...(taskset ? [taskset, "-c", cpu] : []), process.execPath, import.meta.path, "--child", name, String(gzip), String(seconds)];
  const proc = Bun.spawn(argv, { stdout: "pipe", stderr: "inherit" });
  const [out, code] = await Promise.all([new Response(proc.stdout).text(), proc.exited]);
  if (code !== 0) throw new Error(`otlp bench child (${name}) exited with ${code}`);
  return JSON.parse(out.trim().split("\n").at(-1)!) as ChildResult;
}

if (process.argv[2] === "--child") {
  const [name, gzip, seconds] = process.argv.slice(3);
  await child(name as Encoder, Number(gzip), Number(seconds));
} else {
  const seconds = option("seconds", short ? 0.5 : 5);
  const rounds = option("rounds", short ? 1 : 3);
  ensurePackage();
  const rows: string[][] = [];
  const runs: [Encoder, number][] = [...ENCODERS.map((name) => [name, 1] as [Encoder, number]), ["ours", 6], ...ENCODERS.map((name) => [name, 0] as [Encoder, number])];
  for (const [name, gzip] of runs) {
      const results: ChildResult[] = [];
      // Rounds of each encoder one after the other, so that a busy moment of the machine shows as spread.
      for (let i = 0; i < rounds; i++) results.push(await runChild(name, gzip, seconds));
      const rates = results.map((r) => r.reports / r.cpu);
      const last = results.at(-1)!;
      rows.push([
        `${name}${gzip > 0 ? `, gzip ${gzip}` : ", encode only"}`,
        Math.round(median(rates)).toLocaleString("en-US"),
        `${Math.round(Math.min(...rates)).toLocaleString("en-US")}-${Math.round(Math.max(...rates)).toLocaleString("en-US")}`,
        (median(rates) / 40_000).toFixed(1),
        (last.bytes / last.reports).toFixed(0),
        gzip > 0 ? (last.gzipped / last.reports).toFixed(0) : "-",
      ]);
  }
  console.log(`OTLP encoders: ${REPORTS.toLocaleString("en-US")} reports of a busy node, batches of ${BATCH}, one core, ${rounds} rounds of ${seconds} s`);
  console.log(table(["encoder", "reports/CPU-s (median)", "range", "× churn's 40,000/s", "bytes/report", "gzipped bytes/report"], rows));
}
