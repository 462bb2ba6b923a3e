// Where each named report goes: a line on stdout (accesslog/sink.ts; none with --output none), an
// OTLP log record (otlp/exporter.ts; only with --otlp-endpoint), or both. Neither ever waits on
// the other: each takes the report and returns.
import type { AccessRecord } from "../accesslog/format.ts";
import type { LineSink } from "../accesslog/sink.ts";
import type { OtlpExporter } from "./otlp/exporter.ts";

export class Sinks {
  constructor(
    readonly lines: LineSink | null,
    readonly otlp: OtlpExporter | null,
  ) {}

  add(record: AccessRecord): void {
    this.lines?.add(record);
    this.otlp?.add(record);
  }

  /** Hands the lines of a drain to stdout (OTLP batches go by their own size and delay). */
  flush(): void {
    this.lines?.flush();
  }

  /** Lines written to stdout (0 with --output none). */
  get linesWritten(): number {
    return this.lines?.linesWritten ?? 0;
  }

  /** Lines dropped because stdout was not read fast enough or could not be written. */
  get linesDropped(): number {
    return this.lines?.linesDropped ?? 0;
  }

  /** Writes the last lines and sends what is queued (each within its own bound), side by side. */
  async close(): Promise<void> {
    await Promise.all([this.lines?.close(), this.otlp?.close()]);
  }
}
