// The API-server line of `check`: in a cluster (or with --kube-api / --kubeconfig) `run` lists and
// watches Services, EndpointSlices and Pods to name services and remote pods. Here each of those
// lists is asked for once (one item), with the settings and client `run` uses. The agent runs
// without it (dst.service is the address, remote pods are -), so a failure is a warning; settings
// that `run` would refuse (an unusable kubeconfig) are a failure.
import { ApiClient, type ListPage } from "../kube/apiserver/client.ts";
import { ApiConfigError, resolveApiSettings } from "../kube/apiserver/settings.ts";
import { RESOURCES } from "../kube/apiserver/source.ts";
import { apiFix } from "../kube/failures.ts";
import type { RunOptions } from "../options.ts";
import { type CheckResult, checkLine } from "./report.ts";

const apiServerLine = checkLine("api-server", "API server");
const WITHOUT = "services will be addresses and remote pods -";
/** A list of one item answers at once; an address nothing answers on should not hold check for a minute. */
const CHECK_TIMEOUT_MS = 10_000;

/** The verdict on one list per resource; pure, for the tests. */
export function apiServerVerdict(server: string, origin: string, pages: readonly { kind: string; page: ListPage }[]): CheckResult {
  const failed = pages.find((entry) => !entry.page.ok);
  if (failed !== undefined && !failed.page.ok) {
    const { failure } = failed.page;
    return apiServerLine.warn(`${server} (${origin}): listing ${failed.kind} failed (${failure.kind}: ${failure.detail}); ${WITHOUT}`, apiFix(failure.kind));
  }
  return apiServerLine.ok(`${server} (${origin}) lists ${pages.map((entry) => entry.kind).join(", ")}`);
}

export async function apiServerCheck(flags: Partial<RunOptions>, env: Record<string, string | undefined> = process.env): Promise<CheckResult> {
  let settings: Awaited<ReturnType<typeof resolveApiSettings>>;
  try {
    settings = await resolveApiSettings(flags, env);
  } catch (error) {
    if (!(error instanceof ApiConfigError)) throw error;
    return apiServerLine.fail(error.message, "give a usable --kubeconfig, or run with --no-kube-api");
  }
  if (settings === null) {
    const why = flags.noKubeApi ? "--no-kube-api" : "not in a cluster; --kube-api or --kubeconfig to use one";
    return apiServerLine.skip(`not used (${why}): ${WITHOUT}`);
  }
  const client = new ApiClient(settings);
  const timeout: ListPage = { ok: false, failure: { kind: "timeout", detail: `no answer within ${CHECK_TIMEOUT_MS / 1000} s` } };
  let timer: Timer | undefined;
  const late = new Promise<ListPage>((resolve) => (timer = setTimeout(() => resolve(timeout), CHECK_TIMEOUT_MS)));
  try {
    const pages = await Promise.all(
      RESOURCES.map(async ({ kind, path }) => ({ kind, page: await Promise.race([client.listPage(path, 1, null), late]) })),
    );
    return apiServerVerdict(settings.server, settings.origin, pages);
  } finally {
    clearTimeout(timer);
  }
}
