// `status`: a running agent's switches and counters, read from its admin API
// (/version, /debug/ready, /metrics), as tables or as one JSON object.
import { fetchStatus, type AgentStatus } from "../admin/client.ts";
import { METRIC_PREFIX, type ParsedSample } from "../admin/metrics.ts";
import { forEachAgent } from "./agents.ts";
import type { AgentTarget } from "./target.ts";

const SWITCH_METRIC = `${METRIC_PREFIX}switch_enabled`;
/** Shown as state, not in the counters table. */
const STATE_METRICS = new Set([SWITCH_METRIC, ...["build_info", "ready", "kernel_emit_enabled", "periodic_reports_enabled"].map((name) => `${METRIC_PREFIX}${name}`)]);

/**
 * One agent: tables, or one indented JSON object. Every agent pod (agents.ts): one line each, a
 * summary or a one-line JSON object with the pod.
 */
export function statusCommand(json: boolean, target: AgentTarget): Promise<number> {
  const one = target.kind === "local";
  return forEachAgent(target, async (target, where) => {
    const status = await fetchStatus(target, where);
    if (one) return json ? JSON.stringify(statusJson(status), null, 2) : statusTables(status).trimEnd();
    return json ? JSON.stringify({ agent: where, ...statusJson(status) }) : statusLine(where, status);
  });
}

/** `pod ns/name: ready, kmesh-accesslog 0.1.0 (pid 7), writing close reports; monitoring on, ...; 12 lines written, 0 dropped` */
export function statusLine(where: string, status: AgentStatus): string {
  const j = statusJson(status);
  const switchesText = Object.entries(j.switches)
    .map(([name, on]) => `${name} ${on ? "on" : "off"}`)
    .join(", ");
  const lines = (name: string) => value(status, `${METRIC_PREFIX}${name}`) ?? 0;
  return (
    `${where}: ${status.ready ? "ready" : `not ready (${status.readyDetail})`}, ${status.version.program} ${status.version.gitVersion} (pid ${status.version.pid}), ` +
    `writing ${writing(j)}; ${switchesText}; ${lines("lines_written_total")} lines written, ${lines("lines_dropped_total")} dropped`
  );
}

function writing(j: { kernelEmit: boolean; periodicReports: boolean; switches: Record<string, boolean> }): string {
  if (!j.kernelEmit || j.switches.accesslog === false) return "nothing";
  return j.periodicReports ? "close reports and periodic reports" : "close reports";
}

function value(status: AgentStatus, name: string): number | undefined {
  return status.samples.find((s) => s.name === name)?.value;
}

function switches(status: AgentStatus): Record<string, boolean> {
  const out: Record<string, boolean> = {};
  for (const s of status.samples) if (s.name === SWITCH_METRIC && s.labels.switch) out[s.labels.switch] = s.value === 1;
  return out;
}

function sampleKey(s: ParsedSample): string {
  const labels = Object.entries(s.labels);
  return labels.length === 0 ? s.name : `${s.name}{${labels.map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(",")}}`;
}

function counters(status: AgentStatus): ParsedSample[] {
  return status.samples.filter((s) => !STATE_METRICS.has(s.name));
}

export function statusJson(status: AgentStatus) {
  return {
    address: status.address,
    program: status.version.program,
    version: status.version.gitVersion,
    pid: status.version.pid,
    ready: status.ready,
    ...(status.ready ? {} : { notReady: status.readyDetail }),
    switches: switches(status),
    kernelEmit: value(status, `${METRIC_PREFIX}kernel_emit_enabled`) === 1,
    periodicReports: value(status, `${METRIC_PREFIX}periodic_reports_enabled`) === 1,
    metrics: Object.fromEntries(counters(status).map((s) => [sampleKey(s), s.value])),
  };
}

/** `records_read_total` → `records read`; labels in parentheses. */
function label(s: ParsedSample): string {
  const base = s.name.replace(METRIC_PREFIX, "").replace(/_total$/, "").replaceAll("_", " ");
  const labels = Object.values(s.labels);
  return labels.length === 0 ? base : `${base} (${labels.join(", ")})`;
}

function table(header: [string, string], rows: [string, string][]): string {
  const width = Math.max(header[0].length, ...rows.map(([name]) => name.length)) + 3;
  return [header, ...rows].map(([name, v]) => `${`${name.padEnd(width)}${v}`.trimEnd()}\n`).join("");
}

export function statusTables(status: AgentStatus): string {
  const j = statusJson(status);
  return (
    table(
      ["AGENT", ""],
      [
        ["address", status.address],
        ["program", `${status.version.program} ${status.version.gitVersion}, pid ${status.version.pid}`],
        ["ready", status.ready ? "yes" : `no (${status.readyDetail})`],
        ["writing", writing(j)],
      ],
    ) +
    "\n" +
    table(["SWITCH", "STATE"], Object.entries(j.switches).map(([name, on]) => [name, on ? "enabled" : "disabled"])) +
    "\n" +
    table(["COUNTER", "VALUE"], counters(status).map((s) => [label(s), String(s.value)]))
  );
}
