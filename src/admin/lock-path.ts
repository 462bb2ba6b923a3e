// Where the node's single-agent lock lives (see instance-lock.ts), apart from
// the lock itself so that the command line can name it without loading bun:ffi.
export const DEFAULT_LOCK_FILE = "/run/kmesh-accesslog/agent.lock";
