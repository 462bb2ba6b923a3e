// The conntrack line of `check`: with the API server, `run` hooks the kernel's connection tracking
// (src/kernel/conntrack.ts) so that an OUTBOUND line to a ClusterIP names the backend the NAT
// chose, wherever it runs. Here the hook is loaded and attached as `run` would, and closed at once.
// The agent runs without it (a ClusterIP line then names its backend only when it is a pod of this
// node), so a failure is a warning.
import { CONNTRACK_FUNCTION, ConntrackHook, ConntrackHookError, conntrackLoaded } from "../kernel/conntrack.ts";
import { type CheckResult, checkLine } from "./report.ts";

const conntrackLine = checkLine("conntrack", "conntrack");
const WITHOUT = "ClusterIP lines name their backend only when it is a pod of this node";

/** `earlier`: the lines before it (the probe's and the API server's decide whether it is tried). */
export async function conntrackCheck(libbpfPath: string | undefined, earlier: readonly CheckResult[], loaded: () => boolean = conntrackLoaded): Promise<CheckResult> {
  const line = (id: string) => earlier.find((result) => result.id === id);
  const api = line("api-server");
  if (api === undefined || api.status === "skip") {
    return conntrackLine.skip("not used without the API server (no line is known to go to a ClusterIP)");
  }
  if (api.status === "fail" || line("probe")?.status === "fail") {
    return conntrackLine.skip(`not tried (${api.status === "fail" ? "API server" : "probe"} failed)`);
  }
  if (!loaded()) {
    return conntrackLine.skip("nf_conntrack is not loaded (no NAT on this node yet): the agent hooks it once it is");
  }
  try {
    const hook = await ConntrackHook.open(libbpfPath);
    hook.close();
    return conntrackLine.ok(`a ${hook.kind} on ${CONNTRACK_FUNCTION} loads and attaches; detached again: ClusterIP lines name the backend the NAT chose, wherever it runs`);
  } catch (error) {
    if (!(error instanceof ConntrackHookError)) throw error;
    return conntrackLine.warn(
      `cannot hook the kernel's connection tracking (${error.message}); ${WITHOUT}`,
      `nothing the agent needs; to name backends on other nodes: ${error.fix}`,
    );
  }
}
