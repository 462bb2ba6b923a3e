// stdout and stderr, each through one of Bun's FileSinks. process.stdout and process.stderr are
// Node streams whose classes cost a compiled program 2 MB the moment either is touched (README,
// "Footprint"): nothing but cleye's --help goes near them. As with the streams, a write never
// blocks (what a slow reader has not taken yet is kept and written as it can), and text written
// here that cannot be written (EPIPE: the reader has gone) is lost without a word. Access-log lines
// go through stdoutSink, whose failures end the run (accesslog/sink.ts).
import type { FileSink } from "bun";

let stdout: FileSink | null = null;
let stderr: FileSink | null = null;

/** The one writer of fd 1: access-log lines go straight to it (accesslog/sink.ts). */
export function stdoutSink(): FileSink {
  return (stdout ??= Bun.stdout.writer());
}

function write(sink: FileSink, text: string): void {
  try {
    const written = sink.write(text);
    if (written instanceof Promise) written.catch(() => undefined);
    const flushed = sink.flush();
    if (flushed instanceof Promise) flushed.catch(() => undefined);
  } catch {
    // The streams said nothing either.
  }
}

export function writeStdout(text: string): void {
  write(stdoutSink(), text);
}

export function writeStderr(text: string): void {
  write((stderr ??= Bun.stderr.writer()), text);
}
