/**
 * Decides whether an end-to-end test file can run here. Tests are never skipped silently: in CI
 * (`CI=true`) a missing prerequisite is a failing test with the reason; elsewhere the file is
 * skipped and the reason printed.
 */
import { test } from "bun:test";

/** Why network-namespace tests cannot run here, or null. */
export function netnsUnavailableReason(): string | null {
  if (process.getuid?.() !== 0) return "end-to-end tests need root (network namespaces, iptables, BPF)";
  for (const tool of ["ip", "iptables", "nstat"]) {
    if (!Bun.which(tool)) return `end-to-end tests need \`${tool}\` (iproute2 / iptables) on PATH`;
  }
  return null;
}

/** Returns true if the tests of `area` should run; otherwise fails (CI) or announces the skip. */
export function prerequisitesMet(area: string, reason: string | null): boolean {
  if (reason === null) return true;
  if (process.env.CI === "true") {
    test(`${area}: prerequisites`, () => {
      throw new Error(`${area} cannot run: ${reason}`);
    });
  } else {
    console.warn(`SKIPPING ${area}: ${reason} (set CI=true to make this a failure)`);
  }
  return false;
}
