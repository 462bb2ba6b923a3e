// GET and PUT /filters without a socket: the JSON shown, the schema's answers to bad bodies (a
// 400 naming the field and what it takes, nothing changed), a refusal from the agent, the audit
// line's words.
import { describe, expect, test } from "bun:test";
import { auditLine } from "../../../src/admin/access.ts";
import { describeFilters, parseFilters } from "../../../src/admin/filters.ts";
import { FiltersRefused } from "../../../src/admin/filters.ts";
import { handleAdminRequest } from "../../../src/admin/routes.ts";
import { canonicalCidr } from "../../../src/address.ts";
import { type Filters, filtersOf } from "../../../src/options.ts";
import { FakeBackend, SWITCHES_ON } from "../fixtures.ts";

const NONE = filtersOf({});
const EMPTY_JSON =
  '{"namespace":[],"excludeNamespace":[],"pod":[],"excludePod":[],"port":[],"excludePort":[],"cidr":[],"excludeCidr":[],"direction":null,"failedOnly":false,"minDuration":null}\n';

async function ask(backend: FakeBackend, method: string, body = "") {
  const response = handleAdminRequest(backend, method, "http://127.0.0.1:15200/filters", new TextEncoder().encode(body));
  return { status: response.status, body: await response.text(), type: response.headers.get("content-type"), allow: response.headers.get("allow") };
}

describe("GET and PUT /filters", () => {
  test("GET: every field, in the flag table's order, as JSON", async () => {
    expect(await ask(new FakeBackend(), "GET")).toEqual({ status: 200, body: EMPTY_JSON, type: "application/json", allow: null });
  });
  test("PUT: replaces every filter (a field left out is none), answers what it applied; networks in canonical form", async () => {
    const backend = new FakeBackend();
    backend.filterState = filtersOf({ port: [80], excludeNamespace: ["kube-system"] });
    const answer = await ask(backend, "PUT", '{"cidr": ["10.1.2.3/8", "fd00::1/8"], "direction": "INBOUND", "failedOnly": true, "minDuration": 0.25}');
    expect(answer.status).toBe(200);
    const expected: Filters = { ...NONE, cidr: ["10.0.0.0/8", "fd00::/8"], direction: "INBOUND", failedOnly: true, minDuration: 0.25 };
    expect(JSON.parse(answer.body)).toEqual(expected);
    expect(backend.filterState).toEqual(expected);
    expect((await ask(backend, "PUT", "{}")).status).toBe(200);
    expect(backend.filterState).toEqual(NONE);
  });
  test("other methods: 405 with Allow", async () => {
    for (const method of ["POST", "DELETE", "PATCH"]) {
      expect(await ask(new FakeBackend(), method)).toEqual({
        status: 405,
        body: "Method Not Allowed\n",
        type: "text/plain; charset=utf-8",
        allow: "GET, HEAD, PUT",
      });
    }
  });

  const BAD: [string, string][] = [
    ["", "the body is empty: send a JSON object such as {\"port\": [80, 443], \"excludeNamespace\": [\"kube-system\"]}"],
    ["{", "the body is not JSON (JSON Parse error: Expected '}'): send a JSON object such as {\"port\": [80, 443], \"excludeNamespace\": [\"kube-system\"]}"],
    ["[80]", "the body is an array: send a JSON object such as {\"port\": [80, 443], \"excludeNamespace\": [\"kube-system\"]}"],
    ["null", "the body is null: send a JSON object such as {\"port\": [80, 443], \"excludeNamespace\": [\"kube-system\"]}"],
    ['{"ports": [80]}', 'unknown field "ports": the fields are namespace, excludeNamespace, pod, excludePod, port, excludePort, cidr, excludeCidr, direction, failedOnly, minDuration'],
    ['{"port": [80, 70000]}', "port[1]: 70000 is not valid (expected a port number from 1 to 65535)"],
    ['{"port": [0]}', "port[0]: 0 is not valid (expected a port number from 1 to 65535)"],
    ['{"port": [8.5]}', "port[0]: 8.5 is not valid (expected a port number from 1 to 65535)"],
    ['{"port": 80}', "port: 80 is not valid (expected a list, each item a port number from 1 to 65535; [] for none)"],
    ['{"excludePort": ["80"]}', 'excludePort[0]: "80" is not valid (expected a port number from 1 to 65535)'],
    ['{"cidr": ["10.0.0.0/33"]}', 'cidr[0]: "10.0.0.0/33" is not valid (expected an IPv4 or IPv6 network, e.g. 10.244.0.0/16 or fd00::/8 (an address alone is /32 or /128))'],
    ['{"excludeCidr": ["pods"]}', 'excludeCidr[0]: "pods" is not valid (expected an IPv4 or IPv6 network, e.g. 10.244.0.0/16 or fd00::/8 (an address alone is /32 or /128))'],
    ['{"direction": "inbound"}', 'direction: "inbound" is not valid (expected OUTBOUND or INBOUND; null for none)'],
    ['{"failedOnly": "yes"}', 'failedOnly: "yes" is not valid (expected true or false)'],
    ['{"minDuration": -1}', "minDuration: -1 is not valid (expected a number of seconds from 0 to 2147483, e.g. 0.5; null for none)"],
    ['{"namespace": ["Kube_System"]}', "namespace[0]: \"Kube_System\" is not valid (expected a namespace name (lower-case letters, digits, '-'))"],
    ['{"pod": [""]}', "pod[0]: \"\" is not valid (expected a pod name (lower-case letters, digits, '-', '.'))"],
  ];
  test.each(BAD)("PUT %j → 400 naming what is wrong; nothing changed", async (body, why) => {
    const backend = new FakeBackend();
    backend.filterState = filtersOf({ port: [80] });
    const before = backend.filterState;
    expect(await ask(backend, "PUT", body)).toEqual({
      status: 400,
      body: `invalid filters: ${why}; nothing was changed\n`,
      type: "text/plain; charset=utf-8",
      allow: null,
    });
    expect(backend.filterState).toBe(before);
  });

  test("the agent refuses (no pod names): 400 with its words, nothing changed", async () => {
    const backend = new FakeBackend();
    backend.setFilters = () => {
      throw new FiltersRefused("namespace: no names here");
    };
    expect((await ask(backend, "PUT", '{"namespace": ["shop"]}')).body).toBe("invalid filters: namespace: no names here; nothing was changed\n");
    expect(backend.filterState).toEqual(NONE);
  });
});

