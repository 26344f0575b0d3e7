import { join } from "node:path";
import { EXIT_BUSY } from "../core/errors.ts";
import { hostId, type Lease, tryLease } from "./lease.ts";

export class BusyError extends Error {
  readonly exitCode = EXIT_BUSY;
}

/**
 * One pipeline run at a time per outputs dir: `outputs/run.lock` is a lease (lease.ts) naming the
 * holder's host and pid, renewed while it runs. A holder that died is taken over with a message:
 * at once on its own host (its pid is gone), after its lease expires on another (a project on a
 * shared filesystem). Read-only commands (status, dag, compare) never take it.
 */
export async function acquireRunLock(outputsDir: string, command: string, log: (line: string) => void): Promise<Lease> {
  await Deno.mkdir(outputsDir, { recursive: true });
  const path = join(outputsDir, "run.lock");
  const attempt = await tryLease(path, command);
  if ("lease" in attempt) {
    if (attempt.tookOver) log(`taking over ${path}: ${attempt.tookOver}`);
    return attempt.lease;
  }
  const holder = attempt.busy;
  if (holder.host !== hostId()) {
    throw new BusyError(
      `another run (pid ${holder.pid} on host ${holder.host}, '${holder.command}', started ${holder.started}) holds ` +
        `${path}; wait for it to finish (if that host is down, its lease expires at ${holder.expires} and the next ` +
        `run takes over)`,
    );
  }
  throw new BusyError(
    `another run (pid ${holder.pid}, '${holder.command}', started ${holder.started}) holds ${path}; ` +
      `wait for it to finish, then run again`,
  );
}
