// The benchmark scripts run in their short mode (a few seconds each), so that they cannot rot:
// each must exit 0 and print its table. The figures are not checked here: the targets are read
// from full runs (README, "Performance").
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { hasCommand, IS_ROOT, testIf } from "./support/require.ts";

const ROOT = join(import.meta.dir, "..");
const bun = process.execPath;

async function runBench(script: string, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const proc = Bun.spawn([bun, join(ROOT, "scripts/bench", script), "--short", ...args], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { code, stdout, stderr };
}

/** A markdown table: a header row, the separator, and at least one row. */
function expectTable(stdout: string, firstColumn: string): void {
  const lines = stdout.split("\n");
  const header = lines.findIndex((l) => l.startsWith(`| ${firstColumn}`));
  expect(header, stdout).toBeGreaterThanOrEqual(0);
  expect(lines[header + 1]).toMatch(/^\|-+\|/);
  expect(lines[header + 2]).toMatch(/^\| .+ \|$/);
}

describe("benchmarks, short mode", () => {
  test("pipeline", async () => {
    const r = await runBench("pipeline.ts");
    expect(r.code, r.stderr).toBe(0);
    expectTable(r.stdout, "format");
    expect(r.stdout).toContain("| text ");
    expect(r.stdout).toContain("| json ");
  }, 120_000);

  test("metrics", async () => {
    const r = await runBench("metrics.ts");
    expect(r.code, r.stderr).toBe(0);
    expectTable(r.stdout, "pods (running, not hostNetwork)");
  }, 120_000);

  // Installs @opentelemetry/otlp-transformer 0.301.1 into ~/.cache with npm on its first run.
  test("otlp", async () => {
    const r = await runBench("otlp.ts");
    expect(r.code, r.stderr).toBe(0);
    expectTable(r.stdout, "encoder");
    for (const row of ["ours, gzip 1", "otlp-transformer, gzip 1", "protobufjs, gzip 1", "ours, encode only"]) expect(r.stdout).toContain(`| ${row} `);
  }, 180_000);

  test("write", async () => {
    const r = await runBench("write.ts");
    expect(r.code, r.stderr).toBe(0);
    expectTable(r.stdout, "target");
    for (const row of ["the same, preallocated 8 MiB ahead (KEEP_SIZE)", "file in /dev/shm (tmpfs)", "/dev/null"]) expect(r.stdout).toContain(`| ${row} `);
  }, 120_000);

  const needsRoot = "the benchmarks load the agent's BPF probe: they need root";

  testIf(IS_ROOT, needsRoot)("burst", async () => {
    const r = await runBench("burst.ts");
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    expectTable(r.stdout, "ring buffer");
  }, 120_000);

  testIf(IS_ROOT, needsRoot)("report-walk", async () => {
    const r = await runBench("report-walk.ts");
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    expectTable(r.stdout, "keeping");
    // Every socket of the 200 connections, and the machine's other connections, seeded at start.
    for (const way of ["socket-table", "hash-map"]) {
      const reported = new RegExp(`^\\| ${way} +\\| 200 +\\| ([\\d,]+) `, "m").exec(r.stdout)?.[1];
      expect(Number(reported?.replaceAll(",", "")), r.stdout).toBeGreaterThanOrEqual(400);
    }
  }, 120_000);

  testIf(IS_ROOT, needsRoot)("footprint", async () => {
    const r = await runBench("footprint.ts", "--hold", "2");
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    expectTable(r.stdout, "agent");
    expect(r.stdout).toMatch(/^\| \+ 2 s more \(\d+ refreshes, \d+ reports\) /m);
    expectTable(r.stdout, "exec → GET /debug/ready 200");
  }, 120_000);

  testIf(IS_ROOT && hasCommand("curl"), `${needsRoot}, and curl`)("admin-access", async () => {
    const r = await runBench("admin-access.ts");
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    expectTable(r.stdout, "open connections");
  }, 120_000);

  testIf(IS_ROOT && hasCommand("openssl"), `${needsRoot}, and openssl`)("feed", async () => {
    const r = await runBench("feed.ts");
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    expectTable(r.stdout, "pods");
    expectTable(r.stdout, "agent");
  }, 120_000);

  testIf(IS_ROOT, needsRoot)("syscalls", async () => {
    const r = await runBench("syscalls.ts");
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    expectTable(r.stdout, "agent");
    expect(r.stdout).toContain("| hooks only (--accesslog=false --output text) ");
    expect(r.stdout).toContain("| socket + listen + close ns |");
  }, 120_000);

  // Installs wrk and nginx-light with apt-get when they are missing.
  testIf(IS_ROOT, needsRoot)("churn", async () => {
    const r = await runBench("churn.ts");
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    expectTable(r.stdout, "agent");
  }, 300_000);

  // Each round after an unmeasured load: the line count still covers both loads.
  testIf(IS_ROOT, needsRoot)("churn --warm", async () => {
    const r = await runBench("churn.ts", "--no-peers", "--warm", "1");
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    expect(r.stdout).toContain("rounds of 1s after 1s of the same load (unmeasured)");
    expectTable(r.stdout, "agent");
    for (const mode of ["off", "text", "json"]) expect(r.stderr).toMatch(new RegExp(`^round 1, ${mode}: \\d+ connections/s$`, "m"));
  }, 300_000);

  // The build against itself: both agents at once, each line counted in both files.
  testIf(IS_ROOT, needsRoot)("churn --side-by-side", async () => {
    const r = await runBench("churn.ts", "--no-peers", "--compare", join(ROOT, "dist/kmesh-accesslog"), "--side-by-side");
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    expectTable(r.stdout, "output");
    expect(r.stdout).toContain("| text ");
    expect(r.stdout).toContain("| json ");
  }, 300_000);
});
