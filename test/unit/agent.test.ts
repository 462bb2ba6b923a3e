// When the agent drains the ring buffer (src/agent.ts, drainPauses; README, "Reading the ring
// buffer, and when"), and when it shrinks its memory (shrinkAfterFirstPods; README, "Footprint").
import { describe, expect, test } from "bun:test";
import { drainPauses, shrinkAfterFirstPods } from "../../src/agent.ts";

describe("the pauses between drains", () => {
  test("the default 8 MiB ring: 20 ms while records come, up to 55 ms while none do", () => {
    expect(drainPauses(8 << 20)).toEqual({ busyMs: 20, idleMs: 55.188210526315785 });
  });

  test("a ring large enough for any burst: 20 ms and 100 ms", () => {
    expect(drainPauses(64 << 20)).toEqual({ busyMs: 20, idleMs: 100 });
  });

  test("a ring a burst would half fill in under 20 ms: the time it takes, both ways", () => {
    expect(drainPauses(2 << 20)).toEqual({ busyMs: 13.797052631578946, idleMs: 13.797052631578946 });
  });

  test("a small ring: 10 ms, the shortest pause, both ways", () => {
    expect(drainPauses(16 << 10)).toEqual({ busyMs: 10, idleMs: 10 });
    expect(drainPauses(64 << 10)).toEqual({ busyMs: 10, idleMs: 10 });
  });
});

describe("the engine's memory given back", () => {
  test("once, after the first pod list with pods: not after empty lists, not again", () => {
    let shrunk = 0;
    const refreshed = shrinkAfterFirstPods(() => shrunk++);
    const after = (podCount: number) => {
      refreshed(podCount);
      return shrunk;
    };
    expect([0, 0, 3, 3, 0, 1000].map(after)).toEqual([0, 0, 1, 1, 1, 1]);
  });
});
