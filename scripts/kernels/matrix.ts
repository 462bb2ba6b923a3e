/**
 * The kernels scripts/test-kernels boots, and how each one's package is chosen among those the
 * Debian archive offers: the newest version of the generic amd64 flavour within its series and
 * suites. Pure logic, no I/O (test/unit/kernel-matrix.test.ts).
 */

export interface KernelSpec {
  /** what people type: `scripts/test-kernels 6.1` */
  id: string;
  /** what it stands for, for reports */
  about: string;
  /** the upstream series the package must belong to ("5.10" matches 5.10.x); null: any */
  series: string | null;
  /** archive suites it may come from */
  suites: string[];
}

export const SUITES = [
  "bullseye",
  "bullseye-security",
  "bookworm",
  "bookworm-updates",
  "bookworm-security",
  "bookworm-backports",
  "sid",
] as const;

export const MATRIX: KernelSpec[] = [
  { id: "5.10", about: "Debian 11's 5.10", series: "5.10", suites: ["bullseye", "bullseye-security"] },
  { id: "6.1", about: "Debian 12's 6.1", series: "6.1", suites: ["bookworm", "bookworm-security"] },
  {
    id: "6.12",
    about: "Debian 12's 6.12",
    series: "6.12",
    suites: ["bookworm", "bookworm-updates", "bookworm-security", "bookworm-backports"],
  },
  { id: "newest", about: "the newest Debian offers", series: null, suites: [...SUITES] },
];

/** One binary package version as the archive lists it. */
export interface Candidate {
  name: string;
  version: string;
  suite: string;
}

/**
 * The kernel release of a generic amd64 image package (`linux-image-6.1.0-57-amd64` → `6.1.0-57`,
 * `linux-image-7.2.13+deb14-amd64` → `7.2.13+deb14`), or null for anything else: meta packages
 * (`linux-image-amd64`), other flavours (`-cloud-amd64`, `-rt-amd64`), `-unsigned`, `-dbg`.
 */
export function imageRelease(name: string): string | null {
  const m = /^linux-image-(\d+\.\d+\.\d+(?:-[0-9a-z.]+|\+deb\d+)?)-amd64$/.exec(name);
  return m ? m[1]! : null;
}

/** Whether a package is a candidate for `spec`. */
export function fits(spec: KernelSpec, c: Candidate): boolean {
  const release = imageRelease(c.name);
  if (release === null || !spec.suites.includes(c.suite)) return false;
  return spec.series === null || release.startsWith(`${spec.series}.`);
}

/** The newest candidate for `spec` (by Debian version order), or null if there is none. */
export function pick(spec: KernelSpec, candidates: Candidate[]): Candidate | null {
  let best: Candidate | null = null;
  for (const c of candidates) {
    if (fits(spec, c) && (best === null || compareVersions(c.version, best.version) > 0)) best = c;
  }
  return best;
}

/** Finds the spec an id names; throws listing the known ids. */
export function specById(id: string): KernelSpec {
  const spec = MATRIX.find((s) => s.id === id);
  if (!spec) throw new Error(`unknown kernel ${JSON.stringify(id)}: one of ${MATRIX.map((s) => s.id).join(", ")}`);
  return spec;
}

/**
 * Parses `apt-cache madison` output (`name | version | http://host/debian suite/main amd64 Packages`)
 * into candidates; lines for other files (Sources) are left out.
 */
export function parseMadison(text: string): Candidate[] {
  const out: Candidate[] = [];
  for (const line of text.split("\n")) {
    const parts = line.split("|").map((p) => p.trim());
    if (parts.length !== 3) continue;
    const m = /\s(\S+?)\/\S+\s+\S+\s+Packages$/.exec(parts[2]!);
    if (m) out.push({ name: parts[0]!, version: parts[1]!, suite: m[1]! });
  }
  return out;
}

// Debian version order (deb-version(7)): [epoch:]upstream[-revision]; epochs compare as numbers,
// then upstream and revision each as alternating runs of non-digits and digits. Non-digit runs
// compare character by character where `~` sorts before everything, even the end of the run, and
// letters sort before the other characters; digit runs compare as numbers.

function charWeight(s: string, i: number): number {
  if (i >= s.length) return 0;
  const c = s[i]!;
  if (c === "~") return -1;
  if (/[A-Za-z]/.test(c)) return c.charCodeAt(0);
  return c.charCodeAt(0) + 256;
}

function comparePart(a: string, b: string): number {
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    // the non-digit runs
    while ((i < a.length && !isDigit(a[i]!)) || (j < b.length && !isDigit(b[j]!))) {
      const wa = i < a.length && !isDigit(a[i]!) ? charWeight(a, i) : 0;
      const wb = j < b.length && !isDigit(b[j]!) ? charWeight(b, j) : 0;
      if (wa !== wb) return wa < wb ? -1 : 1;
      if (i < a.length && !isDigit(a[i]!)) i++;
      if (j < b.length && !isDigit(b[j]!)) j++;
    }
    // the digit runs, as numbers (an empty run is 0)
    const ra = /^\d*/.exec(a.slice(i))![0];
    const rb = /^\d*/.exec(b.slice(j))![0];
    i += ra.length;
    j += rb.length;
    const na = BigInt(ra || "0");
    const nb = BigInt(rb || "0");
    if (na !== nb) return na < nb ? -1 : 1;
  }
  return 0;
}

function isDigit(c: string): boolean {
  return c >= "0" && c <= "9";
}

function splitVersion(v: string): { epoch: bigint; upstream: string; revision: string } {
  const colon = v.indexOf(":");
  const epoch = colon >= 0 ? BigInt(v.slice(0, colon)) : 0n;
  const rest = colon >= 0 ? v.slice(colon + 1) : v;
  const dash = rest.lastIndexOf("-");
  return dash >= 0
    ? { epoch, upstream: rest.slice(0, dash), revision: rest.slice(dash + 1) }
    : { epoch, upstream: rest, revision: "" };
}

/** Negative, zero or positive as `a` is older than, the same as or newer than `b`. */
export function compareVersions(a: string, b: string): number {
  const x = splitVersion(a);
  const y = splitVersion(b);
  if (x.epoch !== y.epoch) return x.epoch < y.epoch ? -1 : 1;
  return comparePart(x.upstream, y.upstream) || comparePart(x.revision, y.revision);
}
