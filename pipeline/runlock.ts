import { join } from "node:path";
import { EXIT_BUSY } from "./errors.ts";

interface Holder {
  pid: number;
  host: string;
  started: string;
  command: string;
}

export class BusyError extends Error {
  readonly exitCode = EXIT_BUSY;
}

/**
 * One pipeline run at a time per outputs dir. The lock file holds the holder's pid and host; a
 * holder that died (SIGKILL, power cut) is detected and its lock taken over with a message.
 * Read-only commands (status, dag, compare) never take it.
 */
export async function acquireRunLock(outputsDir: string, command: string, log: (line: string) => void) {
  await Deno.mkdir(outputsDir, { recursive: true });
  const path = join(outputsDir, "run.lock");
  const me: Holder = { pid: Deno.pid, host: Deno.hostname(), started: new Date().toISOString(), command };
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const file = await Deno.open(path, { write: true, createNew: true });
      try {
        await file.write(new TextEncoder().encode(JSON.stringify(me) + "\n"));
        await file.sync();
      } catch (error) {
        // A full disk: never leave an empty lock behind.
        await Deno.remove(path).catch(() => {});
        throw error;
      } finally {
        file.close();
      }
      return {
        release: () => Deno.remove(path).catch(() => {}),
        /** for an exit that cannot wait (a second Ctrl-C) */
        releaseSync: () => {
          try {
            Deno.removeSync(path);
          } catch { /* already gone */ }
        },
      };
    } catch (error) {
      if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
    }
    const holder = await readHolder(path);
    if (holder && holder.host !== me.host) {
      throw new BusyError(
        `${path} is held by pid ${holder.pid} on host ${holder.host} since ${holder.started}; ` +
          `if no run is going on there, delete the file`,
      );
    }
    if (holder && isAlive(holder.pid)) {
      throw new BusyError(
        `another run (pid ${holder.pid}, '${holder.command}', started ${holder.started}) holds ${path}; ` +
          `wait for it to finish, then run again`,
      );
    }
    log(
      holder
        ? `taking over ${path}: its holder (pid ${holder.pid}, started ${holder.started}) is no longer running`
        : `taking over ${path}: it was empty or damaged (a run died while writing it)`,
    );
    // Rename first, so two runs taking over at once cannot both win: only one rename succeeds.
    await Deno.rename(path, `${path}.stale-${Deno.pid}`).catch(() => {});
    await Deno.remove(`${path}.stale-${Deno.pid}`).catch(() => {});
  }
  throw new BusyError(`could not take ${path}: another run keeps taking it; try again`);
}

async function readHolder(path: string): Promise<Holder | null> {
  try {
    return JSON.parse(await Deno.readTextFile(path));
  } catch {
    return null;
  }
}

function isAlive(pid: number): boolean {
  if (pid === Deno.pid) return true;
  try {
    Deno.statSync(`/proc/${pid}`);
    return true;
  } catch {
    if (Deno.build.os === "linux") return false;
  }
  // No /proc (macOS): `kill -0` answers whether the pid exists.
  return new Deno.Command("kill", { args: ["-0", String(pid)], stderr: "null" }).outputSync().success;
}
