/** The local executor: the stage's job runs in a child process of this machine (pipeline/core/stage_runner.ts). */
import { EXIT_HEAP_LIMIT } from "../core/errors.ts";
import type { Executor, StageOutput } from "../core/execute.ts";
import { progressEvent, runnerArgs } from "../core/stage_runner.ts";

/** What V8 prints when a process reaches its heap limit: a report of many lines, then it traps. */
const HEAP_REPORT = /\n?<--- Last few GCs --->|\n?#\n# Fatal (JavaScript|process) out of memory/;
/** After SIGTERM, how long a stage may take to stop before SIGKILL. */
const STOP_GRACE_MS = 5_000;

export const localExecutor: Executor = {
  async run(job, jobFile, signal, output) {
    const child = new Deno.Command(Deno.execPath(), {
      args: runnerArgs(job.root, jobFile, false),
      cwd: job.root,
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
      const heapLimit = await forwardStderr(child.stderr, output);
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
 * Hand the stage's stderr to `output` line by line as it comes (progress events as progress),
 * except V8's heap-limit report (dozens of lines and a C stack trace): the engine says it in one
 * line instead. Returns whether that report came.
 */
async function forwardStderr(stream: ReadableStream<Uint8Array>, output: StageOutput): Promise<boolean> {
  const decoder = new TextDecoder();
  let heapLimit = false;
  let pending = "";
  const emit = (line: string) => {
    const update = progressEvent(line);
    if (update) output.progress(update);
    else output.line(line);
  };
  for await (const chunk of stream) {
    if (heapLimit) continue;
    const text = decoder.decode(chunk, { stream: true });
    const found = HEAP_REPORT.exec(text);
    if (found) heapLimit = true;
    const lines = (pending + (found ? text.slice(0, found.index) : text)).split("\n");
    pending = lines.pop()!;
    lines.forEach(emit);
  }
  if (pending) emit(pending);
  return heapLimit;
}
