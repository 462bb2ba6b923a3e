// One agent per node: the flock(2) lock file. A second holder is refused with
// the first one's pid; release removes the file; a holder killed with SIGKILL
// leaves no stale lock.
import { afterEach, beforeEach, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AlreadyRunningError, InstanceLock, readLockOwner } from "../../../src/admin/instance-lock.ts";

const LOCK_MODULE = new URL("../../../src/admin/instance-lock.ts", import.meta.url).pathname;
let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "kal-lock-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

test("the holder's pid and admin address are in the file; a second taker is refused naming them", () => {
  const path = join(dir, "sub", "agent.lock"); // the directory is created
  const lock = InstanceLock.acquire(path, "127.0.0.1:15200");
  expect(readFileSync(path, "utf8")).toBe(`${process.pid}\n127.0.0.1:15200\n`);
  expect(readLockOwner(path)).toEqual({ pid: process.pid, adminAddr: "127.0.0.1:15200" });
  expect(() => InstanceLock.acquire(path, "")).toThrow(
    new AlreadyRunningError(
      `another kmesh-accesslog agent is already running on this node (pid ${process.pid}, admin API on 127.0.0.1:15200; lock ${path}): one agent per node, stop it first`,
    ),
  );
  lock.release();
  lock.release(); // twice is fine
  expect(existsSync(path)).toBe(false);
  InstanceLock.acquire(path, "").release();
});

test("with the admin API off, the message says so", () => {
  const path = join(dir, "agent.lock");
  const lock = InstanceLock.acquire(path, "");
  expect(() => InstanceLock.acquire(path, "")).toThrow(`(pid ${process.pid}, admin API off; lock ${path})`);
  lock.release();
});

test("a holder killed with SIGKILL leaves the file but not the lock", async () => {
  const path = join(dir, "agent.lock");
  const holder = Bun.spawn(
    [process.execPath, "-e", `const { InstanceLock } = await import(${JSON.stringify(LOCK_MODULE)}); InstanceLock.acquire(${JSON.stringify(path)}, ""); console.log("held"); setInterval(() => {}, 1000);`],
    { stdout: "pipe", stderr: "inherit" },
  );
  try {
    const reader = holder.stdout.getReader();
    expect(new TextDecoder().decode((await reader.read()).value)).toBe("held\n");
    expect(() => InstanceLock.acquire(path, "")).toThrow(`pid ${holder.pid}`);
    holder.kill("SIGKILL");
    await holder.exited;
    expect(readLockOwner(path).pid).toBe(holder.pid); // stale content ...
    const lock = InstanceLock.acquire(path, ""); // ... but a free lock
    expect(readLockOwner(path).pid).toBe(process.pid);
    lock.release();
  } finally {
    holder.kill("SIGKILL");
  }
});
