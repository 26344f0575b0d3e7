/** The local executor: the stage's job runs in a child process of this machine (pipeline/stage_runner.ts). */
import { EXIT_HEAP_LIMIT } from "../errors.ts";
import type { Executor } from "../execute.ts";
import { runnerArgs, STDERR_IS_TERMINAL } from "../stage_runner.ts";

/** What V8 prints when a process reaches its heap limit: a report of many lines, then it traps. */
const HEAP_REPORT = /\n?<--- Last few GCs --->|\n?#\n# Fatal (JavaScript|process) out of memory/;
/** After SIGTERM, how long a stage may take to stop before SIGKILL. */
const STOP_GRACE_MS = 5_000;

export const localExecutor: Executor = {
  async run(job, jobFile, signal) {
    const child = new Deno.Command(Deno.execPath(), {
      args: runnerArgs(job.root, jobFile, false),
      cwd: job.root,
      env: Deno.stderr.isTerminal() ? { [STDERR_IS_TERMINAL]: "1" } : {},
      // Its own process group: Ctrl-C reaches only the engine, which stops the whole group.
      detached: true,
      // The runner exits when this pipe closes, so a SIGKILLed engine leaves no orphan.
      stdin: "piped",
      stdout: "inherit",
      stderr: "piped",
    }).spawn();
    let grace: ReturnType<typeof setTimeout> | undefined;
    const cancel = () => {
      killGroup(child.pid, "SIGTERM");
      grace = setTimeout(() => killGroup(child.pid, "SIGKILL"), STOP_GRACE_MS);
    };
    signal.addEventListener("abort", cancel, { once: true });
    try {
      const heapLimit = await forwardStderr(child.stderr);
      const { code } = await child.status;
      return heapLimit ? EXIT_HEAP_LIMIT : code;
    } finally {
      signal.removeEventListener("abort", cancel);
      clearTimeout(grace);
    }
  },
};

/** The stage process and everything it started (its process group). */
function killGroup(pid: number, signal: Deno.Signal) {
  try {
    Deno.kill(-pid, signal);
  } catch { /* already gone */ }
}

/**
 * Copy the stage's stderr to ours as it comes, except V8's heap-limit report (dozens of lines and
 * a C stack trace): the engine says it in one line instead. Returns whether that report came.
 */
async function forwardStderr(stream: ReadableStream<Uint8Array>): Promise<boolean> {
  const decoder = new TextDecoder();
  let heapLimit = false;
  for await (const chunk of stream) {
    if (heapLimit) continue;
    const text = decoder.decode(chunk, { stream: true });
    const found = HEAP_REPORT.exec(text);
    if (found) heapLimit = true;
    const shown = found ? text.slice(0, found.index) : text;
    let bytes = new TextEncoder().encode(shown);
    while (bytes.length) bytes = bytes.subarray(await Deno.stderr.write(bytes));
  }
  return heapLimit;
}
