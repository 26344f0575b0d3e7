/**
 * Leases: a small file saying who holds something (host, pid, until when), renewed by its holder
 * while it works. The run lock and the cache's per-key claims are leases. On its own host a dead
 * holder is seen at once (its pid is gone); on another host, which cannot see its pids, when its
 * lease expires unrenewed. Hosts sharing a cache must keep their clocks in step (NTP) to well
 * within a lease period.
 */
import { UserError } from "../core/errors.ts";
import { envName, readEnv } from "../core/env.ts";

export interface LeaseHolder {
  host: string;
  pid: number;
  /** unique per acquisition: tells this holder's file from one another process made after it */
  token: string;
  /** ISO 8601 UTC */
  started: string;
  /** ISO 8601 UTC; renewed every third of the lease period */
  expires: string;
  command: string;
}

/** The lease was taken over (its holder stalled past its expiry) or its file removed. */
export class LeaseLost extends Error {}

const DEFAULT_LEASE_S = 60;
/** tokens of the leases this process holds (concurrent runs in one process: experiments) */
const heldHere = new Set<string>();

/** This host's name in leases: the hostname, or <PREFIX>HOST_ID (two "hosts" on one machine in tests). */
export function hostId(): string {
  return readEnv("HOST_ID") || Deno.hostname();
}

/** hostId() as a part of a file name. */
export function hostFileName(): string {
  return hostId().replace(/[^A-Za-z0-9._-]/g, "_");
}

/** The lease period in seconds: <PREFIX>LEASE_S, default 60. */
export function leaseSeconds(): number {
  const text = readEnv("LEASE_S");
  if (text === undefined || text === "") return DEFAULT_LEASE_S;
  const seconds = Number(text);
  if (!(seconds > 0)) throw new UserError(`${envName("LEASE_S")} must be a number of seconds > 0, got '${text}'`);
  return seconds;
}

/** A lease this process holds: renewed until released; `lost` aborts if another process takes it. */
export class Lease {
  private readonly lostController = new AbortController();
  private readonly timer: ReturnType<typeof setInterval>;

  constructor(readonly path: string, private holder: LeaseHolder, private readonly periodMs: number) {
    this.timer = setInterval(() => this.renew(), periodMs / 3);
    heldHere.add(holder.token);
  }

  get lost(): AbortSignal {
    return this.lostController.signal;
  }

  private renewing = false;

  private async renew(): Promise<void> {
    if (this.lost.aborted || this.renewing) return;
    this.renewing = true;
    try {
      // A holder stalled past its expiry (Ctrl-Z, a frozen VM) may have been taken over: never
      // write over the new holder's file.
      if (Date.now() > Date.parse(this.holder.expires)) {
        return this.lose(`its lease expired at ${this.holder.expires} before it could be renewed`);
      }
      const current = await readHolder(this.path);
      if (current?.token !== this.holder.token) {
        return this.lose(current ? `pid ${current.pid} on host ${current.host} took it over` : "its file was removed");
      }
      const renewed = { ...this.holder, expires: new Date(Date.now() + this.periodMs).toISOString() };
      const temp = `${this.path}.renew-${this.holder.token}`;
      await Deno.writeTextFile(temp, JSON.stringify(renewed) + "\n");
      await Deno.rename(temp, this.path);
      this.holder = renewed;
    } catch (error) {
      // A passing I/O error (a shared filesystem's hiccup): the next renewal tries again.
      if (Date.now() > Date.parse(this.holder.expires)) this.lose(`it could not be renewed (${error})`);
    } finally {
      this.renewing = false;
    }
  }

  private lose(why: string): void {
    clearInterval(this.timer);
    heldHere.delete(this.holder.token);
    this.lostController.abort(new LeaseLost(`lost ${this.path}: ${why}`));
  }

  /** Stop renewing and remove the file if it is still ours. */
  async release(): Promise<void> {
    clearInterval(this.timer);
    heldHere.delete(this.holder.token);
    if ((await readHolder(this.path))?.token === this.holder.token) await Deno.remove(this.path).catch(() => {});
  }

  /** release(), for an exit that cannot wait (a second Ctrl-C). */
  releaseSync(): void {
    clearInterval(this.timer);
    heldHere.delete(this.holder.token);
    try {
      if (JSON.parse(Deno.readTextFileSync(this.path)).token === this.holder.token) Deno.removeSync(this.path);
    } catch { /* gone or not ours */ }
  }
}

