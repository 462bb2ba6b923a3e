/**
 * Gets a kernel of the matrix from Debian's archive, ready to boot: its packages downloaded with
 * apt under a private configuration (own sources, state and cache: the host's /etc/apt and its
 * installed kernel are never touched), unpacked with `dpkg -x`, the module tree indexed with
 * `depmod -b`. Kept in the cache keyed by package and version, so a kernel is downloaded once:
 *
 *   ${XDG_CACHE_HOME:-~/.cache}/kmesh-accesslog/kernels/
 *     apt/                                 the private apt configuration, lists and lock
 *     linux-image-6.1.0-57-amd64_6.1.192-3/
 *       root/                              the packages' files (boot/, lib/modules/<release>/ or usr/...)
 *       kernel.json                        what this is (written last: its presence means ready)
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { type Candidate, fits, type KernelSpec, MATRIX, parseMadison, pick, SUITES } from "./matrix.ts";

const CACHE = join(process.env.XDG_CACHE_HOME || join(homedir(), ".cache"), "kmesh-accesslog", "kernels");
const APT = join(CACHE, "apt");
const KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg";

/** A kernel unpacked in the cache. */
export interface Kernel {
  id: string;
  package: string;
  version: string;
  suite: string;
  /** `uname -r` */
  release: string;
  dir: string;
  vmlinuz: string;
  /** the directory holding lib/modules/<release> (root/ or root/usr/) */
  modulesBase: string;
  /** how the package compresses its modules */
  moduleCompression: "none" | "xz" | "zst";
  /** bytes of .deb files downloaded for it */
  downloadBytes: number;
  /** seconds spent downloading, unpacking and indexing it */
  prepareSeconds: number;
}

export const say = (message: string) => console.error(`test-kernels: ${message}`);

/** Runs a command to completion; its output, or an error with its stderr. Warnings it printed are said. */
function run(argv: string[], options: { cwd?: string; env?: Record<string, string> } = {}): string {
  const r = Bun.spawnSync(argv, { cwd: options.cwd, env: { ...process.env, ...options.env }, stdout: "pipe", stderr: "pipe" });
  const stderr = r.stderr.toString().trim();
  if (r.exitCode !== 0) throw new Error(`\`${argv.join(" ")}\` failed (exit ${r.exitCode}): ${stderr}`);
  for (const line of stderr.split("\n")) if (line.startsWith("W: ")) say(line);
  return r.stdout.toString();
}

/**
 * Writes the private apt configuration and returns the environment that selects it. APT_CONFIG is
 * read before anything else and points every directory apt would read from /etc/apt at ours.
 */
function aptEnvironment(): Record<string, string> {
  for (const dir of ["etc/apt.conf.d", "etc/sources.list.d", "etc/preferences.d", "etc/trusted.gpg.d", "state/lists/partial", "cache/archives/partial"]) {
    mkdirSync(join(APT, dir), { recursive: true });
  }
  const sources = SUITES.map((suite) => {
    const archive = suite.endsWith("-security") ? "debian-security" : "debian";
    return `deb [signed-by=${KEYRING}] http://deb.debian.org/${archive} ${suite} main\n`;
  }).join("");
  writeFileSync(join(APT, "etc/sources.list"), sources);
  writeFileSync(join(APT, "state/status"), "");
  const conf = [
    `Dir::Etc "${APT}/etc";`,
    `Dir::Etc::main "apt.conf";`,
    `Dir::Etc::parts "apt.conf.d";`,
    `Dir::Etc::sourcelist "sources.list";`,
    `Dir::Etc::sourceparts "sources.list.d";`,
    `Dir::Etc::preferences "preferences";`,
    `Dir::Etc::preferencesparts "preferences.d";`,
    `Dir::Etc::trusted "trusted.gpg";`,
    `Dir::Etc::trustedparts "trusted.gpg.d";`,
    `Dir::State "${APT}/state";`,
    `Dir::State::status "${APT}/state/status";`,
    `Dir::Cache "${APT}/cache";`,
    // Lists kept compressed and one binary cache of them, not two: 150 MB on disk instead of 340.
    `Dir::Cache::srcpkgcache "";`,
    `Acquire::GzipIndexes "true";`,
    `APT::Architecture "amd64";`,
    `APT::Architectures { "amd64"; };`,
    `Acquire::Languages "none";`,
    // The archive a CI machine reaches may be a mirror frozen in time: its Release files can be
    // past their Valid-Until date. Signatures are still checked against the archive keyring.
    `Acquire::Check-Valid-Until "false";`,
    `Acquire::Check-Date "false";`,
    // Downloads land in the cache, which apt's unprivileged download user cannot enter.
    `APT::Sandbox::User "root";`,
  ].join("\n");
  writeFileSync(join(APT, "apt.conf"), `${conf}\n`);
  return { APT_CONFIG: join(APT, "apt.conf") };
}

