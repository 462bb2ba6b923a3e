// `accesslog enable|disable`: what `kmeshctl accesslog` does, against one
// agent: POST /accesslog?enable=true|false. One line on success.
import { formatHostPort, type HostPort } from "../address.ts";
import { postSwitch } from "../admin/client.ts";

export async function accesslogCommand(enable: boolean, adminAddr: HostPort): Promise<number> {
  await postSwitch(adminAddr, "/accesslog", enable);
  process.stdout.write(`accesslog ${enable ? "enabled" : "disabled"} on ${formatHostPort(adminAddr)}\n`);
  return 0;
}
