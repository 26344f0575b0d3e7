/**
 * A mistake the user can fix (bad params, unknown stage, missing file).
 * The CLI prints only its message, on one line, and exits with code 2:
 * no stack trace, nothing written.
 */
export class UserError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UserError";
  }
}

/** Exit codes shared by the CLI and the stage runner. */
export const EXIT_FAILED = 1;
export const EXIT_USER_ERROR = 2;
export const EXIT_BUSY = 3;
/** runner: a fault of the machine (disk full, permission), already said in one line */
export const EXIT_ENVIRONMENT = 4;
/** runner: an allocation failed (the engine names the stage's memory params) */
export const EXIT_OUT_OF_MEMORY = 5;
/** a stage process that V8 ended at its heap limit (it traps: 128 + SIGTRAP) */
export const EXIT_HEAP_LIMIT = 133;
/** a stage process killed by SIGKILL (128 + 9): from outside, most often the kernel's OOM killer */
export const EXIT_KILLED = 137;
/** the engine stopped by Ctrl-C (128 + SIGINT) or SIGTERM (128 + 15) */
export const EXIT_SIGINT = 130;
export const EXIT_SIGTERM = 143;
