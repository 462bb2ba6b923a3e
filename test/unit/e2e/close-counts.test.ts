/** The e2e tests' reading of the close counters around a connection whose closes the probe ignored. */
import { expect, test } from "bun:test";
import { closesSince } from "../../e2e/admin-support.ts";

const before = { atEnd: 10, missed: 1, skipped: 40 };

test("our two closes at end, nothing else: exact", () => {
  expect(closesSince(before, { atEnd: 12, missed: 1, skipped: 40 }, 2)).toEqual({ atEnd: 2, missed: 0 });
});

test("a third close at end with a run the kernel skipped: set aside", () => {
  expect(closesSince(before, { atEnd: 13, missed: 1, skipped: 42 }, 2)).toEqual({ atEnd: 2, missed: 0 });
});

test("more closes at end than skipped runs account for: only those are set aside", () => {
  expect(closesSince(before, { atEnd: 14, missed: 1, skipped: 41 }, 2)).toEqual({ atEnd: 3, missed: 0 });
  expect(closesSince(before, { atEnd: 13, missed: 1, skipped: 40 }, 2)).toEqual({ atEnd: 3, missed: 0 });
});

test("fewer than ours, or a close missed: shown as they are, skips or not", () => {
  expect(closesSince(before, { atEnd: 11, missed: 2, skipped: 44 }, 2)).toEqual({ atEnd: 1, missed: 1 });
});
