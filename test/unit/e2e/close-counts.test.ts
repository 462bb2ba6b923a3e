/** The e2e tests' reading of the close counters around a connection whose closes the probe ignored. */
import { describe, expect, test } from "bun:test";
import { closesMadeRight, closesSince } from "../../e2e/admin-support.ts";

const before = { atEnd: 10, missed: 1, skipped: 40, stoodIn: 0, standIns: false };

test("our two closes at end, nothing else: exact", () => {
  expect(closesSince(before, { ...before, atEnd: 12, missed: 1, skipped: 40 }, 2)).toEqual({ atEnd: 2, stoodIn: 0, missed: 0 });
});

test("a third close at end with a run the kernel skipped: set aside", () => {
  expect(closesSince(before, { ...before, atEnd: 13, missed: 1, skipped: 42 }, 2)).toEqual({ atEnd: 2, stoodIn: 0, missed: 0 });
});

test("more closes at end than skipped runs account for: only those are set aside", () => {
  expect(closesSince(before, { ...before, atEnd: 14, missed: 1, skipped: 41 }, 2)).toEqual({ atEnd: 3, stoodIn: 0, missed: 0 });
  expect(closesSince(before, { ...before, atEnd: 13, missed: 1, skipped: 40 }, 2)).toEqual({ atEnd: 3, stoodIn: 0, missed: 0 });
});

test("fewer than ours, or a close missed: shown as they are, skips or not", () => {
  expect(closesSince(before, { ...before, atEnd: 11, missed: 2, skipped: 44 }, 2)).toEqual({ atEnd: 1, stoodIn: 0, missed: 1 });
});

describe("with the stand-ins attached", () => {
  const standing = { ...before, stoodIn: 100, standIns: true };

  test("our two closes made by the stand-in; its runs for other sockets set aside", () => {
    expect(closesSince(standing, { ...standing, stoodIn: 107, skipped: 47 }, 2)).toEqual({ atEnd: 0, stoodIn: 2, missed: 0 });
    expect(closesMadeRight(standing, 2)).toEqual({ atEnd: 0, stoodIn: 2, missed: 0 });
  });

  test("one of ours written at its end instead: shown as it is", () => {
    expect(closesSince(standing, { ...standing, atEnd: 11, stoodIn: 101, skipped: 41 }, 2)).toEqual({ atEnd: 1, stoodIn: 1, missed: 0 });
  });

  test("without them, ours go to the socket's end", () => {
    expect(closesMadeRight(before, 2)).toEqual({ atEnd: 2, stoodIn: 0, missed: 0 });
  });
});
