// The OTLP exporter's settings: the headers file's format and what it refuses (naming the line,
// never the value), files that cannot work refused at start, and the defaults.
import { describe, expect, test } from "bun:test";
import { runOptions } from "../../../support/cli.ts";
import { OtlpConfigError, parseHeaders, resolveExporterSettings } from "../../../../src/sink/otlp/settings.ts";
import { VERSION } from "../../../../src/options.ts";

const SECRET = "Bearer s3cr3t-t0ken";

describe("parseHeaders", () => {
  test("one `Name: value` per line; blank lines and # comments ignored; spaces around trimmed", () => {
    const text = `# for the gateway\nAuthorization: ${SECRET}\r\n\n  X-Scope-OrgID :  tenant-1  \nX-Empty:\n`;
    expect(parseHeaders(text, "/h")).toEqual([
      ["Authorization", SECRET],
      ["X-Scope-OrgID", "tenant-1"],
      ["X-Empty", ""],
    ]);
  });

  test.each([
    [`Authorization ${SECRET}`, '/h line 2 is not "Name: value"'],
    [`Bad Name: ${SECRET}`, '/h line 2: "Bad Name" is not a header name'],
    [`Content-Encoding: identity`, "/h line 2: Content-Encoding is set by the exporter itself; remove the line"],
    [`Authorization: ${SECRET}\u0007`, "/h line 2: the value of Authorization holds a control or non-ASCII character"],
    [`Authorization: Bearer é${SECRET}`, "/h line 2: the value of Authorization holds a control or non-ASCII character"],
  ])("%j is refused, the value never shown", (line, message) => {
    expect(() => parseHeaders(`# first\n${line}\n`, "/h")).toThrow(message);
    try {
      parseHeaders(`# first\n${line}\n`, "/h");
    } catch (error) {
      expect((error as Error).message).not.toContain("s3cr3t");
    }
  });
});

describe("resolveExporterSettings", () => {
  const files: Record<string, string> = { "/h": `Authorization: ${SECRET}\n`, "/bad-h": `Authorization ${SECRET}\n`, "/ca": "-----BEGIN CERTIFICATE-----\nMII\n-----END CERTIFICATE-----\n", "/not-ca": "hello\n" };
  const read = (path: string) => {
    if (!(path in files)) throw Object.assign(new Error(`ENOENT: ${path}`), { code: "ENOENT", path });
    return files[path]!;
  };

  test("none without --otlp-endpoint; the defaults; the node's name from NODE_NAME", () => {
    expect(resolveExporterSettings(runOptions(), {}, read)).toBeNull();
    const s = resolveExporterSettings(runOptions("--otlp-endpoint", "http://c:4318"), { NODE_NAME: "node-7" }, read)!;
    expect(s).toMatchObject({
      url: "http://c:4318/v1/logs",
      headers: null,
      ca: null,
      insecureSkipVerify: false,
      batchSize: 1024,
      batchDelayMs: 1000,
      queueSize: 100_000,
      timeoutMs: 10_000,
      flushTimeoutMs: 5_000,
      resource: [["service.name", "kmesh-accesslog"], ["service.version", VERSION], ["host.name", "node-7"], ["k8s.node.name", "node-7"]],
    });
  });

  test("a headers file and a CA that can be used", () => {
    const s = resolveExporterSettings(runOptions("--otlp-endpoint", "https://c", "--otlp-headers-file", "/h", "--otlp-ca-file", "/ca"), {}, read)!;
    expect(s.headers?.read()).toEqual({ ok: true, value: files["/h"]! });
    expect(s.ca?.read()).toEqual({ ok: true, value: files["/ca"]! });
    expect(s.resource.map(([key]) => key)).not.toContain("k8s.node.name");
  });

  test.each([
    [["--otlp-headers-file", "/missing"], "--otlp-headers-file: cannot read /missing: ENOENT"],
    [["--otlp-headers-file", "/bad-h"], '--otlp-headers-file: /bad-h line 1 is not "Name: value"'],
    [["--otlp-ca-file", "/not-ca"], "--otlp-ca-file: no PEM certificate in /not-ca"],
  ])("%j is refused at start (exit code 2)", (flags, message) => {
    const start = () => resolveExporterSettings(runOptions("--otlp-endpoint", "https://c", ...flags), {}, read);
    expect(start).toThrow(OtlpConfigError);
    expect(start).toThrow(message);
    expect(new OtlpConfigError("x").exitCode).toBe(2);
  });
});
