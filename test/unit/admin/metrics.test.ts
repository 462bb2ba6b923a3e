// The Prometheus text the agent serves, and the reading of it that `status` does.
import { describe, expect, test } from "bun:test";
import { MetricsRegistry, parseExposition } from "../../../src/admin/metrics.ts";

describe("MetricsRegistry", () => {
  test("renders HELP, TYPE and samples in registration order, reading values at render time", () => {
    const registry = new MetricsRegistry();
    let lines = 1;
    registry.register({ name: "a_lines_total", type: "counter", help: "Lines.", read: () => lines });
    registry.register({
      name: "a_switch",
      type: "gauge",
      help: "Back\\slash and\nnewline.",
      read: () => [
        { labels: { switch: "x" }, value: 1 },
        { labels: { switch: 'q"uo\\te\n' }, value: 0 },
      ],
    });
    lines = 42;
    expect(registry.render()).toBe(
      "# HELP a_lines_total Lines.\n# TYPE a_lines_total counter\na_lines_total 42\n" +
        "# HELP a_switch Back\\\\slash and\\nnewline.\n# TYPE a_switch gauge\n" +
        'a_switch{switch="x"} 1\na_switch{switch="q\\"uo\\\\te\\n"} 0\n',
    );
  });

  test("other parts of the agent register their own metrics (e.g. the kubelet's)", () => {
    const registry = new MetricsRegistry();
    registry.register({ name: "kmesh_accesslog_kubelet_refreshes_total", type: "counter", help: "Pod lists fetched.", read: () => 3 });
    expect(registry.render()).toContain("kmesh_accesslog_kubelet_refreshes_total 3\n");
  });

  test("special values", () => {
    const registry = new MetricsRegistry();
    registry.register({ name: "g", type: "gauge", help: "h", read: () => [{ value: NaN }, { value: Infinity }, { value: -Infinity }, { value: 0.5 }] });
    expect(registry.render().split("\n").slice(2, 6)).toEqual(["g NaN", "g +Inf", "g -Inf", "g 0.5"]);
  });

  test("a reader that throws loses its metric, not the scrape", () => {
    const registry = new MetricsRegistry();
    registry.register({ name: "bad", type: "gauge", help: "h", read: () => { throw new Error("x"); } });
    registry.register({ name: "good", type: "gauge", help: "h", read: () => 1 });
    expect(registry.render()).toBe("# HELP good h\n# TYPE good gauge\ngood 1\n");
  });

  test.each([
    [{ name: "bad-name", type: "gauge" as const }, 'invalid metric name "bad-name"'],
    [{ name: "a_count", type: "counter" as const }, "counter a_count must end in _total"],
  ])("refuses %o", (m, message) => {
    expect(() => new MetricsRegistry().register({ ...m, help: "h", read: () => 0 })).toThrow(message);
  });

  test("refuses a name registered twice", () => {
    const registry = new MetricsRegistry();
    registry.register({ name: "x", type: "gauge", help: "h", read: () => 0 });
    expect(() => registry.register({ name: "x", type: "gauge", help: "h", read: () => 0 })).toThrow("metric x is registered twice");
  });
});

test("parseExposition reads back what render writes", () => {
  const registry = new MetricsRegistry();
  registry.register({ name: "c_total", type: "counter", help: "Count\nof things.", read: () => 7 });
  registry.register({ name: "s", type: "gauge", help: "S.", read: () => [{ labels: { switch: 'a"b' }, value: 1 }] });
  expect(parseExposition(registry.render())).toEqual([
    { name: "c_total", labels: {}, value: 7, help: "Count\nof things." },
    { name: "s", labels: { switch: 'a"b' }, value: 1, help: "S." },
  ]);
});