/** Runs an apt command holding the cache's apt lock (two runs at once take turns). */
function apt(argv: string[], env: Record<string, string>, cwd?: string): string {
  return run(["flock", join(APT, "lock"), ...argv], { env, cwd });
}

let lists: Candidate[] | null = null;

/**
 * Every generic kernel image package of the matrix's suites, from freshly updated lists. When the
 * archive cannot be reached, the lists of the last update are used (and said), so cached kernels
 * still run offline.
 */
export function listCandidates(): Candidate[] {
  if (lists) return lists;
  const env = aptEnvironment();
  try {
    apt(["apt-get", "update", "-qq"], env);
  } catch (e) {
    const have = existsSync(join(APT, "state/lists")) && readdirSync(join(APT, "state/lists")).some((f) => /_Packages(\.\w+)?$/.test(f));
    if (!have) throw e;
    say(`could not update the package lists, using the last ones: ${(e as Error).message}`);
  }
  const names = apt(["apt-cache", "pkgnames", "linux-image-"], env)
    .split("\n")
    .filter((n) => /^linux-image-\d.*-amd64$/.test(n));
  lists = names.length === 0 ? [] : parseMadison(apt(["apt-cache", "madison", ...names], env));
  return lists;
}

/** The cache directory of one package version. */
export function entryDir(c: Candidate): string {
  return join(CACHE, `${c.name}_${c.version}`.replace(/[^A-Za-z0-9._+~-]/g, "_"));
}

