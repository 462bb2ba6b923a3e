/**
 * scripts/test-kernels: boots each kernel of the matrix (matrix.ts) under qemu and runs the e2e
 * subset (test/kernels/subset.ts) in it against dist/kmesh-accesslog; one line per kernel, exit 0
 * when every kernel passed. docs/kernels.md tells how it works.
 */
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { entryDir, type Kernel, listCandidates, prepare, say } from "./fetch.ts";
import { MATRIX, pick, specById } from "./matrix.ts";
import { killAll, runVm, type VmResult } from "./vm.ts";

const REPO = resolve(import.meta.dir, "../..");
const SUBSET = ["node_modules/.bin/bun", "test", "--timeout", "120000", "./test/kernels/subset.ts"];

const USAGE = `usage: scripts/test-kernels [options] [KERNEL...]

Boots each KERNEL (default: all of ${MATRIX.map((s) => s.id).join(", ")}) from Debian's packages
under qemu and runs the e2e subset in it against dist/kmesh-accesslog.

  --list          the package each kernel stands for today, and whether it is cached
  --shell         a shell in the VM on this terminal instead of the tests (one kernel; Ctrl-A x quits)
  --run CMD       run the shell command CMD in the repository instead of the tests
  --timeout SECS  hard limit per VM (default 1200)
  --keep          keep each run's directory (console, dmesg) and print where it is
`;

interface Options {
  ids: string[];
  list: boolean;
  shell: boolean;
  run: string | null;
  timeoutMs: number;
  keep: boolean;
}

function parseArgs(args: string[]): Options {
  const o: Options = { ids: [], list: false, shell: false, run: null, timeoutMs: 1_200_000, keep: false };
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === "--list") o.list = true;
    else if (a === "--shell") o.shell = true;
    else if (a === "--keep") o.keep = true;
    else if (a === "--run") o.run = args[++i] ?? fail("--run needs a command");
    else if (a === "--timeout") o.timeoutMs = Number(args[++i]) * 1000;
    else if (a === "-h" || a === "--help") {
      process.stdout.write(USAGE);
      process.exit(0);
    } else if (a.startsWith("-")) fail(`unknown option ${a}`);
    else {
      try {
        o.ids.push(specById(a).id);
      } catch (e) {
        fail((e as Error).message);
      }
    }
  }
  if (!(o.timeoutMs > 0)) fail("--timeout needs a number of seconds");
  if (o.ids.length === 0) o.ids = MATRIX.map((s) => s.id);
  if (o.shell && o.ids.length !== 1) fail("--shell boots one kernel: name it");
  return o;
}

function fail(message: string): never {
  process.stderr.write(`test-kernels: ${message}\n\n${USAGE}`);
  process.exit(2);
}

const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;

/** The script the guest runs: in the repository, with a known environment, then `body`. */
function guestScript(kernelId: string, body: string): string {
  const env = {
    PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    HOME: "/root",
    LANG: "C.UTF-8",
    TERM: process.env.TERM ?? "vt100",
    NO_COLOR: "1",
    // tests inside are held to the same rule as outside: under CI, no skip
    CI: process.env.CI ?? "",
    KAL_KERNEL_VM: kernelId,
  };
  const exports = Object.entries(env).map(([k, v]) => `export ${k}=${quote(v)}`);
  // init.sh wrote the taint flags before this script ran
  const taint = "export KAL_TAINTED_AT_BOOT=$(cat /run/kal/tainted-at-boot)";
  return [`cd ${quote(REPO)} || exit 125`, ...exports, taint, body, ""].join("\n");
}

function list(): void {
  const candidates = listCandidates();
  for (const spec of MATRIX) {
    const c = pick(spec, candidates);
    const cached = c !== null && existsSync(join(entryDir(c), "kernel.json"));
    console.log(`${spec.id.padEnd(7)} ${c ? `${c.name} ${c.version} (${c.suite})${cached ? ", cached" : ""}` : "none"}  ${spec.about}`);
  }
}

interface Outcome {
  id: string;
  kernel: Kernel | null;
  vm: VmResult | null;
  ok: boolean;
  why: string;
}

function verdict(vm: VmResult, what: string, timeoutMs: number): { ok: boolean; why: string } {
  if (vm.timedOut) return { ok: false, why: `no result within ${timeoutMs / 1000} s: killed` };
  if (vm.exitCode === null) return { ok: false, why: "the VM ended without a result (see the console above)" };
  if (vm.exitCode !== 0) return { ok: false, why: `${what} exited ${vm.exitCode}` };
  return { ok: true, why: `${what} exited 0` };
}

async function main(): Promise<number> {
  const o = parseArgs(process.argv.slice(2));
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.on(signal, () => {
      killAll();
      process.exit(130);
    });
  }
  if (o.list) {
    list();
    return 0;
  }
  const outcomes: Outcome[] = [];
  for (const id of o.ids) {
    const spec = specById(id);
    let kernel: Kernel;
    try {
      kernel = prepare(spec);
    } catch (e) {
      outcomes.push({ id, kernel: null, vm: null, ok: false, why: `cannot get the kernel: ${(e as Error).message}` });
      continue;
    }
    say(`${id}: booting ${kernel.release} (${kernel.package} ${kernel.version})`);
    const body = o.shell
      ? "exec setsid -c /bin/bash -l </dev/ttyS0 >/dev/ttyS0 2>&1"
      : o.run !== null
        ? o.run
        : SUBSET.map(quote).join(" ");
    const vm = await runVm({
      kernel,
      command: guestScript(id, body),
      visible: REPO,
      timeoutMs: o.timeoutMs,
      interactive: o.shell,
      keep: o.keep,
      onLine: (line) => console.log(`[${id}] ${line}`),
    });
    const v = verdict(vm, o.shell ? "the shell" : o.run !== null ? "the command" : "the tests", o.timeoutMs);
    outcomes.push({ id, kernel, vm, ...v });
    say(`${id}: ${v.ok ? "PASS" : "FAIL"}: ${v.why} (${summary(vm)})${vm.dir ? `; run directory ${vm.dir}` : ""}`);
  }
  console.log("");
  for (const x of outcomes) {
    const k = x.kernel ? `${x.kernel.release} (${x.kernel.package} ${x.kernel.version})` : "-";
    console.log(`${x.ok ? "PASS" : "FAIL"} ${x.id.padEnd(7)} ${k}: ${x.why}${x.vm ? `; ${summary(x.vm)}` : ""}`);
  }
  return outcomes.every((x) => x.ok) ? 0 : 1;
}

function summary(vm: VmResult): string {
  const s = (n: number | null) => (n === null ? "?" : `${n.toFixed(1)} s`);
  return `boot ${s(vm.bootSeconds)}, command ${s(vm.commandSeconds)}, VM ${s(vm.wallSeconds)}, tainted ${vm.taintedAtBoot ?? "?"} → ${vm.taintedAtEnd ?? "?"}`;
}

process.exit(await main());
