// The agent's own metrics, in the Prometheus text exposition format (0.0.4). Every part of the
// agent registers what it counts here, once (`registry.add(name, type, help, read)`), with a
// function that reads the current value: nothing is copied on the hot path, values are read when
// /metrics is scraped.

export const METRIC_PREFIX = "kmesh_accesslog_";
export const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

export type MetricType = "counter" | "gauge";

export interface Sample {
  labels?: Readonly<Record<string, string>>;
  value: number;
}

export interface MetricDefinition {
  /** Full metric name, e.g. `kmesh_accesslog_records_read_total` (counters end in `_total`). */
  name: string;
  type: MetricType;
  /** One sentence for `# HELP`. */
  help: string;
  /** The current value, or one sample per label set. Called at every scrape; must not throw. */
  read: () => number | readonly Sample[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

export class MetricsRegistry {
  readonly #metrics = new Map<string, MetricDefinition>();

  /** Adds a metric; throws on a bad or duplicate name (a programming error). */
  register(metric: MetricDefinition): void {
    if (!METRIC_NAME.test(metric.name)) throw new Error(`invalid metric name ${JSON.stringify(metric.name)}`);
    if (metric.type === "counter" && !metric.name.endsWith("_total")) {
      throw new Error(`counter ${metric.name} must end in _total`);
    }
    if (this.#metrics.has(metric.name)) throw new Error(`metric ${metric.name} is registered twice`);
    this.#metrics.set(metric.name, metric);
  }

  /** Adds our metric `kmesh_accesslog_<name>`. */
  add(name: string, type: MetricType, help: string, read: MetricDefinition["read"]): void {
    this.register({ name: `${METRIC_PREFIX}${name}`, type, help, read });
  }

  /** The exposition text, metrics in registration order. */
  render(): string {
    let text = "";
    for (const metric of this.#metrics.values()) {
      let value: number | readonly Sample[];
      try {
        value = metric.read();
      } catch {
        continue; // a broken reader loses its metric, never the scrape
      }
      const samples = typeof value === "number" ? [{ value }] : value;
      text += `# HELP ${metric.name} ${escapeHelp(metric.help)}\n# TYPE ${metric.name} ${metric.type}\n`;
      for (const sample of samples) text += `${metric.name}${formatLabels(sample.labels)} ${formatValue(sample.value)}\n`;
    }
    return text;
  }
}

function formatLabels(labels: Readonly<Record<string, string>> | undefined): string {
  const entries = Object.entries(labels ?? {});
  if (entries.length === 0) return "";
  const parts = entries.map(([name, value]) => {
    if (!LABEL_NAME.test(name)) throw new Error(`invalid label name ${JSON.stringify(name)}`);
    return `${name}="${escapeLabelValue(value)}"`;
  });
  return `{${parts.join(",")}}`;
}

/** A label value in the exposition text: `\`, `"` and a line feed escaped. */
export function escapeLabelValue(value: string): string {
  return value.replaceAll("\\", "\\\\").replaceAll('"', '\\"').replaceAll("\n", "\\n");
}

function escapeHelp(help: string): string {
  return help.replaceAll("\\", "\\\\").replaceAll("\n", "\\n");
}

/** Numbers as String() writes them (NaN too), but the infinities as Prometheus spells them. */
function formatValue(value: number): string {
  if (value === Number.POSITIVE_INFINITY) return "+Inf";
  if (value === Number.NEGATIVE_INFINITY) return "-Inf";
  return String(value);
}

/** One parsed sample of exposition text (what `status` reads back). */
export interface ParsedSample {
  name: string;
  labels: Record<string, string>;
  value: number;
  help: string;
}

/** Reads the exposition text this registry writes (not a general Prometheus parser). */
export function parseExposition(text: string): ParsedSample[] {
  const help = new Map<string, string>();
  const samples: ParsedSample[] = [];
  for (const line of text.split("\n")) {
    if (line === "") continue;
    const helpLine = /^# HELP (\S+) (.*)$/.exec(line);
    if (helpLine) {
      help.set(helpLine[1]!, helpLine[2]!.replaceAll("\\n", "\n").replaceAll("\\\\", "\\"));
      continue;
    }
    if (line.startsWith("#")) continue;
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!sample) continue;
    const labels: Record<string, string> = {};
    for (const pair of (sample[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[pair[1]!] = pair[2]!.replace(/\\(.)/g, (_, c: string) => (c === "n" ? "\n" : c));
    }
    const raw = sample[3]!;
    const value = raw === "+Inf" ? Infinity : raw === "-Inf" ? -Infinity : Number(raw);
    samples.push({ name: sample[1]!, labels, value, help: help.get(sample[1]!) ?? "" });
  }
  return samples;
}
