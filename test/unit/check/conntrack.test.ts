// When `check` tries the conntrack hook and when it does not say anything of it: the decisions made
// before anything loads (the load itself is tested end to end, test/e2e/clusterip-conntrack.test.ts).
import { describe, expect, test } from "bun:test";
import { conntrackCheck } from "../../../src/check/conntrack.ts";
import type { CheckResult, CheckStatus } from "../../../src/check/report.ts";

const line = (id: string, status: CheckStatus): CheckResult => ({ id, label: id, status, detail: "" });
const never = () => {
  throw new Error("nf_conntrack was looked for");
};

describe("the conntrack line", () => {
  test("without the API server it is not used: no line is known to go to a ClusterIP", async () => {
    for (const api of [line("api-server", "skip"), undefined]) {
      const earlier = [line("probe", "ok"), ...(api === undefined ? [] : [api])];
      expect(await conntrackCheck(undefined, earlier, never)).toEqual({
        id: "conntrack",
        label: "conntrack",
        status: "skip",
        detail: "not used without the API server (no line is known to go to a ClusterIP)",
      });
    }
  });

  test("not tried after a failed probe or API-server line", async () => {
    expect((await conntrackCheck(undefined, [line("probe", "fail"), line("api-server", "warn")], never)).detail).toBe("not tried (probe failed)");
    expect((await conntrackCheck(undefined, [line("probe", "ok"), line("api-server", "fail")], never)).detail).toBe("not tried (API server failed)");
  });

  test("nf_conntrack not loaded: nothing to hook yet, which the agent does once it is", async () => {
    const result = await conntrackCheck(undefined, [line("probe", "ok"), line("api-server", "warn")], () => false);
    expect(result).toEqual({
      id: "conntrack",
      label: "conntrack",
      status: "skip",
      detail: "nf_conntrack is not loaded (no NAT on this node yet): the agent hooks it once it is",
    });
  });
});
