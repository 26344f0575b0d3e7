/** What every backend module returns when it starts, and the error that lets `auto` try the next one. */
import type { BackendName } from "../choices.ts";

export interface BackendInfo {
  name: Exclude<BackendName, "auto">;
  threads: number;
  detail: string;
  /** why a faster backend `auto` tried could not start (for the log, not the lock) */
  note?: string;
}

/** A backend that cannot start here (library or device missing): `auto` falls back, a named choice fails. */
export class BackendUnavailable extends Error {}
