// Whether this kernel's tracepoints run their BPF programs preemptibly (bpf/preemption.bpf.c):
// where they do (Linux 7), the probe attaches its stand-ins (bpf/accesslog.bpf.c). Its own
// object, loaded and freed before the probe's: a kernel that refuses it only leaves the answer
// unknown.
import objectPath from "../../bpf/preemption.bpf.o" with { type: "file" };
import { BpfObject, type Libbpf } from "./libbpf.ts";
import { libc } from "./libc.ts";
import { AF_INET } from "./record.ts";

/** Mirror of struct preemption_seen in bpf/preemption.h (the object's .bss). */
export const PREEMPTION_SEEN_FIELDS = {
  in_task: { offset: 0, size: 1 },
  preemptible: { offset: 1, size: 1 },
} as const;
export const PREEMPTION_SEEN_SIZE = 2;

/**
 * "yes": a tracepoint ran the program in a task with preemption on; "no": with it off; "unknown":
 * the kernel refused the program (its symbols omit __preempt_count without CONFIG_KALLSYMS_ALL,
 * or keep the count elsewhere: x86 from 6.2 to 6.14, whose tracepoints keep preemption off), or
 * saw no run in a task.
 */
export type TracepointPreemption = "yes" | "no" | "unknown";

/** The answer, and for "unknown" why (the step that failed, or that no run was seen). */
export interface PreemptionProbed {
  answer: TracepointPreemption;
  why: string | null;
}

const SOCK_STREAM = 1;
const VERIFIER_LOG_BYTES = 4096;

/**
 * Loads probe_preemption, attaches it for as long as a listening socket of the agent's own is
 * opened and closed (listen() binds it to a free port; no packet is sent), and frees it.
 */
export async function tracepointPreemption(bpf: Libbpf): Promise<PreemptionProbed> {
  const { lib, status, pointer, libcStatus } = bpf;
  const bytes = await Bun.file(objectPath).bytes();
  let object: BpfObject | null = null;
  try {
    object = new BpfObject(bpf, bytes, "kmesh_preempt", VERIFIER_LOG_BYTES, "open the preemption probe");
    status("load the preemption probe", lib.bpf_object__load(object.pointer));
    const link = pointer("attach probe_preemption", lib.bpf_program__attach(object.program("probe_preemption")));
    try {
      const fd = libcStatus("open a socket", libc.socket(AF_INET, SOCK_STREAM, 0));
      try {
        libcStatus("listen on it", libc.listen(fd, 1));
      } finally {
        libc.close(fd);
      }
    } finally {
      lib.bpf_link__destroy(link);
    }
    const seen = new Uint8Array(PREEMPTION_SEEN_SIZE);
    status("read what the preemption probe saw", lib.bpf_map_lookup_elem(lib.bpf_map__fd(object.map(".bss")), new Uint32Array(1), seen));
    if (seen[PREEMPTION_SEEN_FIELDS.preemptible.offset]) return { answer: "yes", why: null };
    if (seen[PREEMPTION_SEEN_FIELDS.in_task.offset]) return { answer: "no", why: null };
    return { answer: "unknown", why: "the preemption probe saw no run in a task" };
  } catch (error) {
    return { answer: "unknown", why: error instanceof Error ? error.message : String(error) };
  } finally {
    object?.close();
  }
}
