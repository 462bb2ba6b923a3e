// The container behind a cgroup: the kernel names a connection's process by its cgroup v2 id (the
// inode number of the cgroup's directory, bpf/accesslog.h), and the container id is in that
// directory's path, as the kubelet's container runtimes lay it out (docs/kubernetes.md):
//   cgroupfs driver  /kubepods/burstable/pod<uid>/<64 hex>
//   systemd driver   /kubepods.slice/kubepods-burstable.slice/kubepods-...-pod<uid>.slice/cri-containerd-<64 hex>.scope
//                    (crio-<64 hex>.scope, docker-<64 hex>.scope likewise)
// A cgroup inside a container's (systemd in a container, say) is that container's too: the path is
// read from its deepest part up.
//
// Ids are found by walking the cgroup2 mounts (from /proc/mounts: /sys/fs/cgroup, or
// /sys/fs/cgroup/unified on a hybrid node) and noting each directory's inode number; the walk is
// done when an id is not known, at most every WALK_INTERVAL_MS and over at most MAX_CGROUPS
// directories. Every mount is walked: in a container with a cgroup namespace of its own,
// /sys/fs/cgroup shows only the container's own cgroups, and the node's hierarchy is a second
// mount (the DaemonSet's hostPath, scripts/deploy/20-daemonset.yaml); an id is the same in every
// view, and the view where its path names a container wins. The kernel never gives an id twice (it counts up), so an id below the highest one a
// walk saw, and not seen by it, belongs to a cgroup that is gone (or out of sight): it is
// remembered as no container.
import { readdirSync, readFileSync, statSync } from "node:fs";

const WALK_INTERVAL_MS = 100;
const MAX_CGROUPS = 100_000;
/** Ids remembered at most; beyond, the memory is cleared (and rebuilt by the next walks). */
const MAX_REMEMBERED = 200_000;

/** A path segment that is a container's cgroup; the id is its first group. */
const CONTAINER_SEGMENT = /^(?:(?:cri-containerd|docker|crio|libpod)-)?([0-9a-f]{64})(?:\.scope)?$/;

/** The container id in a cgroup path, or null when the cgroup is not (inside) a container's. */
export function containerIdOfCgroupPath(path: string): string | null {
  const segments = path.split("/");
  for (let i = segments.length - 1; i >= 0; i--) {
    const match = CONTAINER_SEGMENT.exec(segments[i]!);
    if (match !== null) return match[1]!;
  }
  return null;
}

const unescapeMountField = (field: string) => field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(Number.parseInt(octal, 8)));

/** Mount points of every cgroup2 file system in a /proc/mounts text, in order. */
export function cgroup2Mounts(mounts: string): string[] {
  return mounts
    .split("\n")
    .map((line) => line.split(" "))
    .filter((fields) => fields[2] === "cgroup2" && fields[1] !== undefined)
    .map((fields) => unescapeMountField(fields[1]!));
}

/** This machine's cgroup2 mounts ([] without /proc). */
export function findCgroup2Mounts(): string[] {
  try {
    return cgroup2Mounts(readFileSync("/proc/mounts", "utf8"));
  } catch {
    return [];
  }
}

export class ContainerIds {
  readonly #roots: readonly string[];
  /** cgroup id → container id, null: no container (or gone). */
  readonly #known = new Map<number, string | null>();
  #highestSeen = 0;
  #lastWalkMs = Number.NEGATIVE_INFINITY;
  readonly #nowMs: () => number;
  /** Walks of the cgroup2 mount so far. */
  walks = 0;

  constructor(roots: readonly string[] = findCgroup2Mounts(), nowMs: () => number = () => performance.now()) {
    this.#roots = roots;
    this.#nowMs = nowMs;
  }

  /** The container of cgroup `id` (0: unknown), or null. */
  containerOf(id: number): string | null {
    if (id === 0 || this.#roots.length === 0) return null;
    const known = this.#known.get(id);
    if (known !== undefined) return known;
    const now = this.#nowMs();
    if (now - this.#lastWalkMs < WALK_INTERVAL_MS) return null;
    this.#lastWalkMs = now;
    this.walks++;
    if (this.#known.size > MAX_REMEMBERED) this.#known.clear();
    for (const root of this.#roots) this.#walk(root);
    const found = this.#known.get(id);
    if (found !== undefined) return found;
    if (id < this.#highestSeen) this.#known.set(id, null);
    return null;
  }

  #walk(root: string): void {
    const pending = [""];
    let seen = 0;
    while (pending.length > 0 && seen < MAX_CGROUPS) {
      const relative = pending.pop()!;
      const path = root + relative;
      let ino: number;
      let entries: string[];
      try {
        ino = statSync(path).ino;
        entries = readdirSync(path, { withFileTypes: true }).flatMap((entry) => (entry.isDirectory() ? [entry.name] : []));
      } catch {
        continue; // removed meanwhile
      }
      seen++;
      if (ino > this.#highestSeen) this.#highestSeen = ino;
      if ((this.#known.get(ino) ?? null) === null) this.#known.set(ino, containerIdOfCgroupPath(relative));
      for (const name of entries) pending.push(`${relative}/${name}`);
    }
  }
}
