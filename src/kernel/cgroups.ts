// The container behind a cgroup: the kernel names a connection's process by its cgroup v2 id (the
// inode number of the cgroup's directory, bpf/accesslog.h), and the container id is in that
// directory's path, as the kubelet's container runtimes lay it out (docs/kubernetes.md):
//   cgroupfs driver  /kubepods/burstable/pod<uid>/<64 hex>
//   systemd driver   /kubepods.slice/kubepods-burstable.slice/kubepods-...-pod<uid>.slice/cri-containerd-<64 hex>.scope
//                    (crio-<64 hex>.scope, docker-<64 hex>.scope likewise)
// A cgroup inside a container's (systemd in a container, say) is that container's too: the path is
// read from its deepest part up.
//
// Ids are found by walking the cgroup2 mount (from /proc/mounts: /sys/fs/cgroup, or
// /sys/fs/cgroup/unified on a hybrid node) and noting each directory's inode number; the walk is
// done when an id is not known, at most every WALK_INTERVAL_MS and over at most MAX_CGROUPS
// directories. The kernel never gives an id twice (it counts up), so an id below the highest one a
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

/** Where the cgroup2 hierarchy is mounted, from the text of /proc/mounts; null when it is not. */
export function cgroup2MountOf(mounts: string): string | null {
  for (const line of mounts.split("\n")) {
    const [, mountPoint, type] = line.split(" ");
    // /proc/mounts writes a space in a path as \040
    if (type === "cgroup2" && mountPoint !== undefined) return mountPoint.replace(/\\040/g, " ");
  }
  return null;
}

/** The node's cgroup2 mount, or null (no /proc, or no cgroup2 mounted). */
export function findCgroup2Mount(): string | null {
  try {
    return cgroup2MountOf(readFileSync("/proc/mounts", "utf8"));
  } catch {
    return null;
  }
}

export class ContainerIds {
  readonly #root: string | null;
  /** cgroup id → container id, null: no container (or gone). */
  readonly #known = new Map<number, string | null>();
  #highestSeen = 0;
  #lastWalkMs = Number.NEGATIVE_INFINITY;
  readonly #nowMs: () => number;
  /** Walks of the cgroup2 mount so far. */
  walks = 0;

  constructor(root: string | null = findCgroup2Mount(), nowMs: () => number = () => performance.now()) {
    this.#root = root;
    this.#nowMs = nowMs;
  }

  /** The cgroup2 mount walked, or null when there is none (then no id is ever known). */
  get root(): string | null {
    return this.#root;
  }

  /** The container of cgroup `id` (0: unknown), or null. */
  containerOf(id: number): string | null {
    if (id === 0 || this.#root === null) return null;
    const known = this.#known.get(id);
    if (known !== undefined) return known;
    const now = this.#nowMs();
    if (now - this.#lastWalkMs < WALK_INTERVAL_MS) return null;
    this.#lastWalkMs = now;
    this.#walk(this.#root);
    const found = this.#known.get(id);
    if (found !== undefined) return found;
    if (id < this.#highestSeen) this.#known.set(id, null);
    return null;
  }

  #walk(root: string): void {
    this.walks++;
    if (this.#known.size > MAX_REMEMBERED) this.#known.clear();
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
      if (!this.#known.has(ino)) this.#known.set(ino, containerIdOfCgroupPath(relative));
      for (const name of entries) pending.push(`${relative}/${name}`);
    }
  }
}
