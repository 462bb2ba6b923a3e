// Every answer of the admin routes, without a socket: path × method × value ×
// state, with Kmesh's statuses, bodies (byte for byte) and content types.
import { describe, expect, test } from "bun:test";
import { acceptsGzip, handleAdminRequest, handleMetricsRequest, splitTarget, type AdminBackend } from "../../../src/admin/routes.ts";
import { versionInfo } from "../../../src/admin/version.ts";
import { FakeBackend, SWITCHES_OFF, SWITCHES_ON } from "../fixtures.ts";

const ON = SWITCHES_ON;
const OFF = SWITCHES_OFF;

async function ask(backend: AdminBackend, method: string, target: string) {
  const response = handleAdminRequest(backend, method, `http://127.0.0.1:15200${target}`);
  return {
    status: response.status,
    body: new Uint8Array(await response.arrayBuffer()),
    type: response.headers.get("content-type"),
    nosniff: response.headers.get("x-content-type-options"),
  };
}
const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

const SWITCH_PATHS = ["/monitoring", "/accesslog", "/connection_metrics", "/workload_metrics"] as const;
const TRUE_VALUES = ["1", "t", "T", "TRUE", "true", "True"];
const FALSE_VALUES = ["0", "f", "F", "FALSE", "false", "False"];
const BAD_VALUES = ["", "yes", "on", "enable", "tRUE", "2"];

describe("switch paths: methods other than POST", () => {
  const cases = SWITCH_PATHS.flatMap((path) => ["GET", "PUT", "DELETE", "PATCH", "OPTIONS"].map((m) => [path, m] as const));
  test.each(cases)("%s %s → 405 Method Not Allowed (http.Error)", async (path, method) => {
    const backend = new FakeBackend(ON);
    expect(await ask(backend, method, `${path}?enable=true`)).toEqual({
      status: 405,
      body: new TextEncoder().encode("Method Not Allowed\n"),
      type: "text/plain; charset=utf-8",
      nosniff: "nosniff",
    });
    expect(backend.applied).toEqual([]);
  });
});

describe("switch paths: values Go's ParseBool refuses", () => {
  const word = (path: string) => (path === "/monitoring" ? "monitoring" : "accesslog"); // Kmesh's own wording
  const cases = SWITCH_PATHS.flatMap((path) => BAD_VALUES.map((value) => [path, value] as const));
  test.each(cases)("POST %s?enable=%j → 400, echoed without a newline", async (path, value) => {
    const backend = new FakeBackend(ON);
    const answer = await ask(backend, "POST", `${path}?enable=${value}`);
    expect({ ...answer, body: text(answer.body) }).toEqual({
      status: 400,
      body: `invalid ${word(path)} enable=${value}`,
      type: "text/plain; charset=utf-8",
      nosniff: null,
    });
    expect(backend.applied).toEqual([]);
  });

  test("no query at all, and a value with escapes, are echoed as Go decodes them", async () => {
    const backend = new FakeBackend(ON);
    expect(text((await ask(backend, "POST", "/accesslog")).body)).toBe("invalid accesslog enable=");
    expect(text((await ask(backend, "POST", "/accesslog?enable=ye+s%21")).body)).toBe("invalid accesslog enable=ye s!");
    expect([...(await ask(backend, "POST", "/accesslog?enable=%FF")).body.slice(-1)]).toEqual([0xff]);
  });
});

describe("switch paths: good values in every monitoring state", () => {
  const cases = SWITCH_PATHS.flatMap((path) =>
    [ON, OFF].flatMap((state) => [...TRUE_VALUES, ...FALSE_VALUES].map((value) => [path, state.monitoring, value] as const)),
  );
  test.each(cases)("POST %s with monitoring=%p, enable=%s", async (path, monitoring, value) => {
    const backend = new FakeBackend(monitoring ? ON : OFF);
    const enable = TRUE_VALUES.includes(value);
    const answer = await ask(backend, "POST", `${path}?enable=${value}`);
    const refused = path !== "/monitoring" && enable && !monitoring;
    if (refused) {
      const what = { "/accesslog": "accesslog", "/connection_metrics": "connection metrics", "/workload_metrics": "workload metrics" }[path];
      expect({ ...answer, body: text(answer.body) }).toEqual({
        status: 400,
        body: `Kmesh monitoring is disabled, cannot enable ${what}.\n`,
        type: "text/plain; charset=utf-8",
        nosniff: "nosniff",
      });
      expect(backend.applied).toEqual([]);
    } else {
      expect({ ...answer, body: text(answer.body) }).toEqual({ status: 200, body: "", type: null, nosniff: null });
      expect(backend.applied).toHaveLength(1);
    }
  });

  test("a kernel that cannot be updated: 400 in Kmesh's words, state unchanged", async () => {
    const backend = new FakeBackend(ON);
    backend.failWith = "set the probe switches: Bad file descriptor";
    const answer = await ask(backend, "POST", "/monitoring?enable=false");
    expect({ status: answer.status, body: text(answer.body) }).toEqual({
      status: 400,
      body: "update bpf monitoring failed: set the probe switches: Bad file descriptor\n",
    });
    expect(backend.state).toEqual(ON);
  });
});

