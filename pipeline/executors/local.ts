/** The local executor: the stage's job runs in a child process of this machine (pipeline/stage_runner.ts). */
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Executor } from "../execute.ts";

const RUNNER = fileURLToPath(new URL("../stage_runner.ts", import.meta.url));

export const localExecutor: Executor = {
  async run(job, jobFile, signal) {
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", ...configArgs(job.root), RUNNER, jobFile],
      cwd: job.root,
      // The runner exits when this pipe closes, so a SIGKILLed engine leaves no orphan.
      stdin: "piped",
      stdout: "inherit",
      stderr: "inherit",
    }).spawn();
    const cancel = () => child.kill("SIGTERM");
    signal.addEventListener("abort", cancel, { once: true });
    try {
      return (await child.status).code;
    } finally {
      signal.removeEventListener("abort", cancel);
    }
  },
};

function configArgs(root: string): string[] {
  try {
    Deno.statSync(join(root, "deno.json"));
    return ["--config", join(root, "deno.json")];
  } catch {
    return [];
  }
}
