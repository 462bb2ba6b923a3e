// The pod source's schedule and its stderr lines: one when a failure kind starts, one when it
// ends, never one per attempt; the last good index is kept through failures.
import { describe, expect, test } from "bun:test";
import type { KubeletFailureKind as FailureKind } from "../../../../src/kube/failures.ts";
import { PodSource } from "../../../../src/kube/kubelet/pod-source.ts";
import { FakeClock, FakeRefresher } from "../../fixtures.ts";

const URL = "https://10.0.0.5:10250/pods";
const WEB = { name: "web-0", namespace: "shop", ip4: "10.244.1.5" };

function source(tokenFile: string | null = "/var/run/secrets/kubernetes.io/serviceaccount/token") {
  const clock = new FakeClock();
  const refresher = new FakeRefresher(clock);
  const notices: string[] = [];
  const src = new PodSource({ url: URL, tokenFile, refreshMs: 5000, refresher, scheduler: clock, notice: (m) => notices.push(m) });
  src.start();
  return { clock, refresher, notices, src };
}

const fail = (kind: FailureKind, detail: string) => ({ kind, detail });

describe("schedule", () => {
  test("a refresh at start, then every refreshMs after the previous start, one at a time", async () => {
    const { clock, refresher, src } = source();
    expect(refresher.starts).toEqual([clock.now]);
    const t0 = clock.now;
    await clock.advance(7000); // the first one is still running: nothing else starts
    expect(refresher.starts).toEqual([t0]);
    await refresher.answer([WEB]); // 7 s after its start: the next is due at once
    await clock.advance(0);
    expect(refresher.starts).toEqual([t0, t0 + 7000e6]);
    await refresher.answer([WEB]);
    await clock.advance(4999);
    expect(refresher.starts).toHaveLength(2);
    await clock.advance(1);
    expect(refresher.starts).toEqual([t0, t0 + 7000e6, t0 + 12000e6]);
    src.stop();
    expect(refresher.closed).toBe(true);
    await refresher.answer([WEB]); // an answer after stop changes nothing and schedules nothing
    await clock.advance(60_000);
    expect(refresher.starts).toHaveLength(3);
  });

  test("completedStartNs and onRefreshed follow completed refreshes, failed ones too", async () => {
    const { clock, refresher, src } = source();
    const seen: number[] = [];
    src.onRefreshed = (start) => seen.push(start);
    expect(src.completedStartNs).toBe(Number.NEGATIVE_INFINITY);
    const t0 = clock.now;
    await refresher.fail(fail("unreachable", "ECONNREFUSED"));
    expect(src.completedStartNs).toBe(t0);
    expect(seen).toEqual([t0]);
  });
});

