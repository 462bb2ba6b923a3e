// What the kernel takes to write the agent's lines into its output file, without the agent: the
// system CPU of write(2) per MB of text lines, in the sink's 256 KiB chunks, to a file in the
// temporary directory (churn's output files live there: ext4 on the test VM), to tmpfs
// (/dev/shm), and to /dev/null (the pipeline bench's output). "preallocated" is the same file with
// its blocks allocated ahead of the end by fallocate(FALLOC_FL_KEEP_SIZE), 8 MiB at a time, so
// that ext4's delayed allocation does not reserve each 4 KiB block as it is written (tried for the
// sink and not kept: README, "Where a churn line's CPU goes").
//
// Each round writes --mb MB to each target (a new file each time, removed after), the targets in
// alternating order (reversed every other round); the table gives each target's median and range
// over the rounds. --paced sleeps 7 ms every two writes and rewrites each chunk before it is
// written (churn's rate, about 35 MB/s, and a chunk freshly formatted), instead of writing flat out.
//
//   bun scripts/bench/write.ts [--rounds 5] [--mb 256] [--paced] [--short]
import { dlopen } from "bun:ffi";
import { closeSync, fstatSync, mkdtempSync, openSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DEFAULT_CHUNK_BYTES } from "../../src/accesslog/sink.ts";
import { median, option, table } from "./common.ts";

const short = process.argv.includes("--short");
const paced = process.argv.includes("--paced");
const rounds = option("rounds", short ? 1 : 5);
const megabytes = option("mb", short ? 16 : 256);
const CHUNK = DEFAULT_CHUNK_BYTES;
const LINE_BYTES = 453; // a churn text line
const PREALLOCATE_STEP = 8 << 20;
const FALLOC_FL_KEEP_SIZE = 1;

const libc = dlopen("libc.so.6", {
  // int fallocate(int fd, int mode, off_t offset, off_t len)
  fallocate: { args: ["i32", "i32", "i64", "i64"], returns: "i32" },
}).symbols;

// Line-like bytes: a churn text line repeated over the chunk.
const line = new TextEncoder().encode(
  "2026-12-02 10:00:00.123456789 +0000 UTC m=+12.345678901 accesslog: src.addr=127.0.0.1:45678, src.workload=-, src.namespace=-, dst.addr=127.0.0.1:8080, dst.service=-, dst.workload=-, dst.namespace=-, start_time=2026-12-02 10:00:00.123456789 +0000 UTC, direction=OUTBOUND, state=BPF_TCP_CLOSE, sent_bytes=78, received_bytes=612, packet_loss=0, retransmissions=0, srtt=45us, min_rtt=12us, duration=0.123456ms, note=".padEnd(LINE_BYTES - 1, "x") + "\n",
);
if (line.length !== LINE_BYTES) throw new Error(`the sample line is ${line.length} bytes, not ${LINE_BYTES}`);
const chunk = new Uint8Array(CHUNK);
for (let at = 0; at < CHUNK; at += line.length) chunk.set(line.subarray(0, Math.min(line.length, CHUNK - at)), at);

const dir = mkdtempSync(join(tmpdir(), "kal-write-"));
const shm = mkdtempSync("/dev/shm/kal-write-");
type Target = { name: string; path: string; preallocate: boolean };
const targets: Target[] = [
  { name: `file in ${tmpdir()} (${fsType(tmpdir())})`, path: join(dir, "lines"), preallocate: false },
  { name: `the same, preallocated ${PREALLOCATE_STEP >> 20} MiB ahead (KEEP_SIZE)`, path: join(dir, "lines"), preallocate: true },
  { name: `file in /dev/shm (${fsType("/dev/shm")})`, path: join(shm, "lines"), preallocate: false },
  { name: "/dev/null", path: "/dev/null", preallocate: false },
];

function fsType(path: string): string {
  const out = Bun.spawnSync(["findmnt", "-n", "-o", "FSTYPE", "--target", path]).stdout.toString().trim().split("\n")[0];
  return out === undefined || out === "" ? "?" : out;
}

/** System CPU seconds per MB written. */
async function writeOnce(target: Target): Promise<number> {
  const fd = openSync(target.path, "w");
  const total = megabytes * (1 << 20);
  let allocated = 0;
  const before = process.cpuUsage();
  for (let written = 0, n = 0; written < total; n++) {
    if (paced) {
      for (let i = 0; i < CHUNK; i += 64) chunk[i] = chunk[i]!; // touch the chunk as the formatter does
      if (n % 2 === 0) await Bun.sleep(7);
    }
    if (target.preallocate && written + CHUNK > allocated) {
      if (libc.fallocate(fd, FALLOC_FL_KEEP_SIZE, allocated, PREALLOCATE_STEP) !== 0) throw new Error(`fallocate failed on ${target.path}`);
      allocated += PREALLOCATE_STEP;
    }
    written += writeSync(fd, chunk);
  }
  const cpu = process.cpuUsage(before);
  if (target.path !== "/dev/null" && fstatSync(fd).size !== total) throw new Error(`${target.path}: ${fstatSync(fd).size} bytes, not ${total}`);
  closeSync(fd);
  if (target.path !== "/dev/null") rmSync(target.path);
  return cpu.system / 1e6 / megabytes;
}

try {
  const results = new Map<Target, number[]>(targets.map((t) => [t, []]));
  for (let r = 0; r < rounds; r++) {
    for (const target of r % 2 ? [...targets].reverse() : targets) results.get(target)!.push(await writeOnce(target));
  }
  const linesPerMb = (1 << 20) / LINE_BYTES;
  const rows = targets.map((t) => {
    const s = results.get(t)!;
    const ms = (x: number) => (x * 1000).toFixed(3);
    const ns = (x: number) => ((x * 1e9) / linesPerMb).toFixed(0);
    return [t.name, `${ms(median(s))} (${ms(Math.min(...s))}-${ms(Math.max(...s))})`, `${ns(median(s))} (${ns(Math.min(...s))}-${ns(Math.max(...s))})`];
  });
  console.log(`write: ${rounds} rounds of ${megabytes} MB in ${CHUNK >> 10} KiB writes${paced ? ", paced (7 ms every two writes, each chunk touched first)" : ""}, kernel ${Bun.spawnSync(["uname", "-r"]).stdout.toString().trim()}`);
  console.log(table(["target", "system CPU ms per MB (median, range)", `ns per ${LINE_BYTES}-byte line`], rows));
  console.log(`each round, ms per MB:\n${targets.map((t) => `  ${t.name}: ${results.get(t)!.map((x) => (x * 1000).toFixed(3)).join(" ")}`).join("\n")}`);
} finally {
  rmSync(dir, { recursive: true, force: true });
  rmSync(shm, { recursive: true, force: true });
}
