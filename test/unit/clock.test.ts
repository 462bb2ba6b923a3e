import { describe, expect, test } from "bun:test";
import {
  type CalibrationSample,
  createClock,
  makeClock,
  monotonicToWall,
  offsetFromSamples,
} from "../../src/kernel/clock.ts";

const ts = (sec: number, nsec: number) => ({ sec, nsec });

describe("monotonicToWall", () => {
  test("adds seconds and nanoseconds separately, carrying", () => {
    expect(monotonicToWall(1_745_484_000, 500_000_000, 80_471_980_208)).toEqual(ts(1_745_484_080, 971_980_208));
    expect(monotonicToWall(1_745_484_000, 999_999_999, 1)).toEqual(ts(1_745_484_001, 0));
    expect(monotonicToWall(1_745_484_000, 999_999_999, 0)).toEqual(ts(1_745_484_000, 999_999_999));
    expect(monotonicToWall(1_745_484_000, 0, 999_999_999)).toEqual(ts(1_745_484_000, 999_999_999));
    expect(monotonicToWall(1_745_484_000, 0, 1_000_000_000)).toEqual(ts(1_745_484_001, 0));
  });

  test("exact to the nanosecond up to 2^53 ns", () => {
    const mono = 2 ** 53 - 1; // 9007199.254740991 s
    expect(monotonicToWall(1_700_000_000, 1, mono)).toEqual(ts(1_709_007_199, 254_740_992));
    // values just below a whole second, where ns / 1e9 rounds up
    for (const sec of [1, 999, 4_503_599, 9_007_198]) {
      const wall = monotonicToWall(0, 0, sec * 1e9 - 1);
      expect(wall).toEqual(ts(sec - 1, 999_999_999));
    }
  });

  test("nanoseconds stay integers in range above 2^53", () => {
    const wall = monotonicToWall(1_700_000_000, 900_000_000, 2 ** 60);
    expect(Number.isInteger(wall.nsec)).toBe(true);
    expect(wall.nsec).toBeGreaterThanOrEqual(0);
    expect(wall.nsec).toBeLessThan(1e9);
    const exact = 1_700_000_000n * 1_000_000_000n + 900_000_000n + 2n ** 60n;
    expect(BigInt(wall.sec) * 1_000_000_000n + BigInt(wall.nsec)).toBe(exact);
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
    expect(clock.toWall(1_750_000_000)).toEqual(ts(1_745_484_002, 0));
    clock.recalibrate();
    expect(clock.toWall(1_750_000_000)).toEqual(ts(1_001, 750_000_000));
    offset = ts(2_000, 1);
    clock.recalibrate();
    expect(clock.toWall(0)).toEqual(ts(2_000, 1));
  });

  test("without measureOffset recalibrate keeps the offset", () => {
    const clock = makeClock(10, 5, () => 0);
    clock.recalibrate();
    expect(clock.toWall(0)).toEqual(ts(10, 5));
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
    const wall = clock.toWall(clock.nowMonotonicNs());
    const after = Date.now();
    const wallMs = wall.sec * 1000 + wall.nsec / 1e6;
    expect(wallMs).toBeGreaterThanOrEqual(before - 2);
    expect(wallMs).toBeLessThanOrEqual(after + 2);
    expect(Number.isInteger(wall.nsec) && wall.nsec >= 0 && wall.nsec < 1e9).toBe(true);
  });

  test("recalibration lands on (nearly) the same offset", () => {
    const clock = createClock();
    const mono = clock.nowMonotonicNs();
    const first = clock.toWall(mono);
    clock.recalibrate();
    const second = clock.toWall(mono);
    const diffNs = (second.sec - first.sec) * 1e9 + (second.nsec - first.nsec);
    expect(Math.abs(diffNs)).toBeLessThan(1_000_000); // unless NTP steps the clock meanwhile
  });
});
