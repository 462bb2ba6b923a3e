// `accesslog enable|disable`: what `kmeshctl accesslog` does, against one
// agent: POST /accesslog?enable=true|false. One line on success.
import { chooseTarget, describeTarget, postSwitch, type AdminTargetFlags } from "../admin/client.ts";

export async function accesslogCommand(enable: boolean, flags: AdminTargetFlags): Promise<number> {
  const target = chooseTarget(flags);
  await postSwitch(target, "/accesslog", enable);
  process.stdout.write(`accesslog ${enable ? "enabled" : "disabled"} on ${describeTarget(target)}\n`);
  return 0;
}
