// The pod index's look-up by number (the line path's, for IPv4) against its look-up by text.
import { expect, test } from "bun:test";
import { ipv4Number } from "../../../../src/address.ts";
import { PodIndex } from "../../../../src/kube/kubelet/pod-index.ts";
import { checkPodList } from "../../../../src/kube/kubelet/pod-list.ts";
import { podIps } from "../../../../src/kube/pod.ts";
import { busyNodePodList, pod, podList } from "../../../support/kubelet-pods.ts";
import { seededRandom } from "../../../support/random.ts";

function indexOf(list: Record<string, unknown>): PodIndex {
  const checked = checkPodList(list);
  if (!checked.ok) throw new Error(checked.problem);
  return PodIndex.fromPods(checked.pods);
}

test("by number, every IPv4 address finds what its text finds: pods, claims lost, the node's own, none", () => {
  const checked = checkPodList(busyNodePodList(1000));
  if (!checked.ok) throw new Error(checked.problem);
  const index = PodIndex.fromPods(checked.pods);
  const texts = new Set(checked.pods.flatMap(podIps));
  // the node's addresses, and addresses near the pods' that no pod has
  for (const p of checked.pods) for (const h of p.status?.hostIPs ?? []) texts.add(h.ip);
  for (let i = 0; i < 4096; i++) texts.add(`10.244.${i >> 8}.${i & 255}`);
  for (const extra of ["0.0.0.0", "127.0.0.1", "255.255.255.255", "10.245.0.2"]) texts.add(extra);
  let found = 0;
  let v4 = 0;
  for (const text of texts) {
    const address = ipv4Number(text);
    if (address < 0) continue;
    v4++;
    const byText = index.lookup(text);
    if (index.lookupV4(address) !== byText) expect(`${text}: ${index.lookupV4(address)?.name}`).toBe(`${text}: ${byText?.name}`);
    if (byText !== undefined) found++;
  }
  // of 1,869 pod IPs indexed, 933 are IPv4 (the rest IPv6); the other 4,000 or so texts are misses
  expect(index.size).toBe(1869);
  expect(found).toBe(933);
  expect(v4).toBeGreaterThan(4096);
});

test("by number: 3,000 pods at random addresses, so that many share a slot, each found, and 100,000 other addresses not", () => {
  const { int } = seededRandom(2026);
  const ips = new Set<string>();
  while (ips.size < 3000) ips.add(`${1 + int(223)}.${int(256)}.${int(256)}.${1 + int(254)}`);
  const index = indexOf(podList([...ips].map((ip4, i) => pod({ name: `p${i}`, namespace: "shop", ip4 }))));
  let i = 0;
  for (const ip of ips) {
    const name = index.lookupV4(ipv4Number(ip))?.name;
    if (name !== `p${i}`) expect(`${ip}: ${name}`).toBe(`${ip}: p${i}`);
    i++;
  }
  let others = 0;
  while (others < 100_000) {
    const ip = `${1 + int(223)}.${int(256)}.${int(256)}.${1 + int(254)}`;
    if (ips.has(ip)) continue;
    others++;
    if (index.lookupV4(ipv4Number(ip)) !== undefined) expect(`${ip}: found`).toBe(`${ip}: not found`);
  }
});

test("by number: an address a hostNetwork pod also names is the node's, no pod's; the empty index finds nothing", () => {
  const index = indexOf(
    podList([
      pod({ name: "web-0", namespace: "shop", ip4: "10.244.0.7" }),
      pod({ name: "kube-proxy-x", namespace: "kube-system", hostNetwork: true }),
      pod({ name: "ends-in-ff", namespace: "shop", ip4: "10.244.0.255" }),
    ]),
  );
  expect(index.lookupV4(ipv4Number("10.244.0.7"))?.name).toBe("web-0");
  expect(index.lookupV4(ipv4Number("10.244.0.255"))?.name).toBe("ends-in-ff");
  expect(index.lookupV4(ipv4Number("10.244.0.8"))).toBeUndefined();
  expect(index.lookupV4(0xffffffff)).toBeUndefined();
  expect([index.lookup("172.18.0.3"), index.lookupV4(ipv4Number("172.18.0.3"))]).toEqual([undefined, undefined]); // kube-proxy's, the node's
  expect(PodIndex.EMPTY.lookupV4(ipv4Number("10.244.0.7"))).toBeUndefined();
});
