// When the agent drains the ring buffer (src/agent.ts, drainPauses; README, "Reading the ring
// buffer, and when"), when it shrinks its memory (shrinkAfterFirstPods; README, "Footprint"), and
// what it says of the probe's runs the kernel skipped (skipNotices; README, "A burst of closes").
import { describe, expect, test } from "bun:test";
import { drainPauses, shrinkAfterFirstPods, skipNotices, standInsOut } from "../../src/agent.ts";

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

describe("the probe's runs the kernel skipped, said on stderr", () => {
  const SPELL =
    "the kernel is skipping runs of the probe (5 so far: the probe was already running on that CPU, interrupted by a softirq or, " +
    "where tracepoints run their programs preemptibly as on Linux 7, preempted; as under bursts of closes); a close it skips is written when its socket ends, " +
    "a start it skips makes start_time unknown";
  const ends = (n: number) =>
    `the kernel skipped ${n} runs of the probe at a socket's end too: a socket whose close was skipped as well has no close line (README, "A burst of closes")`;

  test("a spell begins with state changes skipped: one notice, every skip counted", () => {
    expect(skipNotices({ stateChange: 10, socketEnd: 2 }, { stateChange: 15, socketEnd: 2 }, true, false, null)).toEqual([SPELL]);
  });

  test("a spell begins with socket ends skipped too: a second notice, with their count", () => {
    expect(skipNotices({ stateChange: 10, socketEnd: 2 }, { stateChange: 12, socketEnd: 5 }, true, false, null)).toEqual([SPELL, ends(3)]);
  });

  test("where no stand-ins are attached though they might be needed, the first notice says why", () => {
    const why = "the stand-in programs could not be attached (cannot attach to …)";
    expect(skipNotices({ stateChange: 10, socketEnd: 2 }, { stateChange: 15, socketEnd: 2 }, true, false, why)).toEqual([`${SPELL}; ${why}`]);
    expect(skipNotices({ stateChange: 15, socketEnd: 2 }, { stateChange: 20, socketEnd: 9 }, false, false, why)).toEqual([ends(7)]);
  });

  test("why no stand-ins are attached: the preemption probe could not tell, or they could not attach; nothing where they are, or not needed", () => {
    const unattached = { reason: "cannot attach to the sock:inet_sock_set_state and tcp:tcp_destroy_sock tracepoints: tracefs is not mounted", fix: "mount" };
    const unknown = { answer: "unknown", why: "load the preemption probe: No such file or directory" } as const;
    expect([
      standInsOut({ standIns: false, standInsUnattached: null, tracepointPreemption: unknown }),
      standInsOut({ standIns: false, standInsUnattached: unattached, tracepointPreemption: { answer: "yes", why: null } }),
      standInsOut({ standIns: true, standInsUnattached: null, tracepointPreemption: { answer: "yes", why: null } }),
      standInsOut({ standIns: false, standInsUnattached: null, tracepointPreemption: { answer: "no", why: null } }),
    ]).toEqual([
      "whether this kernel's tracepoints run programs preemptibly is unknown (load the preemption probe: No such file or directory), so no stand-in programs are attached",
      `the stand-in programs could not be attached (${unattached.reason})`,
      null,
      null,
    ]);
  });

  test("later in the spell: socket ends skipped are said once", () => {
    expect(skipNotices({ stateChange: 15, socketEnd: 2 }, { stateChange: 20, socketEnd: 9 }, false, false, null)).toEqual([ends(7)]);
    expect(skipNotices({ stateChange: 20, socketEnd: 9 }, { stateChange: 30, socketEnd: 12 }, false, true, null)).toEqual([]);
    expect(skipNotices({ stateChange: 20, socketEnd: 9 }, { stateChange: 30, socketEnd: 9 }, false, false, null)).toEqual([]);
  });
});
