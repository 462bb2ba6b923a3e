// /debug/loggers as Kmesh's status server answers it (kmeshctl log): the names, a logger's level,
// setting it, and every refusal, byte for byte where Go's words are fixed.
import { describe, expect, test } from "bun:test";
import { handleAdminRequest } from "../../../src/admin/routes.ts";
import { createLogger } from "../../../src/log.ts";
import { FakeBackend } from "../fixtures.ts";

const answer = async (backend: FakeBackend, method: string, target: string, body = "") => {
  const response = handleAdminRequest(backend, method, `http://127.0.0.1:15200${target}`, new TextEncoder().encode(body));
  return { status: response.status, type: response.headers.get("content-type"), body: await response.text() };
};

describe("/debug/loggers", () => {
  test("GET without a name: the loggers' names, as Go's json.MarshalIndent with four spaces", async () => {
    expect(await answer(new FakeBackend(), "GET", "/debug/loggers")).toEqual({ status: 200, type: "text/plain; charset=utf-8", body: '[\n    "default"\n]' });
    expect((await answer(new FakeBackend(), "GET", "/debug/loggers?name=")).body).toBe('[\n    "default"\n]');
  });

  test("GET ?name=default: its level in logrus's words (warn is warning)", async () => {
    const backend = new FakeBackend();
    for (const [ours, logrus] of [["error", "error"], ["warn", "warning"], ["info", "info"], ["debug", "debug"]] as const) {
      backend.level = ours;
      expect(await answer(backend, "GET", "/debug/loggers?name=default")).toEqual({
        status: 200,
        type: "text/plain; charset=utf-8",
        body: `{\n    "name": "default",\n    "level": "${logrus}"\n}`,
      });
    }
  });

  test("GET another name: 400, Kmesh's words, the name's bytes as they came", async () => {
    expect(await answer(new FakeBackend(), "GET", "/debug/loggers?name=bpf")).toEqual({ status: 400, type: "text/plain; charset=utf-8", body: "\tlogger bpf does not exist\n" });
    expect((await answer(new FakeBackend(), "GET", "/debug/loggers?name=a%20b&name=default")).body).toBe("\tlogger a b does not exist\n");
  });

  test("POST sets the level: logrus's seven names, any case; OK", async () => {
    const backend = new FakeBackend();
    for (const [given, set] of [["debug", "debug"], ["WARNING", "warn"], ["Warn", "warn"], ["trace", "debug"], ["panic", "error"], ["fatal", "error"], ["info", "info"]] as const) {
      expect(await answer(backend, "POST", "/debug/loggers", JSON.stringify({ name: "default", level: given }))).toEqual({ status: 200, type: "text/plain; charset=utf-8", body: "OK" });
      expect(backend.level).toBe(set);
    }
    // Go's json matches field names without regard to case, and ignores the others
    expect((await answer(backend, "POST", "/debug/loggers", '{"NAME":"default","Level":"debug","extra":1}')).status).toBe(200);
    expect(backend.level).toBe("debug");
  });

  test("POST refusals: the level first, then the logger, as Kmesh checks them; nothing changes", async () => {
    const backend = new FakeBackend();
    const refused = async (body: string) => {
      const a = await answer(backend, "POST", "/debug/loggers", body);
      expect(a.status).toBe(400);
      return a.body;
    };
    expect(await refused('{"name":"default","level":"loud"}')).toBe('\tInvalid request body format: not a valid logrus Level: "loud"\n');
    expect(await refused('{"name":"bpf","level":"debug"}')).toBe("\tlogger bpf does not exist\n");
    expect(await refused('{"name":"bpf","level":"x"}')).toBe('\tInvalid request body format: not a valid logrus Level: "x"\n');
    expect(await refused("{}")).toBe('\tInvalid request body format: not a valid logrus Level: ""\n');
    expect(await refused('{"name":"default","level":3}')).toBe("\tInvalid request body format: json: cannot unmarshal number into Go struct field LoggerInfo.level of type string\n");
    expect(await refused("[1]")).toBe("\tInvalid request body format: json: cannot unmarshal array into Go value of type status.LoggerInfo\n");
    expect(await refused("")).toBe("\tInvalid request body format: unexpected end of JSON input\n");
    expect(await refused("{nope")).toStartWith("\tInvalid request body format: ");
    expect(backend.level).toBe("info");
  });

  test("other methods: 405, http.Error's", async () => {
    expect(await answer(new FakeBackend(), "PUT", "/debug/loggers")).toEqual({ status: 405, type: "text/plain; charset=utf-8", body: "Method Not Allowed\n" });
  });
});

test("the agent's logger follows a level set at run time", () => {
  const lines: string[] = [];
  const log = createLogger("info", (line) => lines.push(line));
  log.debug("hidden");
  log.setLevel("debug");
  log.debug("shown");
  log.setLevel("error");
  log.warn("hidden too");
  log.error("shown too");
  expect([log.level, lines]).toEqual(["error", ["kmesh-accesslog: debug: shown\n", "kmesh-accesslog: shown too\n"]]);
});
