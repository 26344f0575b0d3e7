/**
 * Faults of the machine rather than of the code or the input: a full disk, a read-only or
 * foreign-owned file or directory. Each becomes one line naming what was being done, where, and
 * the fix (an EnvironmentFault), instead of an OS error with a stack trace.
 */
import { statfsSync } from "node:fs";
import { dirname } from "node:path";
import { EXIT_FAILED, EXIT_USER_ERROR } from "./errors.ts";
import { formatBytes } from "../storage/fsutil.ts";

/** One line for the user; `exitCode`: 2 when nothing was written (a permission refused up front). */
export class EnvironmentFault extends Error {
  constructor(message: string, readonly exitCode: number) {
    super(message);
    this.name = "EnvironmentFault";
  }
}

function errorCode(error: unknown): string | undefined {
  return (error as { code?: string } | null)?.code;
}

export function isDiskFull(error: unknown): boolean {
  return ["ENOSPC", "EDQUOT"].includes(errorCode(error) ?? "");
}

export function isPermissionFault(error: unknown): boolean {
  return error instanceof Deno.errors.PermissionDenied || error instanceof Deno.errors.NotCapable ||
    ["EACCES", "EPERM", "EROFS"].includes(errorCode(error) ?? "");
}

/** Bytes free to this user on the filesystem holding `path` (or its nearest existing parent). */
export function freeBytes(path: string): number | null {
  for (let dir = path;; dir = dirname(dir)) {
    try {
      const info = statfsSync(dir);
      return info.bavail * info.bsize;
    } catch {
      if (dirname(dir) === dir) return null;
    }
  }
}

/** The path an OS error names (`...: writefile '/x'`, `copy '/a' -> '/b'`: the last one), if any. */
export function errorPath(error: unknown): string | null {
  const quoted = [...String((error as Error)?.message ?? "").matchAll(/'([^']+)'/g)];
  return quoted.length ? quoted[quoted.length - 1][1] : null;
}

/** uid and mode of `path` and the name of its owner, for a permission message. */
function ownership(path: string): string {
  for (let dir = path;; dir = dirname(dir)) {
    try {
      const info = Deno.statSync(dir);
      const mode = ((info.mode ?? 0) & 0o7777).toString(8).padStart(4, "0");
      const owner = info.uid === null ? "?" : `uid ${info.uid}${userName(info.uid)}`;
      return `${dir === path ? "" : `${dir}: `}owned by ${owner}, mode ${mode}; you are uid ${Deno.uid()}`;
    } catch {
      if (dirname(dir) === dir) return "not found";
    }
  }
}

function userName(uid: number): string {
  try {
    const line = Deno.readTextFileSync("/etc/passwd").split("\n").find((entry) => entry.split(":")[2] === `${uid}`);
    return line ? ` (${line.split(":")[0]})` : "";
  } catch {
    return "";
  }
}

/**
 * `error` as an EnvironmentFault when it is one (disk full, read-only, permission), else
 * unchanged. `doing`: what was going on ("writing the lock"); `where`: the path when the error names none.
 */
export function environmentFault(error: unknown, doing: string, where: string): unknown {
  if (error instanceof EnvironmentFault) return error;
  const path = errorPath(error) ?? where;
  if (isDiskFull(error)) {
    const free = freeBytes(path);
    return new EnvironmentFault(
      `no space left on device ${doing} (${path}): ${free === null ? "unknown" : formatBytes(free)} free there; ` +
        "free space (`deno task gc --dry-run`, then `deno task gc`) or make outputs/ a link to a larger disk",
      EXIT_FAILED,
    );
  }
  if (errorCode(error) === "EROFS") {
    return new EnvironmentFault(
      `read-only file system ${doing} (${path}); remount it read-write, or make outputs/ a link to a writable disk`,
      EXIT_USER_ERROR,
    );
  }
  if (isPermissionFault(error)) {
    return new EnvironmentFault(
      `permission denied ${doing} (${path}: ${ownership(path)}); fix its owner or permissions, or use your own ` +
        "outputs/",
      EXIT_USER_ERROR,
    );
  }
  return error;
}

/** Run `body`; a full disk or a refused permission becomes one line saying what (`doing`) and where. */
export async function faultsAsLines<T>(doing: string, where: string, body: () => Promise<T>): Promise<T> {
  try {
    return await body();
  } catch (error) {
    throw environmentFault(error, doing, where);
  }
}

/** A file the user pointed at cannot be read: one line with its owner and mode. */
export function unreadable(what: string, path: string): EnvironmentFault {
  // Root reads whatever its mode says; what refuses root is the kernel (/proc, /sys), not a chmod away.
  const fix = Deno.uid() === 0
    ? "even root is refused (a kernel file system such as /proc or /sys, or a protected file), so no chmod helps; " +
      "name your own files instead"
    : "make it readable (chmod a+r) or move it elsewhere";
  return new EnvironmentFault(
    `cannot read ${what} ${path} (permission denied: ${ownership(path)}); ${fix}`,
    EXIT_USER_ERROR,
  );
}