/** The outcome of one attempt: the lease (and whose dead lease it replaced), or its live holder. */
export type Attempt =
  | { lease: Lease; tookOver?: string }
  | { busy: LeaseHolder };

/**
 * Try to take the lease at `path` once. A holder that is dead (its pid gone on this host) or
 * whose lease expired is taken over, and `tookOver` says why it was judged dead.
 */
export async function tryLease(path: string, command: string): Promise<Attempt> {
  const periodMs = leaseSeconds() * 1000;
  let tookOver: string | undefined;
  for (let attempt = 0; attempt < 5; attempt++) {
    const now = Date.now();
    const me: LeaseHolder = {
      host: hostId(),
      pid: Deno.pid,
      token: crypto.randomUUID(),
      started: new Date(now).toISOString(),
      expires: new Date(now + periodMs).toISOString(),
      command,
    };
    if (await createWithContent(path, JSON.stringify(me) + "\n")) {
      return { lease: new Lease(path, me, periodMs), tookOver };
    }
    const holder = await readHolder(path);
    if (holder === undefined) continue; // released meanwhile
    const dead = whyDead(holder);
    if (!dead) return { busy: holder! };
    // Move it aside, then make sure what moved is the dead holder's file and not a live one
    // another process put there after we read it; if it is not, put it back.
    const aside = `${path}.stale-${me.token}`;
    try {
      await Deno.rename(path, aside);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) continue;
      throw error;
    }
    const moved = await readHolder(aside);
    if (moved?.token === holder?.token) tookOver = dead;
    else await Deno.link(aside, path).catch(() => {});
    await Deno.remove(aside).catch(() => {});
  }
  const holder = await readHolder(path);
  if (holder) return { busy: holder };
  throw new Error(`could not take ${path}: other processes keep taking it; try again`);
}

/**
 * Take the lease, waiting while a live holder has it (`waiting` is told once, with the holder).
 * Aborting `signal` stops the wait.
 */
export async function waitForLease(
  path: string,
  command: string,
  waiting: (holder: LeaseHolder) => void,
  signal?: AbortSignal,
): Promise<{ lease: Lease; tookOver?: string }> {
  let told = false;
  const pollMs = Math.min(1000, leaseSeconds() * 250);
  while (true) {
    signal?.throwIfAborted();
    const attempt = await tryLease(path, command);
    if ("lease" in attempt) return attempt;
    if (!told) waiting(attempt.busy);
    told = true;
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
}

/** The holder a lease file names: undefined when there is no file, null when it is unreadable. */
export async function readHolder(path: string): Promise<LeaseHolder | null | undefined> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    return null;
  }
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

/** Why a holder is dead, or null while it is alive. */
export function whyDead(holder: LeaseHolder | null): string | null {
  if (!holder) return "it was empty or damaged";
  const gone = `its holder (pid ${holder.pid}, started ${holder.started}) is no longer running`;
  // This pid: a lease of this process (concurrent runs in it), or a dead predecessor's (pids are
  // reused, in containers often at once).
  if (holder.host === hostId() && holder.pid === Deno.pid) return heldHere.has(holder.token) ? null : gone;
  if (holder.host === hostId() && !isAlive(holder.pid)) return gone;
  if (!(Date.parse(holder.expires) > Date.now())) {
    return `its holder (pid ${holder.pid} on host ${holder.host}) let its lease expire at ${holder.expires}`;
  }
  return null;
}

/**
 * Create `path` holding `content`, or return false if it exists. The content is written to a
 * temp file first and hard-linked into place (link fails if the name exists, also over NFS), so
 * a reader never sees a half-written lease.
 */
async function createWithContent(path: string, content: string): Promise<boolean> {
  const temp = `${path}.new-${crypto.randomUUID()}`;
  try {
    await Deno.writeTextFile(temp, content);
    await Deno.link(temp, path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.AlreadyExists) return false;
    // A full or read-only disk: name the lease, not its temp file, in what the caller reports.
    if (error instanceof Error) error.message = error.message.replaceAll(temp, path);
    throw error;
  } finally {
    await Deno.remove(temp).catch(() => {});
  }
}

/** Whether `pid` runs on this host. */
export function isAlive(pid: number): boolean {
  try {
    Deno.statSync(`/proc/${pid}`);
    return true;
  } catch {
    if (Deno.build.os === "linux") return false;
  }
  // No /proc (macOS): `kill -0` answers whether the pid exists.
  return new Deno.Command("kill", { args: ["-0", String(pid)], stderr: "null" }).outputSync().success;
}
