/**
 * What the CLI writes to stderr while it works: its lines (kept to errors and the final line
 * with -q), and, while stages run, one live line per running stage (stages and experiments at
 * once each keep their own) with bar, rate and ETA, under a "k of n stages" count. On a terminal
 * the live lines are redrawn in place; elsewhere (a pipe, a log file) each stage's progress is
 * a plain line every 10 s. The words come from words.ts.
 */
import type { RunEvent } from "../core/events.ts";
import type { StageOutput } from "../core/execute.ts";
import type { Progress } from "../core/types.ts";
import { countLine, eventLine, footerLine, type Pace, type Paint, paintFor, progressLine } from "./words.ts";

export type Verbosity = "quiet" | "normal" | "verbose";

interface Task {
  name: string;
  started: number;
  /** the first counted event: rates are measured from it (a resumed stage starts above 0) */
  first?: { at: number; done: number };
  progress?: Progress;
  /** when its last plain progress line was written (not a terminal) */
  said: number;
}

const PLAIN_EVERY_MS = 10_000;
const REDRAW_MS = 100;
const TICK_MS = 1_000;

export class Terminal {
  readonly paint: Paint;
  private readonly tty: boolean;
  private readonly encoder = new TextEncoder();
  private readonly tasks = new Map<string, Task>();
  private readonly counts = new Map<string, { stages: Set<string>; done: Set<string> }>();
  private drawn = 0;
  private held: string | null = null;
  private redraw: ReturnType<typeof setTimeout> | null = null;
  private ticker: ReturnType<typeof setInterval> | null = null;
  private readonly began = performance.now();

  constructor(
    public verbosity: Verbosity = "normal",
    private readonly stream: { isTerminal(): boolean; writeSync(bytes: Uint8Array): number } = Deno.stderr,
  ) {
    this.tty = stream.isTerminal();
    this.paint = paintFor(stream);
  }

  get verbose(): boolean {
    return this.verbosity === "verbose";
  }

  /** A line of the command's own; with -q only the last one is written, by `finish`. */
  say(line: string): void {
    if (this.verbosity === "quiet") this.held = line;
    else this.write(line);
  }

  /** A line only -v shows. */
  detail(line: string): void {
    if (this.verbose) this.write(line);
  }

  /** An error: always written; it is the final line unless another comes after it. */
  error(line: string): void {
    this.held = null;
    this.write(line);
  }

  /** The command ended: the live lines go, and with -q its final line is written. */
  finish(): void {
    for (const id of [...this.tasks.keys()]) this.tasks.delete(id);
    this.draw();
    if (this.held !== null) this.write(this.held);
    this.held = null;
  }

  /** The command failed with an error it is about to write: the live lines and any held line go. */
  abandon(): void {
    this.held = null;
    this.finish();
  }

  /**
   * Where a stage run outside a pipeline run (verify) writes: its lines, and a live line from its
   * first progress until `stageEnded`.
   */
  stageOutput(stage: string): StageOutput {
    const id = `\u0000${stage}`;
    return {
      line: (text) => this.event({ kind: "output", stage, text }),
      progress: (progress) => {
        if (!this.tasks.has(id)) this.tasks.set(id, { name: stage, started: performance.now(), said: -Infinity });
        this.tick();
        this.progress(id, progress);
      },
    };
  }

  stageEnded(stage: string): void {
    this.tasks.delete(`\u0000${stage}`);
    this.draw();
  }

  /** A run's event; `label`: the experiment it belongs to; `line`: instead of its usual words (null: none). */
  event(event: RunEvent, label = "", line?: string | null): void {
    const id = `${label}\u0000${"stage" in event ? event.stage : ""}`;
    const prefix = label ? `[${label}] ` : "";
    if (event.kind === "planned") {
      this.counts.set(label, { stages: new Set(event.stages), done: new Set() });
      return;
    }
    if (event.kind === "progress") return this.progress(id, event.progress);
    if (event.kind === "output") {
      // a stage's own lines as it wrote them (they name the stage), in an experiment too
      if (/^error: /.test(event.text)) return this.error(event.text);
      return this.say(line ?? event.text);
    }
    if (event.kind === "start") {
      this.tasks.set(id, { name: prefix + event.stage, started: performance.now(), said: -Infinity });
      this.tick();
    }
    const text = line === undefined ? eventLine(event, this.paint, this.verbose) : line;
    if (text !== null) this.say(prefix + text);
    if (event.kind === "ran" || event.kind === "cached" || event.kind === "reused" || event.kind === "pulled") {
      const count = this.counts.get(label);
      count?.done.add(event.stage);
      if (count && !this.tty && event.kind !== "cached") {
        this.say(`  ${countLine(count.done.size, count.stages.size, label)}`);
      }
      // a finished experiment leaves the footer to those still going
      if (label && count && count.done.size >= count.stages.size) this.counts.delete(label);
    }
    if (event.kind !== "start" && this.tasks.delete(id)) this.draw();
  }

