// Small shared pieces of the benchmark scripts.
import { existsSync } from "node:fs";
import { join } from "node:path";

export const ROOT = join(import.meta.dir, "../..");

/** `--name <number>` from the command line, else the default. */
export function option(name: string, fallback: number): number {
  const at = process.argv.indexOf(`--${name}`);
  if (at < 0) return fallback;
  const value = Number(process.argv[at + 1]);
  if (!Number.isFinite(value) || value <= 0) {
    console.error(`--${name} takes a positive number, got ${process.argv[at + 1]}`);
    process.exit(2);
  }
  return value;
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? (sorted[mid] ?? Number.NaN) : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2;
}

export function table(head: string[], rows: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join(" | ")} |`;
  return [line(head), `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`, ...rows.map(line)].join("\n");
}

/** Installs the Debian packages providing the given commands when missing. */
export function ensurePackages(commandToPackage: Record<string, string>): void {
  const missing = Object.entries(commandToPackage).filter(([command]) => Bun.which(command) === null);
  if (missing.length === 0) return;
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  Bun.spawnSync(["apt-get", "update", "-qq"], { env, stdout: "ignore" });
  const install = Bun.spawnSync(["apt-get", "install", "-y", "-qq", ...missing.map(([, pkg]) => pkg)], {
    env,
    stdout: "ignore",
    stderr: "inherit",
  });
  if (install.exitCode !== 0) throw new Error(`could not install ${missing.map(([, p]) => p).join(" ")}`);
}

/** Mounts tracefs at /sys/kernel/tracing when it is not there (machines of this kind boot without it). */
export function ensureTracefs(): void {
  if (existsSync("/sys/kernel/tracing/events")) return;
  const mounted = Bun.spawnSync(["mount", "-t", "tracefs", "nodev", "/sys/kernel/tracing"], { stderr: "pipe" });
  if (mounted.exitCode !== 0) throw new Error(`could not mount tracefs at /sys/kernel/tracing: ${mounted.stderr.toString()}`);
}

/** The compiled agent, built when missing. */
export function ensureBinary(): string {
  const binary = join(ROOT, "dist/kmesh-accesslog");
  if (!existsSync(binary)) {
    const build = Bun.spawnSync([join(ROOT, "scripts/build")], { stdout: "inherit", stderr: "inherit" });
    if (build.exitCode !== 0) throw new Error("scripts/build failed");
  }
  return binary;
}

/** Reads a child's stdout line by line: each call resolves with the next line; throws `ended` at its end. */
export function lineReader(stdout: ReadableStream<Uint8Array<ArrayBuffer>>, ended: string): () => Promise<string> {
  const reader = stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  return async () => {
    for (;;) {
      const nl = buffered.indexOf("\n");
      if (nl >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        return line;
      }
      const { value, done } = await reader.read();
      if (done) throw new Error(ended);
      buffered += value;
    }
  };
}
