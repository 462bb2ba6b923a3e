// Go's `%v` of a float64, which is strconv.FormatFloat(x, 'g', -1, 64): Kmesh prints a line's
// duration with it, and a byte-identical line needs the same text (docs/accesslog-format.md,
// "duration"; test/unit/accesslog/go-float.test.ts holds values Go printed).
//
// The digits are the shortest that read back as x, the one nearest x when several are as short:
// the digits JavaScript's String(x) gives too (ECMAScript asks for the same). Only the layout
// differs. With d the decimal exponent of the first digit, Go writes the exponent form when d < -4
// or d >= 6 (for the shortest digits it decides with precision 6, whatever their number), with a
// sign and at least two exponent digits (`5e-05`, `1.2e+06`); JavaScript switches at d < -6 and
// d >= 21, and writes `e+6`. -0 is "-0" in Go, "0" in JavaScript.

/** The shortest digits of |x| (no leading or trailing zeros) and d, the exponent of the first. */
function shortestDigits(x: number): { digits: string; exponent: number } {
  const text = String(Math.abs(x)); // "123.45", "0.000123", "1.5e+21", "1e-7"
  const e = text.indexOf("e");
  const mantissa = e < 0 ? text : text.slice(0, e);
  const power = e < 0 ? 0 : Number(text.slice(e + 1));
  const dot = mantissa.indexOf(".");
  const whole = dot < 0 ? mantissa : mantissa.slice(0, dot);
  const all = dot < 0 ? mantissa : whole + mantissa.slice(dot + 1);
  const leadingZeros = all.length - all.replace(/^0+/, "").length;
  const digits = all.slice(leadingZeros).replace(/0+$/, "");
  return { digits, exponent: whole.length - 1 - leadingZeros + power };
}

/** strconv.FormatFloat(x, 'g', -1, 64), which fmt's %v prints for a float64. */
export function goFloatText(x: number): string {
  if (Number.isNaN(x)) return "NaN";
  if (x === Number.POSITIVE_INFINITY) return "+Inf";
  if (x === Number.NEGATIVE_INFINITY) return "-Inf";
  const sign = x < 0 || Object.is(x, -0) ? "-" : "";
  if (x === 0) return `${sign}0`;
  const { digits, exponent } = shortestDigits(x);
  if (exponent < -4 || exponent >= 6) {
    const fraction = digits.length > 1 ? `.${digits.slice(1)}` : "";
    const magnitude = Math.abs(exponent);
    return `${sign}${digits[0]}${fraction}e${exponent < 0 ? "-" : "+"}${magnitude < 10 ? "0" : ""}${magnitude}`;
  }
  if (exponent < 0) return `${sign}0.${"0".repeat(-exponent - 1)}${digits}`;
  const integer = digits.slice(0, exponent + 1).padEnd(exponent + 1, "0");
  const fraction = digits.slice(exponent + 1);
  return fraction === "" ? `${sign}${integer}` : `${sign}${integer}.${fraction}`;
}