describe("words", () => {
  test("describeFilters: the flags that set them, in the table's order", () => {
    expect(describeFilters(NONE)).toBe("");
    expect(describeFilters(filtersOf({ minDuration: 1.5, port: [80, 443], excludeNamespace: ["kube-system"], failedOnly: true, direction: "INBOUND" }))).toBe(
      "--exclude-namespace kube-system --port 80 --port 443 --direction INBOUND --failed-only --min-duration 1.5",
    );
  });
  test("the audit line of a PUT: old -> new, or what stays", () => {
    const requester = { via: "unix", socket: "/run/a.sock" } as const;
    const common = { method: "PUT", target: "/filters", requester, before: SWITCHES_ON, after: SWITCHES_ON };
    const filters = { before: NONE, after: filtersOf({ port: [80] }) };
    expect(auditLine({ ...common, status: 200, why: "", filters })).toBe('admin API: accepted (200) PUT "/filters" from unix socket /run/a.sock: filters none -> --port 80');
    expect(auditLine({ ...common, status: 400, why: '"invalid filters: x"', filters: { before: filters.after, after: filters.after } })).toBe(
      'admin API: refused (400) PUT "/filters" from unix socket /run/a.sock: filters stay --port 80; "invalid filters: x"',
    );
  });
  test("parseFilters and the flags agree: the same schema", () => {
    expect(parseFilters(new TextEncoder().encode('{"excludePort": [22]}'))).toEqual(filtersOf({ excludePort: [22] }));
  });
  test("networks: host bits cleared, an address alone is a host, IPv4-mapped becomes IPv4, nonsense is null", () => {
    expect(canonicalCidr("10.1.2.3/8")).toBe("10.0.0.0/8");
    expect(canonicalCidr("10.1.2.3")).toBe("10.1.2.3/32");
    expect(canonicalCidr("10.1.2.3/0")).toBe("0.0.0.0/0");
    expect(canonicalCidr("10.244.1.77/26")).toBe("10.244.1.64/26");
    expect(canonicalCidr("FD00:0:0::1/8")).toBe("fd00::/8");
    expect(canonicalCidr("2001:db8::1")).toBe("2001:db8::1/128");
    expect(canonicalCidr("::ffff:10.1.0.0/112")).toBe("10.1.0.0/16");
    for (const bad of ["10.0.0.0/33", "10.0.0.0/", "10.0.0.0/08", "10.0.0/8", "::/129", "x", "10.0.0.0/8/8", ""]) expect(canonicalCidr(bad)).toBeNull();
  });
});
