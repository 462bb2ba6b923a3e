// What `check` prints: one line per prerequisite, then a verdict; or the same as one JSON object.
// A failure (✘) means the agent cannot run here; a warning (⚠) is something it runs without.

export type CheckStatus = "ok" | "fail" | "warn" | "skip";

export interface CheckResult {
  /** stable key for --json */
  id: string;
  /** what the line is about, as printed */
  label: string;
  status: CheckStatus;
  /** what was found, one line */
  detail: string;
  /** what to do about a fail or a warning */
  fix?: string;
  /** more than fits on a line (the verifier's log): --json only */
  log?: string;
}

/** The results one line of `check` can have: `line.fail(detail, fix)`, `line.ok(detail)`, ... */
export function checkLine(id: string, label: string): Record<CheckStatus, (detail: string, fix?: string, log?: string) => CheckResult> {
  const result = (status: CheckStatus) => (detail: string, fix?: string, log?: string) => {
    const line: CheckResult = { id, label, status, detail };
    if (fix !== undefined) line.fix = fix;
    if (log !== undefined) line.log = log;
    return line;
  };
  return { ok: result("ok"), fail: result("fail"), warn: result("warn"), skip: result("skip") };
}

const MARK: Record<CheckStatus, string> = { ok: "✔", fail: "✘", warn: "⚠", skip: "-" };

export function formatCheckLine(result: CheckResult): string {
  const fix = result.fix === undefined ? "" : ` — fix: ${result.fix}`;
  return `${MARK[result.status]} ${result.label}: ${result.detail}${fix}`;
}

/** The agent can run when nothing failed; warnings and skips do not stop it. */
export function canRun(results: readonly CheckResult[]): boolean {
  return results.every((result) => result.status !== "fail");
}

const count = (n: number, noun: string) => `${n} ${noun}${n === 1 ? "" : "s"}`;

export function verdict(results: readonly CheckResult[]): string {
  const failed = results.filter((result) => result.status === "fail").length;
  const warned = results.filter((result) => result.status === "warn").length;
  if (failed > 0) return `the agent cannot run on this node: ${count(failed, "prerequisite")} missing (✘ above)`;
  return `the agent can run on this node${warned > 0 ? ` (${count(warned, "warning")}, ⚠ above)` : ""}`;
}

export function checkReportJson(results: readonly CheckResult[]): string {
  return `${JSON.stringify({ ok: canRun(results), verdict: verdict(results), checks: results }, null, 2)}\n`;
}