describe("one stderr line per failure kind, when it starts and when it ends", () => {
  test("unreachable three times, then an answer", async () => {
    const { clock, refresher, notices, src } = source();
    for (let i = 0; i < 3; i++) {
      await refresher.fail(fail("unreachable", "ECONNREFUSED: Unable to connect"));
      await clock.advance(5000);
    }
    expect(notices).toEqual([`cannot reach the kubelet at ${URL} (ECONNREFUSED: Unable to connect); pod names are '-' until it answers`]);
    await refresher.answer([WEB]);
    expect(notices[1]).toBe(`the kubelet at ${URL}: the connection failure is over; pod list received (1 pod, 1 pod IP indexed)`);
    expect(notices).toHaveLength(2);
    expect(src.lookup("10.244.1.5")?.name).toBe("web-0");
  });

  test("the first good list is announced once", async () => {
    const { clock, refresher, notices } = source();
    await refresher.answer([WEB]);
    await clock.advance(5000);
    await refresher.answer([WEB]);
    expect(notices).toEqual([`pod list from the kubelet at ${URL}: 1 pod, 1 pod IP indexed; refreshing every 5 s`]);
  });

  test("every kind's message; a change of kind ends the old one first; the last good index is kept", async () => {
    const { clock, refresher, notices, src } = source();
    await refresher.answer([WEB]);
    notices.length = 0;
    const kinds: [FailureKind, string][] = [
      ["timeout", "no complete answer within 5 s"],
      ["tls", "UNABLE_TO_VERIFY_LEAF_SIGNATURE: unable to verify the first certificate"],
      ["unauthorized", "401 Unauthorized: Unauthorized"],
      ["forbidden", "403 Forbidden: Forbidden (user=system:serviceaccount:kmesh:accesslog, verb=get, resource=nodes, subresource(s)=[pods])"],
      ["http", "500 Internal Server Error"],
      ["invalid", "not JSON: JSON Parse error: Unexpected identifier \"garbage\""],
      ["credentials", "cannot read /run/token: ENOENT"],
    ];
    for (const [kind, detail] of kinds) {
      await clock.advance(5000);
      await refresher.fail(fail(kind, detail));
      await clock.advance(5000);
      await refresher.fail(fail(kind, detail)); // the same kind again: silent
    }
    await clock.advance(5000);
    await refresher.answer([WEB]);
    const keep = (age: number) => `; keeping the last good pod list (1 pod, ${age} s old) until it answers`;
    expect(notices).toEqual([
      `the kubelet at ${URL} did not answer in time (no complete answer within 5 s)${keep(5)}`,
      `the kubelet at ${URL}: the timeout is over`,
      `cannot verify the TLS certificate of the kubelet at ${URL} (UNABLE_TO_VERIFY_LEAF_SIGNATURE: unable to verify the first certificate): give the CA that signed it with --kubelet-ca-file, or turn verification off with --kubelet-insecure-skip-tls-verify${keep(15)}`,
      `the kubelet at ${URL}: the TLS failure is over`,
      `the kubelet at ${URL} refused our credentials (401 Unauthorized: Unauthorized): check the bearer token in /var/run/secrets/kubernetes.io/serviceaccount/token (--kubelet-token-file)${keep(25)}`,
      `the kubelet at ${URL}: the 401 Unauthorized is over`,
      `the kubelet at ${URL} forbids the pod list (403 Forbidden: Forbidden (user=system:serviceaccount:kmesh:accesslog, verb=get, resource=nodes, subresource(s)=[pods])): the service account needs RBAC "get" on nodes/pods (Kubernetes 1.33 and later) and on nodes/proxy (older clusters)${keep(35)}`,
      `the kubelet at ${URL}: the 403 Forbidden is over`,
      `the kubelet at ${URL} answered HTTP 500 Internal Server Error${keep(45)}`,
      `the kubelet at ${URL}: the HTTP error is over`,
      `the kubelet at ${URL} sent an invalid pod list (not JSON: JSON Parse error: Unexpected identifier "garbage")${keep(55)}`,
      `the kubelet at ${URL}: the invalid pod list is over`,
      `cannot use the kubelet credentials (cannot read /run/token: ENOENT): check --kubelet-token-file and --kubelet-ca-file${keep(65)}`,
      `the kubelet at ${URL}: the credentials problem is over; pod list received (1 pod, 1 pod IP indexed)`,
    ]);
    expect(src.lookup("10.244.1.5")?.name).toBe("web-0");
  });

  test("401 without a token file says how to give one", async () => {
    const { refresher, notices } = source(null);
    await refresher.fail(fail("unauthorized", "401 Unauthorized"));
    expect(notices).toEqual([
      `the kubelet at ${URL} refused our credentials (401 Unauthorized): no bearer token was sent; give one with --kubelet-token-file; pod names are '-' until it answers`,
    ]);
  });

  test("an invalid list keeps the last good index", async () => {
    const { clock, refresher, src } = source();
    await refresher.answer([WEB]);
    await clock.advance(5000);
    await refresher.fail(fail("invalid", "items[0] (pod a/b): status.podIP: not an IP address"));
    expect(src.lookup("10.244.1.5")?.name).toBe("web-0");
    expect(src.index.podCount).toBe(1);
  });
});
