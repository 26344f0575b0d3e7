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
export const EXIT_USER_ERROR = 2;
export const EXIT_BUSY = 3;
