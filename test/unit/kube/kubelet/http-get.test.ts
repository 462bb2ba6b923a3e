// The kubelet client's own HTTP/1.1 reader (src/kube/kubelet/http-get.ts) against a raw TCP server
// that sends exactly the bytes each test gives, split at awkward places: the three ways a body
// ends, and each malformed or broken answer as the failure the agent reports.
import { afterEach, describe, expect, test } from "bun:test";
import { KubeletClient } from "../../../../src/kube/kubelet/client.ts";

interface RawServer {
  url: string;
  /** the request head the client sent */
  request: Promise<string>;
  stop(): void;
}

/** Answers one connection with `parts`, one write each (a pause between), then closes unless `keepOpen`. */
function rawServer(parts: (string | Uint8Array)[], { keepOpen = false } = {}): RawServer {
  let gotRequest: (head: string) => void = () => undefined;
  const request = new Promise<string>((resolve) => {
    gotRequest = resolve;
  });
  let head = "";
  const server = Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      async data(socket, chunk) {
        head += chunk.toString("latin1");
        if (!head.includes("\r\n\r\n")) return;
        gotRequest(head);
        for (const part of parts) {
          socket.write(part);
          socket.flush();
          await Bun.sleep(5);
        }
        if (!keepOpen) socket.end();
      },
    },
  });
  return { url: `http://127.0.0.1:${server.port}/pods`, request, stop: () => server.stop(true) };
}

let server: RawServer | null = null;
afterEach(() => {
  server?.stop();
  server = null;
});

async function fetchText(parts: string[], timeoutMs = 2000, keepOpen = false) {
  server = rawServer(parts, { keepOpen });
  const client = new KubeletClient({ url: server.url, tokenFile: null, caFile: null, insecureSkipTlsVerify: false, timeoutMs });
  return client.fetchPods();
}

const list = JSON.stringify({ kind: "PodList", items: [{ metadata: { name: "ä-pod" } }] });

describe("the kubelet client's HTTP/1.1 reader", () => {
  test("sends one GET with the host, Connection: close and no compression asked for", async () => {
    const r = await fetchText([`HTTP/1.1 200 OK\r\nContent-Length: ${Buffer.byteLength(list)}\r\n\r\n${list}`]);
    expect(r).toEqual({ ok: true, text: list, bytes: Buffer.byteLength(list) });
    const head = await server!.request;
    expect(head).toBe(`GET /pods HTTP/1.1\r\nHost: ${new URL(server!.url).host}\r\nConnection: close\r\naccept: application/json\r\n\r\n`);
  });

  test("a chunked body split anywhere: the exact bytes", async () => {
    const body = Buffer.from(list);
    const chunked = `HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n${(10).toString(16)};ext=1\r\n${body.subarray(0, 10).toString("latin1")}\r\n${(body.byteLength - 10).toString(16)}\r\n${body.subarray(10).toString("latin1")}\r\n0\r\nX-Trailer: 1\r\n\r\n`;
    // Every few bytes a separate write: the head, size lines and CRLFs cut in two.
    const bytes = Buffer.from(chunked, "latin1");
    const parts: Uint8Array[] = [];
    for (let i = 0; i < bytes.byteLength; i += 7) parts.push(bytes.subarray(i, i + 7));
    server = rawServer(parts);
    const client = new KubeletClient({ url: server.url, tokenFile: null, caFile: null, insecureSkipTlsVerify: false, timeoutMs: 5000 });
    const chunks: Buffer[] = [];
    const r = await client.streamPods((chunk) => {
      chunks.push(Buffer.from(chunk));
    });
    expect(r).toEqual({ ok: true, bytes: body.byteLength });
    expect(Buffer.concat(chunks)).toEqual(body);
  });

  test("a body that ends with the connection (no length, not chunked)", async () => {
    expect(await fetchText(["HTTP/1.0 200 OK\r\n\r\n", list.slice(0, 5), list.slice(5)])).toEqual({ ok: true, text: list, bytes: Buffer.byteLength(list) });
  });

  test("a status other than 200: its code, reason and body's first line", async () => {
    const r = await fetchText(["HTTP/1.1 403 Forbidden\r\nContent-Length: 9\r\n\r\nForbidden"]);
    expect(r).toEqual({ ok: false, failure: { kind: "forbidden", detail: "403 Forbidden: Forbidden" } });
  });

  test("a malformed answer: invalid, saying what is wrong", async () => {
    expect(await fetchText(["SSH-2.0-OpenSSH_9.2\r\n\r\n"])).toEqual({
      ok: false,
      failure: { kind: "invalid", detail: 'not an HTTP/1.1 answer: the status line is not HTTP/1.x: "SSH-2.0-OpenSSH_9.2"' },
    });
    expect(await fetchText(["HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n"])).toEqual({
      ok: false,
      failure: { kind: "invalid", detail: "not an HTTP/1.1 answer: a compressed body (none was asked for)" },
    });
    expect(await fetchText(["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"])).toEqual({
      ok: false,
      failure: { kind: "invalid", detail: 'not an HTTP/1.1 answer: not a chunk size: "zz"' },
    });
    expect(await fetchText(["HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n"])).toEqual({
      ok: false,
      failure: { kind: "invalid", detail: "not an HTTP/1.1 answer: Content-Length is not one number" },
    });
  });

  test("a body cut short: unreachable, not a list", async () => {
    expect(await fetchText(["HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"kind\""])).toEqual({
      ok: false,
      failure: { kind: "unreachable", detail: "ECONNRESET: the connection closed inside the answer's body" },
    });
    expect(await fetchText(["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"kin"])).toMatchObject({ ok: false, failure: { kind: "unreachable" } });
    expect(await fetchText([])).toEqual({ ok: false, failure: { kind: "unreachable", detail: "ECONNRESET: the connection closed before an answer" } });
  });

  test("a body that stops coming: a timeout", async () => {
    const t0 = performance.now();
    expect(await fetchText(["HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"], 300, true)).toEqual({
      ok: false,
      failure: { kind: "timeout", detail: "no complete answer within 0.3 s" },
    });
    expect(performance.now() - t0).toBeLessThan(1500);
  });
});