/** The kernel `spec` stands for today, from the cache or downloaded now. */
export function prepare(spec: KernelSpec): Kernel {
  const chosen = pick(spec, listCandidates());
  if (!chosen) throw new Error(`no package for ${spec.about} in ${spec.suites.join(", ")}`);
  const dir = entryDir(chosen);
  const ready = join(dir, "kernel.json");
  if (existsSync(ready)) return { ...(JSON.parse(readFileSync(ready, "utf8")) as Kernel), id: spec.id };
  prune(spec);
  say(`${spec.id}: downloading ${chosen.name} ${chosen.version} (${chosen.suite})`);
  const started = performance.now();
  // Built beside its final place and renamed: an interrupted run leaves no half entry.
  const work = `${dir}.partial-${process.pid}`;
  rmSync(work, { recursive: true, force: true });
  try {
    const kernel = unpack(chosen, work, dir);
    kernel.id = spec.id;
    kernel.prepareSeconds = Math.round((performance.now() - started) / 100) / 10;
    writeFileSync(join(work, "kernel.json"), `${JSON.stringify(kernel, null, 2)}\n`);
    try {
      renameSync(work, dir);
    } catch (e) {
      if (!existsSync(ready)) throw e; // else another run made it meanwhile: theirs is as good
    }
    say(`${spec.id}: ${(kernel.downloadBytes / 2 ** 20).toFixed(0)} MiB downloaded and unpacked in ${kernel.prepareSeconds} s`);
    return { ...(JSON.parse(readFileSync(ready, "utf8")) as Kernel), id: spec.id };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/**
 * Removes the cached kernels of `spec` that no kernel of the matrix is any more (an older 6.1 once
 * a newer one is out), before the newer one is downloaded, and what killed runs left half made.
 */
function prune(spec: KernelSpec): void {
  const current = new Set(MATRIX.map((s) => pick(s, listCandidates())).flatMap((c) => (c ? [entryDir(c)] : [])));
  for (const name of readdirSync(CACHE)) {
    const dir = join(CACHE, name);
    const partial = /\.partial-(\d+)$/.exec(name);
    if (partial) {
      // left by a run that was killed (a live one is still building it)
      if (!isAlive(Number(partial[1]))) rmSync(dir, { recursive: true, force: true });
      continue;
    }
    if (current.has(dir) || !existsSync(join(dir, "kernel.json"))) continue;
    const k = JSON.parse(readFileSync(join(dir, "kernel.json"), "utf8")) as Kernel;
    if (!fits(spec, { name: k.package, version: k.version, suite: k.suite })) continue;
    say(`${spec.id}: removing ${name} from the cache: superseded`);
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Downloads and unpacks `c` into `work`; paths in the result are those of `final`. */
function unpack(c: Candidate, work: string, final: string): Kernel {
  const env = aptEnvironment();
  const debs = join(work, "debs");
  const root = join(work, "root");
  mkdirSync(debs, { recursive: true });
  mkdirSync(root);
  // Newer images are a small package depending on the kernel's parts (linux-binary-<release>,
  // linux-modules-<release>, ...): those named after the same release come too.
  const release = c.name.replace(/^linux-image-/, "");
  const depends = /^Depends: (.*)$/m.exec(apt(["apt-cache", "show", `${c.name}=${c.version}`], env))?.[1] ?? "";
  const parts = depends
    .split(/,\s*/)
    .map((d) => d.split(/\s/)[0]!)
    .filter((name) => name !== c.name && name.endsWith(`-${release}`));
  apt(["apt-get", "download", "-qq", ...[c.name, ...parts].map((n) => `${n}=${c.version}`)], env, debs);
  let downloadBytes = 0;
  for (const deb of readdirSync(debs)) {
    downloadBytes += statSync(join(debs, deb)).size;
    run(["dpkg", "-x", join(debs, deb), root]);
  }
  rmSync(debs, { recursive: true });

  const base = [root, join(root, "usr")].find((b) => existsSync(join(b, "lib/modules")) && !isSymlinkedLib(b));
  if (!base) throw new Error(`${c.name} ${c.version} has no lib/modules`);
  const releases = readdirSync(join(base, "lib/modules"));
  if (releases.length !== 1) throw new Error(`${c.name} ${c.version}: expected one module tree, found ${releases.join(", ")}`);
  const uname = releases[0]!;
  const vmlinuz = [join(root, "boot", `vmlinuz-${uname}`), join(base, "lib/modules", uname, "vmlinuz")].find((p) => existsSync(p));
  if (!vmlinuz) throw new Error(`${c.name} ${c.version} has no vmlinuz`);
  run(["depmod", "-b", base, uname]);
  const sample = run(["find", join(base, "lib/modules", uname, "kernel/fs/overlayfs"), "-name", "overlay.ko*"]).trim();
  const moduleCompression = sample.endsWith(".xz") ? "xz" : sample.endsWith(".zst") ? "zst" : "none";
  const moved = (p: string) => p.replace(work, final);
  return {
    id: "",
    package: c.name,
    version: c.version,
    suite: c.suite,
    release: uname,
    dir: final,
    vmlinuz: moved(vmlinuz),
    modulesBase: moved(base),
    moduleCompression,
    downloadBytes,
    prepareSeconds: 0,
  };
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** lib/ of a merged-/usr tree is a symbolic link to usr/lib: its modules are found under usr/. */
function isSymlinkedLib(base: string): boolean {
  try {
    return readdirSync(base, { withFileTypes: true }).find((d) => d.name === "lib")?.isSymbolicLink() ?? false;
  } catch {
    return false;
  }
}