describe("read-only paths", () => {
  test.each(["GET", "POST", "PUT", "DELETE"])("%s /version answers Kmesh's version fields (any method, as Kmesh)", async (method) => {
    const answer = await ask(new FakeBackend(ON), method, "/version");
    expect(answer.status).toBe(200);
    const body = text(answer.body);
    expect(body).toStartWith('{\n  "gitVersion": ');
    expect(body.endsWith("}")).toBe(true);
    expect(Object.keys(JSON.parse(body))).toEqual([
      "gitVersion", "gitCommit", "gitTreeState", "buildDate", "goVersion", "compiler", "platform", "program", "pid",
    ]);
  });

  test("/debug/ready: 200 OK once ready, 503 with the reason before", async () => {
    expect(await ask(new FakeBackend(ON), "GET", "/debug/ready")).toMatchObject({ status: 200, body: new TextEncoder().encode("OK") });
    const loading = await ask(new FakeBackend(ON, { ready: false, reason: "loading the kernel probe" }), "GET", "/debug/ready");
    expect({ status: loading.status, body: text(loading.body) }).toEqual({ status: 503, body: "not ready: loading the kernel probe\n" });
  });

  test.each(["/healthz", "/metrics"])("%s: GET and HEAD only", async (path) => {
    const backend = new FakeBackend(ON);
    expect((await ask(backend, "GET", path)).status).toBe(200);
    expect((await ask(backend, "HEAD", path)).status).toBe(200);
    const post = await ask(backend, "POST", path);
    expect({ status: post.status, body: text(post.body) }).toEqual({ status: 405, body: "Method Not Allowed\n" });
  });

  test("/metrics is Prometheus text", async () => {
    const backend = new FakeBackend(ON);
    backend.metrics.register({ name: "x", type: "gauge", help: "y", read: () => 1 });
    const answer = await ask(backend, "GET", "/metrics");
    expect(answer.type).toBe("text/plain; version=0.0.4; charset=utf-8");
    expect(text(answer.body)).toBe("# HELP x y\n# TYPE x gauge\nx 1\n");
  });
});

describe("unknown paths", () => {
  test.each(["/", "/accesslog/", "/Accesslog", "/debug", "/debug/pprof/", "/monitoring/x", "/metrics/", "//accesslog", "/%61ccesslog"])(
    "%s → 404 naming the path and what is served",
    async (path) => {
      const answer = await ask(new FakeBackend(ON), "POST", `${path}?enable=true`);
      expect(answer.status).toBe(404);
      expect(text(answer.body)).toStartWith(`404 page not found: ${JSON.stringify(path)}\nthis agent serves: POST /monitoring`);
    },
  );
});

test("splitTarget keeps the raw query and drops a fragment", () => {
  expect(splitTarget("http://h:1/accesslog?enable=%zz+1&x")).toEqual({ path: "/accesslog", rawQuery: "enable=%zz+1&x" });
  expect(splitTarget("http://h:1/a#b?c")).toEqual({ path: "/a", rawQuery: "" });
  expect(splitTarget("http://[::1]:1")).toEqual({ path: "/", rawQuery: "" });
});

describe("the TCP metrics' address", () => {
  const TEXT = '# HELP kmesh_tcp_sent_bytes_total x\n# TYPE kmesh_tcp_sent_bytes_total counter\nkmesh_tcp_sent_bytes_total{reporter="source"} 5\n';
  const render = () => TEXT;

  test("GET and HEAD at /status/metric (Kmesh's path) and /metrics: the text, Prometheus's content type", async () => {
    for (const path of ["/status/metric", "/metrics"]) {
      const response = handleMetricsRequest(render, "GET", `http://127.0.0.1:15020${path}`);
      expect(response.status).toBe(200);
      expect(response.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
      expect(await response.text()).toBe(TEXT);
    }
    expect(handleMetricsRequest(render, "HEAD", "http://h/metrics").status).toBe(200);
  });

  test("gzipped when the scraper takes it (Prometheus sends Accept-Encoding: gzip)", async () => {
    const response = handleMetricsRequest(render, "GET", "http://h/status/metric", "gzip");
    expect(response.headers.get("content-encoding")).toBe("gzip");
    expect(new TextDecoder().decode(Bun.gunzipSync(new Uint8Array(await response.arrayBuffer())))).toBe(TEXT);
    expect([acceptsGzip("gzip"), acceptsGzip("deflate, GZIP;q=0.5"), acceptsGzip("identity"), acceptsGzip("gzip;q=0"), acceptsGzip("gzip; q=0.000"), acceptsGzip(null), acceptsGzip("x-gzip")]).toEqual([
      true,
      true,
      false,
      false,
      false,
      false,
      false,
    ]);
  });

  test("other methods 405, other paths 404 naming what is served", async () => {
    const post = handleMetricsRequest(render, "POST", "http://h/metrics");
    expect([post.status, post.headers.get("allow"), await post.text()]).toEqual([405, "GET, HEAD", "Method Not Allowed\n"]);
    const other = handleMetricsRequest(render, "GET", "http://h/stats?x=1");
    expect([other.status, await other.text()]).toEqual([404, '404 page not found: "/stats"\nthis address serves: GET /status/metric, GET /metrics\n']);
  });
});
