// The errors that end a command, each knowing the exit code it means. main.ts alone turns an
// error into its one line on stderr and its exit code; anything else that reaches it is exit 1.
//   0  done    1  the command failed    2  what it was given cannot work (the command line, or a
//   setting a flag names, such as an unusable kubeconfig)

export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

export class ExitError extends Error {
  readonly exitCode: number = EXIT_FAILURE;
  /** What could not be done, said before the message (`cannot start the kernel probe: …`). */
  readonly context: string | null = null;
}

/** `read(path)`; when it throws, the error `fail` makes of why: the errno code (ENOENT), else the message. */
export function readOr<T>(read: (path: string) => T, path: string, fail: (why: string) => Error): T {
  try {
    return read(path);
  } catch (error) {
    throw fail((error as NodeJS.ErrnoException).code ?? (error as Error).message);
  }
}

/** A mistake on the command line. The message is one line, without the program name. */
export class UsageError extends ExitError {
  override name = "UsageError";
  override readonly exitCode = EXIT_USAGE;
}
