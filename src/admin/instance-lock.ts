// One agent per node: an exclusive flock(2) on a lock file that holds the
// owner's pid and admin address. The kernel drops the lock when the process
// ends however it ends (kill -9 included), so a lock is never stale: the file
// may remain, but nobody holds it and the next agent takes it over. Works with
// the admin API disabled.
import { closeSync, fstatSync, ftruncateSync, mkdirSync, openSync, readFileSync, statSync, unlinkSync, writeSync, constants } from "node:fs";
import { constants as system } from "node:os";
import { dirname } from "node:path";
import { ExitError } from "../errors.ts";
import { errno, libc } from "../kernel/libc.ts";

const LOCK_EX = 2;
const LOCK_NB = 4;
const { EINTR, EWOULDBLOCK } = system.errno;

/** Another agent holds the lock. */
export class AlreadyRunningError extends ExitError {
  override name = "AlreadyRunningError";
}

/** The lock could not be taken for lack of rights (not root): the caller decides. */
export class LockPermissionError extends Error {
  override name = "LockPermissionError";
}

/** Locks `fd` (the file at `path`) if nobody holds it; closes it and throws when flock fails. */
function tryFlock(fd: number, path: string): "locked" | "busy" {
  for (;;) {
    if (libc.flock(fd, LOCK_EX | LOCK_NB) === 0) return "locked";
    const code = errno();
    if (code === EINTR) continue;
    if (code === EWOULDBLOCK) return "busy";
    closeSync(fd);
    throw new Error(`cannot lock ${path}: flock: errno ${code}`);
  }
}

export interface LockOwner {
  pid: number | undefined;
  adminAddr: string | undefined;
}

/** What the lock file says about its owner (written as `pid\nadmin address\n`). */
export function readLockOwner(path: string): LockOwner {
  try {
    const [pid, adminAddr] = readFileSync(path, "utf8").split("\n");
    return { pid: pid && /^\d+$/.test(pid) ? Number(pid) : undefined, adminAddr: adminAddr || undefined };
  } catch {
    return { pid: undefined, adminAddr: undefined };
  }
}

export class InstanceLock {
  #fd: number | null;
  readonly path: string;

  private constructor(fd: number, path: string) {
    this.#fd = fd;
    this.path = path;
  }

  /**
   * Takes the node's agent lock or throws AlreadyRunningError naming the
   * holder. `adminAddr` (or "" when the API is off) is recorded for the message
   * another agent would print.
   */
  static acquire(path: string, adminAddr: string): InstanceLock {
    try {
      mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
    } catch (error) {
      throw lockError(path, error);
    }
    // A holder that is exiting unlinks the file before it lets go: retry on a
    // file that is no longer the one at `path`.
    for (let attempt = 0; attempt < 5; attempt++) {
      let fd: number;
      try {
        fd = openSync(path, constants.O_RDWR | constants.O_CREAT, 0o644);
      } catch (error) {
        throw lockError(path, error);
      }
      const state = tryFlock(fd, path);
      if (!sameFile(fd, path)) {
        closeSync(fd);
        continue;
      }
      if (state === "busy") {
        closeSync(fd);
        const owner = readLockOwner(path);
        const who = owner.pid === undefined ? "" : `pid ${owner.pid}, `;
        const api = owner.adminAddr ? `admin API on ${owner.adminAddr}` : "admin API off";
        throw new AlreadyRunningError(
          `another kmesh-accesslog agent is already running on this node (${who}${api}; lock ${path}): ` +
            "one agent per node, stop it first",
        );
      }
      ftruncateSync(fd, 0);
      writeSync(fd, `${process.pid}\n${adminAddr}\n`, 0);
      return new InstanceLock(fd, path);
    }
    throw new Error(`cannot lock ${path}: it keeps being replaced`);
  }

  /** Removes the file and lets go of the lock; safe to call twice. */
  release(): void {
    if (this.#fd === null) return;
    if (sameFile(this.#fd, this.path)) {
      try {
        unlinkSync(this.path);
      } catch {
        // already gone: nothing to clean
      }
    }
    closeSync(this.#fd);
    this.#fd = null;
  }
}

function sameFile(fd: number, path: string): boolean {
  try {
    const held = fstatSync(fd);
    const named = statSync(path);
    return held.ino === named.ino && held.dev === named.dev;
  } catch {
    return false;
  }
}

function lockError(path: string, error: unknown): Error {
  const code = (error as { code?: unknown } | null)?.code;
  const detail = error instanceof Error ? error.message : String(error);
  if (code === "EACCES" || code === "EPERM" || code === "EROFS") {
    return new LockPermissionError(`cannot take the agent lock ${path}: ${detail}`);
  }
  return new Error(`cannot take the agent lock ${path}: ${detail}`);
}
