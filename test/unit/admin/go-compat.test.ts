// Go's strconv.ParseBool, url.ParseQuery + Values.Get and http.Error, as
// Kmesh's admin API exposes them (the values Go accepts and the bytes it echoes).
import { describe, expect, test } from "bun:test";
import { goError, goQueryGet, latin1String, parseGoBool, queryUnescape } from "../../../src/admin/go-compat.ts";

describe("strconv.ParseBool", () => {
  test.each(["1", "t", "T", "TRUE", "true", "True"])("%j is true", (text) => expect(parseGoBool(text)).toBe(true));
  test.each(["0", "f", "F", "FALSE", "false", "False"])("%j is false", (text) => expect(parseGoBool(text)).toBe(false));
  test.each(["", "yes", "no", "on", "off", "tRUE", "fALSE", "TRue", " true", "true ", "2", "-1", "01", "enable", "disable", "y"])(
    "%j is not a bool",
    (text) => expect(parseGoBool(text)).toBeUndefined(),
  );
});

describe("url.QueryUnescape", () => {
  test.each([
    ["true", "true"],
    ["%74rue", "true"],
    ["%54RUE", "TRUE"],
    ["tr+ue", "tr ue"],
    ["%2B", "+"],
    ["a%20b", "a b"],
    ["", ""],
  ])("%j → %j", (text, expected) => expect(latin1String(queryUnescape(text)!)).toBe(expected));
  test.each(["%", "%z1", "%1", "100%", "%%"])("%j is a bad escape", (text) => expect(queryUnescape(text)).toBeUndefined());
  test("%FF is the byte 0xFF, not text", () => expect([...queryUnescape("%FF")!]).toEqual([0xff]));
});

describe("Request.URL.Query().Get(\"enable\")", () => {
  test.each([
    ["enable=true", "true"],
    ["enable=1&enable=0", "1"], // the first value
    ["x=1&enable=f", "f"],
    ["enable", ""], // no '=': an empty value
    ["", ""],
    ["ENABLE=true", ""], // keys are case-sensitive
    ["en%61ble=T", "T"], // keys are unescaped too
    ["enable=%zz&enable=true", "true"], // a pair with a bad escape is skipped
    ["enable=true;x=1", ""], // a pair with a semicolon is skipped
    ["enable=true&&", "true"],
    ["&enable=False", "False"],
    ["enable=tr+ue", "tr ue"],
    ["enable==true", "=true"],
  ])("%j → %j", (query, expected) => expect(latin1String(goQueryGet(query, "enable"))).toBe(expected));
});

test("http.Error ends the message with a newline", async () => {
  expect(await goError("Method Not Allowed", 405).text()).toBe("Method Not Allowed\n");
});

// Why go-compat.ts is not URLSearchParams: on Kmesh's cases above it agrees but for these.
test.each([
  ["enable=%zz&enable=true", "true", "%zz"],
  ["enable=true;x=1", "", "true;x=1"],
  ["enable=%", "", "%"],
  ["enable=100%", "", "100%"],
  ["enable=%FF", "\u00ff", "\ufffd"],
])("URLSearchParams reads %j differently from Go", (query, go, whatwg) => {
  expect(latin1String(goQueryGet(query, "enable"))).toBe(go);
  expect(new URLSearchParams(query).get("enable")).toBe(whatwg);
});
