/**
 * Ctrl-C and SIGTERM for a command that must stop cleanly (run, verify, gc, exp): the first one
 * aborts `signal`, and the command stops at its next safe point, cleans up and says so in one
 * line; a second one exits at once after `onExit` (every write is atomic, so nothing is left
 * half-written but temp files and trash, which the next run sweeps).
 */
import { EXIT_SIGINT, EXIT_SIGTERM } from "./errors.ts";

export class Interrupts {
  private readonly controller = new AbortController();
  private received: Deno.Signal | null = null;
  private readonly listeners: { name: Deno.Signal; listener: () => void }[];

  constructor(onExit: () => void = () => {}) {
    this.listeners = (["SIGINT", "SIGTERM"] as const).map((name) => {
      const listener = () => {
        if (this.received) {
          onExit();
          Deno.exit(this.exitCode);
        }
        this.received = name;
        this.controller.abort();
      };
      Deno.addSignalListener(name, listener);
      return { name, listener };
    });
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** 130 after Ctrl-C, 143 after SIGTERM */
  get exitCode(): number {
    return this.received === "SIGTERM" ? EXIT_SIGTERM : EXIT_SIGINT;
  }

  [Symbol.dispose](): void {
    for (const { name, listener } of this.listeners) Deno.removeSignalListener(name, listener);
  }
}
