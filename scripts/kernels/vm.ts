/**
 * Boots a kernel from the cache under qemu with this machine's userland (see init.sh), runs one
 * shell command in it and reads back what happened. Every VM has a hard timeout: qemu is killed by
 * the process id this runner started, and a VM that gave no exit code is a failure, not a hang.
 */
import { createHash } from "node:crypto";
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import type { Subprocess } from "bun";
import type { Kernel } from "./fetch.ts";

const INIT = join(import.meta.dir, "init.sh");
const BUSYBOX = "/bin/busybox";
/** what the initramfs loads: enough for virtio-pci, 9p and overlayfs (and an entropy source) */
const BOOT_MODULES = ["virtio_pci", "9pnet_virtio", "9p", "overlay", "virtio_rng"];

function run(argv: string[]): string {
  const r = Bun.spawnSync(argv, { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`\`${argv.join(" ")}\` failed (exit ${r.exitCode}): ${r.stderr.toString().trim()}`);
  return r.stdout.toString();
}

/** The module files (dependencies first) that BOOT_MODULES need on this kernel; built-in ones need none. */
export function bootModules(kernel: Kernel): string[] {
  const out = run(["modprobe", "-d", kernel.modulesBase, "-S", kernel.release, "--show-depends", "-a", ...BOOT_MODULES]);
  const files = out
    .split("\n")
    .filter((line) => line.startsWith("insmod "))
    .map((line) => line.split(" ")[1]!);
  return [...new Set(files)];
}

/**
 * The initramfs for `kernel`: busybox, init.sh and the boot modules, uncompressed so that loading
 * them needs nothing from busybox or the kernel but plain insmod. Cached beside the kernel, named
 * after a hash of what went into it.
 */
export function initramfs(kernel: Kernel): string {
  const modules = bootModules(kernel);
  const hash = createHash("sha256");
  for (const file of [INIT, BUSYBOX, ...modules]) hash.update(file).update(readFileSync(file));
  const path = join(kernel.dir, `initramfs-${hash.digest("hex").slice(0, 16)}.cpio.gz`);
  if (existsSync(path)) return path;
  const tree = mkdtempSync(join(tmpdir(), "kal-initramfs-"));
  try {
    for (const dir of ["bin", "modules", "proc", "sys", "dev"]) mkdirSync(join(tree, dir));
    copyFileSync(BUSYBOX, join(tree, "bin/busybox"));
    copyFileSync(INIT, join(tree, "init"));
    const order: string[] = [];
    for (const file of modules) {
      const name = basename(file).replace(/\.(xz|zst)$/, "");
      if (/\.(xz|zst)$/.test(file)) decompressTo(file, join(tree, "modules", name));
      else copyFileSync(file, join(tree, "modules", name));
      order.push(name);
    }
    writeFileSync(join(tree, "modules/order"), `${order.join("\n")}\n`);
    chmodSync(join(tree, "init"), 0o755);
    chmodSync(join(tree, "bin/busybox"), 0o755);
    const partial = `${path}.partial-${process.pid}`;
    run(["sh", "-c", 'cd "$1" && find . | cpio -o -H newc --quiet | gzip -1 > "$2"', "sh", tree, partial]);
    run(["mv", "-f", partial, path]);
    // the ones built from an earlier init.sh or busybox
    for (const old of readdirSync(kernel.dir)) {
      if (/^initramfs-[0-9a-f]+\.cpio\.gz$/.test(old) && join(kernel.dir, old) !== path) rmSync(join(kernel.dir, old), { force: true });
    }
    return path;
  } finally {
    rmSync(tree, { recursive: true, force: true });
  }
}

function decompressTo(file: string, to: string): void {
  const tool = file.endsWith(".xz") ? "xz" : "zstd";
  run(["sh", "-c", `${tool} -dc "$1" > "$2"`, "sh", file, to]);
}

export interface VmOptions {
  kernel: Kernel;
  /** a shell script run as root in the guest by /bin/sh; its output goes to the console */
  command: string;
  /** a host directory the guest must see even where it mounts its own /tmp or /run (the clone) */
  visible: string;
  timeoutMs: number;
  /** the console on this terminal (for a shell); otherwise each console line goes to `onLine` */
  interactive?: boolean;
  onLine?: (line: string) => void;
  /** keep the run's directory and say where it is */
  keep?: boolean;
}

export interface VmResult {
  /** the command's exit code; null when the VM ended without one (boot failure, panic, timeout) */
  exitCode: number | null;
  timedOut: boolean;
  /** everything the serial console printed */
  console: string;
  /** seconds from qemu's start to its end */
  wallSeconds: number;
  /** guest uptime when the command started, and how long it ran (guest clock) */
  bootSeconds: number | null;
  commandSeconds: number | null;
  taintedAtBoot: number | null;
  taintedAtEnd: number | null;
  dmesg: string | null;
  /** the run's directory, when kept */
  dir: string | null;
}

const running = new Map<Subprocess, string>();
/** Kills every qemu this process started (by its pid) and removes its run directory: the runner was interrupted. */
export function killAll(): void {
  for (const [proc, dir] of running) {
    proc.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  }
}

/** qemu's option syntax doubles a comma inside a value. */
const opt = (value: string) => value.replaceAll(",", ",,");

export async function runVm(o: VmOptions): Promise<VmResult> {
  // It travels on the kernel's command line, which splits at white space.
  if (/\s/.test(o.visible)) throw new Error(`the path ${JSON.stringify(o.visible)} has white space: clone into a directory without any`);
  const initrd = initramfs(o.kernel);
  const dir = mkdtempSync(join(tmpdir(), `kal-vm-${o.kernel.id}-`));
  const shared = join(dir, "shared");
  mkdirSync(shared);
  writeFileSync(join(shared, "command"), o.command);
  const modules = join(o.kernel.modulesBase, "lib/modules", o.kernel.release);
  const share = (tag: string, path: string, readonly: boolean) => [
    "-fsdev",
    `local,id=${tag},path=${opt(path)},security_model=none,multidevs=remap${readonly ? ",readonly=on" : ""}`,
    "-device",
    `virtio-9p-pci,fsdev=${tag},mount_tag=${tag}`,
  ];
  const argv = [
    "qemu-system-x86_64",
    ...["-nodefaults", "-no-reboot", "-machine", "q35", "-accel", "tcg,thread=single", "-cpu", "max", "-smp", "2", "-m", "2G"],
    ...["-display", "none", "-monitor", "none", "-serial", o.interactive ? "mon:stdio" : "stdio"],
    ...["-kernel", o.kernel.vmlinuz, "-initrd", initrd],
    // panic=-1 with -no-reboot: a panic ends qemu at once instead of waiting for the timeout.
    ...["-append", `console=ttyS0 panic=-1 loglevel=4 kal_visible=${o.visible}`],
    ...share("hostroot", "/", true),
    ...share("modules", modules, true),
    ...share("results", shared, false),
    ...["-device", "virtio-rng-pci"],
  ];
  const started = performance.now();
  const proc = Bun.spawn(argv, {
    stdin: o.interactive ? "inherit" : "ignore",
    stdout: o.interactive ? "inherit" : "pipe",
    stderr: "pipe",
  });
  running.set(proc, dir);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    proc.kill("SIGKILL");
  }, o.timeoutMs);
  const consoleText = o.interactive ? Promise.resolve("") : readLines(proc.stdout as ReadableStream<Uint8Array>, o.onLine);
  const stderr = new Response(proc.stderr).text();
  await proc.exited;
  clearTimeout(timer);
  running.delete(proc);
  const wallSeconds = (performance.now() - started) / 1000;
  const read = (name: string) => (existsSync(join(shared, name)) ? readFileSync(join(shared, name), "utf8").trim() : null);
  const num = (name: string) => {
    const text = read(name);
    return text === null || text === "" ? null : Number(text);
  };
  const [atStart, atEnd] = [num("uptime-at-start"), num("uptime-at-end")];
  const qemuErrors = (await stderr).trim();
  const result: VmResult = {
    exitCode: num("exit-code"),
    timedOut,
    console: (await consoleText) + (qemuErrors ? `\n[qemu] ${qemuErrors}\n` : ""),
    wallSeconds,
    bootSeconds: atStart,
    commandSeconds: atStart !== null && atEnd !== null ? atEnd - atStart : null,
    taintedAtBoot: num("tainted-at-boot"),
    taintedAtEnd: num("tainted-at-end"),
    dmesg: read("dmesg.txt"),
    dir: o.keep ? dir : null,
  };
  if (o.keep) writeFileSync(join(dir, "console.log"), result.console);
  else rmSync(dir, { recursive: true, force: true });
  return result;
}

/** Reads a stream to its end, handing each complete line to `onLine`; returns the whole text. */
async function readLines(stream: ReadableStream<Uint8Array>, onLine?: (line: string) => void): Promise<string> {
  const decoder = new TextDecoder();
  let all = "";
  let pending = "";
  for await (const chunk of stream) {
    const text = decoder.decode(chunk, { stream: true });
    all += text;
    pending += text;
    const lines = pending.split("\n");
    pending = lines.pop()!;
    for (const line of lines) onLine?.(line.replace(/\r$/, ""));
  }
  if (pending) onLine?.(pending);
  return all;
}
