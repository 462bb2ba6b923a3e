// Tests that need the real kernel, root or a tool must never be skipped
// silently: under CI=true a missing prerequisite is a failure.
import { test } from "bun:test";

export const IN_CI = process.env.CI === "true";

/** Returns a reason when `ok` is false; throws it under CI. */
export function requirement(ok: boolean, reason: string): string | null {
  if (ok) return null;
  if (IN_CI) throw new Error(`prerequisite missing in CI (tests may not be skipped): ${reason}`);
  console.warn(`skipping: ${reason}`);
  return reason;
}

/** `test`, or `test.skip` with a printed reason outside CI (a failure in CI). */
export function testIf(ok: boolean, reason: string): typeof test {
  return requirement(ok, reason) === null ? test : test.skip;
}

export function hasCommand(name: string): boolean {
  return Bun.which(name) !== null;
}

export const IS_ROOT = process.geteuid?.() === 0;
