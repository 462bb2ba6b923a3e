// --admin-addr values: host:port, [v6]:port, host names; what is refused.
import { expect, test } from "bun:test";
import { formatHostPort, parseHostPort } from "../../src/address.ts";
import { adminUrl } from "../../src/admin/client.ts";

test.each([
  ["127.0.0.1:15200", { host: "127.0.0.1", port: 15200 }],
  ["0.0.0.0:1", { host: "0.0.0.0", port: 1 }],
  ["[::1]:15200", { host: "::1", port: 15200 }],
  ["[fd00::1:2]:65535", { host: "fd00::1:2", port: 65535 }],
  ["localhost:15200", { host: "localhost", port: 15200 }],
  ["agent.kube-system.svc:80", { host: "agent.kube-system.svc", port: 80 }],
])("%j is accepted", (text, address) => {
  expect(parseHostPort(text)).toEqual(address);
  expect(formatHostPort(address)).toBe(text);
});

test.each([
  "", "15200", ":15200", "127.0.0.1", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:abc", "::1:15200", "[::1]",
  "[::1]:", "[127.0.0.1]:1", "[zz::1]:1", "999.1.1.1:1", "1.2.3:1", "host name:1", "-host:1", "http://127.0.0.1:15200", "127.0.0.1:15200/x",
])("%j is refused", (text) => {
  expect(parseHostPort(text)).toBeUndefined();
});

test("URLs bracket IPv6", () => {
  expect(adminUrl({ host: "::1", port: 15200 }, "/version")).toBe("http://[::1]:15200/version");
  expect(adminUrl({ host: "127.0.0.1", port: 15200 }, "/version")).toBe("http://127.0.0.1:15200/version");
});
