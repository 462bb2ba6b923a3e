// A line's duration is Go's %v of a float64, as Kmesh prints it. The expected texts below were
// printed by Go 1.19 itself (fmt.Sprintf("%v", x) of each value's exact bits), not derived from
// our rule; the same comparison over a million values (random bit patterns, durations of random
// nanoseconds, every value near both switch points) found no difference when go-float.ts was
// written. The two switch points: below 1e-4 and from 1e6 on, Go writes the exponent form.
import { describe, expect, test } from "bun:test";
import { goFloatText } from "../../../src/accesslog/go-float.ts";
import { formatKmeshLine, SEED_RECORD } from "../fixtures.ts";
import { reference } from "./format-reference.ts";

/** [value, what Go's %v prints], the neighbours one and two ulps away from each switch point included. */
const GO: readonly (readonly [number, string])[] = [
  [0.00009999999999999998, "9.999999999999998e-05"], // 1e-4, 2 ulps below
  [0.00009999999999999999, "9.999999999999999e-05"], // 1e-4, 1 ulp below
  [0.0001, "0.0001"], // the first value written plainly
  [0.00010000000000000002, "0.00010000000000000002"],
  [0.00010000000000000003, "0.00010000000000000003"],
  [999999.9999999998, "999999.9999999998"], // 1e6, 2 ulps below
  [999999.9999999999, "999999.9999999999"], // the last value written plainly
  [1000000, "1e+06"],
  [1000000.0000000001, "1.0000000000000001e+06"],
  [1000000.0000000002, "1.0000000000000002e+06"],
  // durations of whole nanoseconds, as the decoder makes them (ns / 1e6)
  [0, "0"],
  [0.000001, "1e-06"], // 1 ns
  [0.000005, "5e-06"],
  [0.00005, "5e-05"], // 50 ns
  [0.000099, "9.9e-05"], // 99 ns
  [0.0001, "0.0001"], // 100 ns
  [0.000101, "0.000101"],
  [0.000999, "0.000999"],
  [0.123456, "0.123456"],
  [999999.999999, "999999.999999"], // 1 ns under 16 min 40 s
  [1000000.000001, "1.000000000001e+06"],
  [1200000, "1.2e+06"], // 20 minutes
  [14577234.782131, "1.4577234782131e+07"], // from a real Kmesh line
  [86400000.000001, "8.6400000000001e+07"], // a day and a nanosecond
  [999999999.999999, "9.99999999999999e+08"],
  // values no line has, for the rule's sake
  [0.00009999, "9.999e-05"],
  [0.0001234, "0.0001234"],
  [123456.7, "123456.7"],
  [999999.5, "999999.5"],
  [1234567.8, "1.2345678e+06"],
  [1e21, "1e+21"],
  [1e-7, "1e-07"],
  [2.5e-300, "2.5e-300"],
  [5e-324, "5e-324"],
  [1.7976931348623157e308, "1.7976931348623157e+308"],
  [-1200000, "-1.2e+06"],
  [-0.00005, "-5e-05"],
  [1 / 3, "0.3333333333333333"],
  [666666.6666666666, "666666.6666666666"],
];

describe("Go's %v of a float64", () => {
  test("goFloatText prints what Go prints", () => {
    expect(GO.map(([x]) => goFloatText(x))).toEqual(GO.map(([, go]) => go));
  });

  test("the tests' own oracle agrees", () => {
    expect(GO.map(([x]) => reference.goFloat(x))).toEqual(GO.map(([, go]) => go));
  });

  test("zero, negative zero, infinities and NaN", () => {
    expect([0, -0, Infinity, -Infinity, NaN].map(goFloatText)).toEqual(["0", "-0", "+Inf", "-Inf", "NaN"]);
  });

  test("a line's duration is that text, through the byte writer's fast path and around it", () => {
    const duration = (durationMs: number) => {
      const line = formatKmeshLine({ ...SEED_RECORD, durationMs });
      return line.slice(line.lastIndexOf(", duration=") + 11);
    };
    expect(GO.filter(([x]) => x >= 0).map(([x]) => duration(x))).toEqual(GO.filter(([x]) => x >= 0).map(([, go]) => `${go}ms`));
  });
});
