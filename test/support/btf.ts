// Reads a BPF object's BTF through bpftool's JSON dump, so that tests can
// compare the TypeScript mirrors with what the compiler actually laid out.

interface BtfMember { name: string; type_id: number; bits_offset: number }
interface BtfType {
  id: number;
  kind: string;
  name: string;
  size?: number;
  type_id?: number;
  nr_elems?: number;
  members?: BtfMember[];
  vars?: { type_id: number; offset: number; size: number }[];
}

export interface Layout { [field: string]: { offset: number; size: number } }

export async function readBtf(objectPath: string) {
  const proc = Bun.spawnSync(["bpftool", "btf", "dump", "file", objectPath, "-j"]);
  if (proc.exitCode !== 0) throw new Error(`bpftool failed: ${proc.stderr.toString()}`);
  const types: BtfType[] = JSON.parse(proc.stdout.toString()).types;
  const byId = new Map(types.map((t) => [t.id, t]));
  const get = (id: number): BtfType => {
    const t = byId.get(id);
    if (t === undefined) throw new Error(`no BTF type ${id}`);
    return t;
  };
  const sizeOf = (id: number): number => {
    const t = get(id);
    switch (t.kind) {
      case "TYPEDEF":
      case "VOLATILE":
      case "CONST":
        return sizeOf(t.type_id ?? 0);
      case "ARRAY":
        return (t.nr_elems ?? 0) * sizeOf(t.type_id ?? 0);
      case "PTR":
        return 8;
      default:
        if (t.size === undefined) throw new Error(`no size for BTF ${t.kind} ${t.name}`);
        return t.size;
    }
  };
  return {
    struct(name: string): { size: number; layout: Layout } {
      const t = types.find((x) => x.kind === "STRUCT" && x.name === name);
      if (t === undefined) throw new Error(`struct ${name} not in the object's BTF`);
      const layout: Layout = {};
      for (const m of t.members ?? []) layout[m.name] = { offset: m.bits_offset / 8, size: sizeOf(m.type_id) };
      return { size: t.size ?? 0, layout };
    },
    /** The variables of a data section (.bss, .data), by name. */
    section(name: string): { name: string; offset: number; size: number; type: string }[] {
      const t = types.find((x) => x.kind === "DATASEC" && x.name === name);
      if (t === undefined) throw new Error(`section ${name} not in the object's BTF`);
      return (t.vars ?? []).map((v) => {
        const variable = get(v.type_id);
        let type = get(variable.type_id ?? 0);
        while (type.kind === "VOLATILE" || type.kind === "CONST") type = get(type.type_id ?? 0);
        return { name: variable.name, offset: v.offset, size: v.size, type: type.name };
      });
    },
  };
}
