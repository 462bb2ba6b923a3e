import { describe, expect, test } from "bun:test";
import {
  type CalibrationSample,
  createClock,
  makeClock,
  monotonicFromHalves,
  monotonicToWall,
  nsBetween,
  offsetFromSamples,
} from "../../../src/kernel/clock.ts";

const ts = (sec: number, nsec: number) => ({ sec, nsec });

/** The monotonic time of a u64 nanosecond count, through the two halves the record holds. */
const mono = (ns: bigint) => monotonicFromHalves(Number(ns >> 32n), Number(ns & 0xffff_ffffn));
const wallNs = (w: { sec: number; nsec: number }) => BigInt(w.sec) * 1_000_000_000n + BigInt(w.nsec);

describe("monotonicToWall", () => {
  test("adds seconds and nanoseconds separately, carrying", () => {
    expect(monotonicToWall(1_745_484_000, 500_000_000, ts(80, 471_980_208))).toEqual(ts(1_745_484_080, 971_980_208));
    expect(monotonicToWall(1_745_484_000, 999_999_999, ts(0, 1))).toEqual(ts(1_745_484_001, 0));
    expect(monotonicToWall(1_745_484_000, 999_999_999, ts(0, 0))).toEqual(ts(1_745_484_000, 999_999_999));
    expect(monotonicToWall(1_745_484_000, 0, ts(0, 999_999_999))).toEqual(ts(1_745_484_000, 999_999_999));
  });
});

describe("monotonicFromHalves", () => {
  test("splits a u64 of nanoseconds exactly, at every scale", () => {
    const cases = [0n, 1n, 999_999_999n, 1_000_000_000n, 0xffff_ffffn, 1n << 32n, (1n << 48n) - 1n, 1n << 48n];
    cases.push((1n << 53n) - 1n, 1n << 53n, (1n << 53n) + 1n, (1n << 64n) - 1n);
    for (const ns of cases) expect(wallNs(mono(ns))).toBe(ns);
    // a second boundary on both sides, far above 2^53
    for (const s of [9_007_199n, 17_280_000n, 18_446_744_073n]) {
      expect(mono(s * 1_000_000_000n - 1n)).toEqual(ts(Number(s) - 1, 999_999_999));
      expect(mono(s * 1_000_000_000n)).toEqual(ts(Number(s), 0));
    }
    let x = 0x9e37_79b9_7f4a_7c15n;
    for (let i = 0; i < 10_000; i++) {
      x = (x * 6364136223846793005n + 1442695040888963407n) & ((1n << 64n) - 1n);
      expect(wallNs(mono(x))).toBe(x);
    }
  });

  test("a node up 200 days: report and start to the nanosecond, duration exact", () => {
    // 200 days of uptime is 1.728e16 ns, past 2^53 (9.007e15): as one number it would lose digits.
    const start = 200n * 86_400n * 1_000_000_000n + 123_456_789n;
    const report = start + 1_200_608_025n;
    expect(Number(report)).not.toBe(Number(start) + 1_200_608_025); // what a float would have said
    const offset = ts(1_745_484_000, 987_654_321);
    const wall = monotonicToWall(offset.sec, offset.nsec, mono(report));
    expect(wallNs(wall)).toBe(1_745_484_000_987_654_321n + report);
    expect(nsBetween(mono(start), mono(report))).toBe(1_200_608_025);
  });
});

describe("offsetFromSamples", () => {
  test("keeps the tightest bracket and pairs it with the midpoint", () => {
    const samples: CalibrationSample[] = [
      { monoBefore: ts(100, 0), real: ts(1_745_484_000, 500), monoAfter: ts(100, 10_000) },
      // tightest: width 400 ns, midpoint 100.999999900 + 200 ns = 101.000000100
      { monoBefore: ts(100, 999_999_900), real: ts(1_745_484_001, 50), monoAfter: ts(101, 300) },
      { monoBefore: ts(101, 0), real: ts(1_745_484_001, 0), monoAfter: ts(101, 1_000) },
    ];
    // real - mid = 1745484001.000000050 - 101.000000100 = 1745483899.999999950
    expect(offsetFromSamples(samples)).toEqual(ts(1_745_483_899, 999_999_950));
  });

  test("first sample wins a tie; an odd width rounds the midpoint down", () => {
    const samples: CalibrationSample[] = [
      { monoBefore: ts(5, 0), real: ts(1000, 3), monoAfter: ts(5, 7) },
      { monoBefore: ts(6, 0), real: ts(2000, 0), monoAfter: ts(6, 7) },
    ];
    expect(offsetFromSamples(samples)).toEqual(ts(995, 0));
  });

  test("ignores a sample whose bracket runs backwards; none usable is an error", () => {
    const backwards = { monoBefore: ts(5, 10), real: ts(1, 0), monoAfter: ts(5, 0) };
    expect(offsetFromSamples([backwards, { monoBefore: ts(5, 0), real: ts(10, 0), monoAfter: ts(5, 2) }])).toEqual(
      ts(4, 999_999_999),
    );
    expect(() => offsetFromSamples([])).toThrow("clock calibration: no usable sample");
    expect(() => offsetFromSamples([backwards])).toThrow("clock calibration: no usable sample");
  });
});

describe("makeClock", () => {
  test("converts with the given offset and recalibrates through measureOffset", () => {
    let offset = ts(1_000, 0);
    const clock = makeClock(1_745_484_000, 250_000_000, () => 42, () => offset);
    expect(clock.nowMonotonicNs()).toBe(42);
    expect(clock.toWall(ts(1, 750_000_000))).toEqual(ts(1_745_484_002, 0));
    clock.recalibrate();
    expect(clock.toWall(ts(1, 750_000_000))).toEqual(ts(1_001, 750_000_000));
    offset = ts(2_000, 1);
    clock.recalibrate();
    expect(clock.toWall(ts(0, 0))).toEqual(ts(2_000, 1));
  });

  test("without measureOffset recalibrate keeps the offset", () => {
    const clock = makeClock(10, 5, () => 0);
    clock.recalibrate();
    expect(clock.toWall(ts(0, 0))).toEqual(ts(10, 5));
  });
});

describe("createClock (libc clock_gettime)", () => {
  test("monotonic time advances and converts to about now", () => {
    const clock = createClock();
    const a = clock.nowMonotonicNs();
    const b = clock.nowMonotonicNs();
    expect(Number.isInteger(a)).toBe(true);
    expect(b).toBeGreaterThanOrEqual(a);
    const before = Date.now();
    const wall = clock.toWall(mono(BigInt(clock.nowMonotonicNs())));
    const after = Date.now();
    const wallMs = wall.sec * 1000 + wall.nsec / 1e6;
    expect(wallMs).toBeGreaterThanOrEqual(before - 2);
    expect(wallMs).toBeLessThanOrEqual(after + 2);
    expect(Number.isInteger(wall.nsec) && wall.nsec >= 0 && wall.nsec < 1e9).toBe(true);
  });

  test("recalibration lands on (nearly) the same offset", () => {
    const clock = createClock();
    const now = mono(BigInt(clock.nowMonotonicNs()));
    const first = clock.toWall(now);
    clock.recalibrate();
    const second = clock.toWall(now);
    const diffNs = (second.sec - first.sec) * 1e9 + (second.nsec - first.nsec);
    expect(Math.abs(diffNs)).toBeLessThan(1_000_000); // unless NTP steps the clock meanwhile
  });
});
