// The watch stream: lines across chunk boundaries (even inside a UTF-8 character) and each event type.
import { describe, expect, test } from "bun:test";
import { LineSplitter, parseWatchEvent } from "../../../../src/kube/apiserver/watch-stream.ts";

const enc = (s: string) => new TextEncoder().encode(s);

describe("LineSplitter", () => {
  test("objects split anywhere come out whole, in order", () => {
    const events = [
      { type: "ADDED", object: { metadata: { name: "café-ü", resourceVersion: "5" } } },
      { type: "MODIFIED", object: { metadata: { name: "b", resourceVersion: "6" } } },
      { type: "BOOKMARK", object: { metadata: { resourceVersion: "7" } } },
    ];
    const bytes = enc(events.map((e) => JSON.stringify(e)).join("\n") + "\n");
    for (let step = 1; step <= 7; step++) {
      const splitter = new LineSplitter();
      const lines: string[] = [];
      for (let i = 0; i < bytes.length; i += step) lines.push(...splitter.push(bytes.subarray(i, i + step)));
      expect(splitter.end()).toBe("");
      expect(lines.map((l) => JSON.parse(l))).toEqual(events);
    }
  });

  test("a last line without its newline is kept for end(); blank lines are skipped", () => {
    const splitter = new LineSplitter();
    expect(splitter.push(enc('\n\n{"a":1}\n{"b"'))).toEqual(['{"a":1}']);
    expect(splitter.push(enc(":2}"))).toEqual([]);
    expect(splitter.end()).toBe('{"b":2}');
  });
});

describe("parseWatchEvent", () => {
  const line = (o: unknown) => JSON.stringify(o);
  test("ADDED, MODIFIED, DELETED carry their object", () => {
    for (const type of ["ADDED", "MODIFIED", "DELETED"] as const) {
      expect(parseWatchEvent(line({ type, object: { metadata: { name: "x" } } }))).toEqual({ type, object: { metadata: { name: "x" } } });
    }
  });
  test("BOOKMARK gives its resourceVersion", () => {
    expect(parseWatchEvent(line({ type: "BOOKMARK", object: { kind: "Pod", metadata: { resourceVersion: "12345" } } }))).toEqual({
      type: "BOOKMARK",
      resourceVersion: "12345",
    });
  });
  test("ERROR with code 410 (or reason Expired) is EXPIRED; other errors keep code and message", () => {
    const expired = { kind: "Status", apiVersion: "v1", status: "Failure", message: "too old resource version: 1 (5)", reason: "Expired", code: 410 };
    expect(parseWatchEvent(line({ type: "ERROR", object: expired }))).toEqual({ type: "EXPIRED", message: "too old resource version: 1 (5)" });
    expect(parseWatchEvent(line({ type: "ERROR", object: { kind: "Status", reason: "Gone" } })).type).toBe("EXPIRED");
    expect(parseWatchEvent(line({ type: "ERROR", object: { kind: "Status", code: 500, message: "etcd down" } }))).toEqual({
      type: "ERROR",
      code: 500,
      message: "etcd down",
    });
  });
  test("anything else is INVALID, never an exception", () => {
    expect(parseWatchEvent("{not json").type).toBe("INVALID");
    expect(parseWatchEvent("[]").type).toBe("INVALID");
    expect(parseWatchEvent(line({ type: "SURPRISE", object: {} }))).toEqual({ type: "INVALID", problem: 'unknown event type "SURPRISE"' });
    expect(parseWatchEvent(line({ type: "ADDED", object: null })).type).toBe("INVALID");
  });
});