  private progress(id: string, progress: Progress): void {
    const task = this.tasks.get(id);
    if (!task) return;
    const now = performance.now();
    // A new phase (its own count) measures its rate afresh.
    const phase = progress.done === undefined || progress.total !== task.progress?.total ||
      progress.unit !== task.progress?.unit || progress.done < (task.progress?.done ?? 0);
    if (phase) task.first = progress.done === undefined ? undefined : { at: now, done: progress.done };
    task.progress = progress;
    if (this.tty) {
      if (this.redraw !== null) return;
      this.redraw = setTimeout(() => {
        this.redraw = null;
        this.draw();
      }, REDRAW_MS);
      Deno.unrefTimer(this.redraw as unknown as number);
    } else if (this.verbosity !== "quiet" && now - task.said >= PLAIN_EVERY_MS) {
      task.said = now;
      this.write(`  ${progressLine(`${task.name}:`, progress, this.pace(task, now))}`);
    }
  }

  private pace(task: Task, now: number): Pace {
    const elapsed = (now - task.started) / 1000;
    const { done, total } = task.progress ?? {};
    const seconds = task.first ? (now - task.first.at) / 1000 : 0;
    const rate = task.first && done !== undefined && seconds >= 1 ? (done - task.first.done) / seconds : null;
    const eta = rate && total !== undefined && done !== undefined ? (total - done) / rate : null;
    return { rate, eta, elapsed };
  }

  /** While stages run on a terminal, redraw every second (elapsed times and ETAs move). */
  private tick(): void {
    if (!this.tty || this.ticker !== null) return;
    this.ticker = setInterval(() => this.draw(), TICK_MS);
    Deno.unrefTimer(this.ticker as unknown as number);
  }

  /** Write a line above the live lines (which are redrawn under it). */
  private write(line: string): void {
    if (!this.tty) return void this.stream.writeSync(this.encoder.encode(line + "\n"));
    this.draw(line);
  }

  /** Erase the live lines, write `line` if any, draw the live lines again (one write: no flicker). */
  private draw(line?: string): void {
    if (!this.tty) return;
    let out = this.drawn ? `\x1b[${this.drawn}F\x1b[J` : "";
    if (line !== undefined) out += line + "\n";
    const live = this.liveLines();
    out += live.map((text) => text + "\n").join("");
    this.drawn = live.length;
    if (!live.length && this.ticker !== null) {
      clearInterval(this.ticker);
      this.ticker = null;
    }
    if (out) this.stream.writeSync(this.encoder.encode(out));
  }

  private liveLines(): string[] {
    if (this.verbosity === "quiet" || !this.tasks.size) return [];
    const now = performance.now();
    const width = columns() - 1;
    const lines = [...this.tasks.values()].map((task) =>
      `  ${progressLine(task.name, task.progress, this.pace(task, now), true)}`
    );
    const counts = [...this.counts].map(([label, count]) => countLine(count.done.size, count.stages.size, label));
    lines.push(footerLine(counts, this.tasks.size, (now - this.began) / 1000));
    // A line wider than the terminal wraps, and the next redraw would miss its second row.
    return lines.map((text) => [...text].length > width ? [...text].slice(0, width - 1).join("") + "…" : text);
  }
}

function columns(): number {
  try {
    return Deno.consoleSize().columns || 100;
  } catch {
    return 100;
  }
}

/** The CLI's one terminal (stderr): every command, the runs and the experiments write through it. */
export const terminal = new Terminal();
