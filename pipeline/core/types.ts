import type { FlatParams, ParamValue } from "./params.ts";
import type { ExternalData } from "../storage/external.ts";

/** One param's type, range or choices and meaning, as the project declares it (`Project.schema`). */
export interface ParamSpec {
  type: "number" | "integer" | "string" | "boolean";
  description: string;
  /** null is allowed (and means what the description says) */
  nullable?: boolean;
  min?: number;
  max?: number;
  /** the only values allowed */
  choices?: readonly (string | number)[];
}

/** Every param's spec, by dotted key. */
export type ParamSchema = Record<string, ParamSpec>;

/** One stage of the DAG, as declared by the project (pure data: loading it imports no stage code). */
export interface StageDecl {
  name: string;
  /** upstream stages whose outputs this stage reads */
  deps: string[];
  /** dotted params keys it reads; only these are visible to it and only these enter its key */
  params: string[];
  /** module exporting `run(ctx: StageContext)`, relative to the project root */
  module: string;
  description?: string;
  /** a killed run leaves its partial output for the next attempt to resume from */
  resumable?: boolean;
  /** JSON file in its output whose content is copied into the lock (`metrics`) */
  metrics?: string;
  /** files of its output copied to `outputs/latest/` after each run */
  publish?: string[];
  /** a PNG of its output that `compare` shows side by side across revisions */
  preview?: string;
  /**
   * params (among `params`) whose value names a local file or folder the stage reads: its content
   * enters the key, so editing the data re-runs the stage (empty value: nothing to read)
   */
  external?: string[];
  /**
   * params (its own or upstream ones) that drive how much memory it needs, named when it runs out
   * of memory, e.g. a batch size or an image size
   */
  memory?: string[];
  /**
   * it writes a page into `StageContext.liveDir` as it runs (samples, curves so far): the engine
   * gives it a folder under outputs/live/ and names it while the run goes on
   */
  live?: boolean;
}

/**
 * How far a running stage is: `done` of `total` units (of the whole stage: a resumed stage starts
 * above 0), or only a note when it cannot count. The engine draws it (bar, rate, ETA).
 */
export interface Progress {
  done?: number;
  total?: number;
  /** what is counted: "img", "MB" */
  unit?: string;
  /** what it is doing now, short: "epoch 3/9  D 1.234 G 0.876" */
  note?: string;
}

/** What a stage's `run` receives. It writes only into `outDir`. */
export interface StageContext {
  name: string;
  root: string;
  params: FlatParams;
  /** the value of a declared param; asking for an undeclared one is a bug in the stage */
  param<T extends ParamValue>(key: string): T;
  /** upstream stage name -> its (read-only) output directory */
  inputs: Record<string, string>;
  /** upstream stage name -> the sha256 identity of that output (part of this stage's key) */
  inputHashes: Record<string, string>;
  outDir: string;
  /** true when `outDir` holds what a killed earlier attempt of this same key wrote */
  resumed: boolean;
  /** record something that can change the output bytes (backend, threads) in the lock (see Environment) */
  recordEnvironment(key: string, value: string | number | boolean): void;
  /**
   * A resumable stage, once progress a resumed run would continue from is saved: what it is
   * ("epoch 4 of 9"). Shown when the run is interrupted or fails.
   */
  resumePoint(description: string): Promise<void>;
  /**
   * The local data an `external` param names, exactly as hashed into this stage's key: its path
   * and every file's size and sha256. A stage may refer to those files instead of copying them,
   * as long as it checks their bytes against these hashes when it reads them.
   */
  external(key: string): Promise<ExternalData>;
  /**
   * A file of `outDir` (path relative to it) that the stage hashed as it wrote it: the engine
   * takes this sha256 instead of reading the file again.
   */
  recordWritten(path: string, sha256: string, size: number): void;
  log(line: string): void;
  /** how far it is: sent to the engine as an event, which draws it (several times a second at most) */
  progress(update: Progress): void;
  /** where a stage that declares `live` writes its live page (index.html); absent for other stages */
  liveDir?: string;
}

export type StageRun = (ctx: StageContext) => Promise<void>;

/**
 * The shape of a stage's metrics file: numbers by name, the same metrics for the reference
 * ("floor", e.g. real vs real), and which direction is better; `compare` reads these.
 */
export interface MetricsFile {
  values: Record<string, number>;
  floor?: Record<string, number>;
  /** per metric, the sample size (per side) its value and its floor were both computed at */
  floor_n?: Record<string, number>;
  better?: Record<string, "lower" | "higher">;
  [other: string]: unknown;
}

/** What a project declares about its experiments (`exp`); everything is optional. */
export interface ExperimentsDecl {
  /** cores one experiment with these params keeps busy (its heaviest stage): sets the default `-j` */
  coresPerRun?(params: FlatParams): number;
  /**
   * the param that seeds a run's randomness (an integer): `exp run --seeds K` repeats each config
   * with K values of it, and the leaderboard groups records that differ only in it
   */
  seed?: string;
  /**
   * module (relative to the project root) exporting `figures: ExperimentFigures`: plots across
   * experiments for outputs/experiments.html, e.g. curves overlaid
   */
  figures?: string;
}

/** A finished experiment's stage outputs (stage -> its output directory in the cache). */
export interface ExperimentOutputs {
  name: string;
  outputs: Record<string, string>;
}

/** A figure of experiments.html: `html` is markup the project made (an inline SVG, say). */
export interface Figure {
  title: string;
  html: string;
}

export type ExperimentFigures = (experiments: ExperimentOutputs[]) => Promise<Figure[]>;

/** What a stage recorded that can change its output bytes (a backend, a library version). */
export type Environment = Record<string, string | number | boolean>;

/** Something about this machine, known before any stage runs, that changes how some stages run. */
export interface Preflight {
  /** the stages it concerns */
  stages: string[];
  /**
   * one line, said once before the first stage line of a run (and by status and --dry-run) in
   * which one of `stages` will run: what is missing, what it costs, and the fix
   */
  notice: string;
  /** stage -> why its output here will differ from the one the lock recorded (status, --dry-run) */
  differs: Record<string, string>;
}

export interface Project {
  /** what the engine calls the project where it writes for people (a page title, an example URL) */
  name: string;
  /** the prefix of the environment variables the engine reads: "FACEGAN_" gives FACEGAN_CACHE (core/env.ts) */
  envPrefix: string;
  root: string;
  dag: StageDecl[];
  /** every param's type, range or choices and meaning; checked before any stage runs */
  schema?: ParamSchema;
  /** how experiments (`exp`) use the machine and what experiments.html shows across them */
  experiments?: ExperimentsDecl;
  /**
   * Checks of this machine before anything runs (a library a stage would use, say), given the
   * params and each stage's environment as the lock recorded it.
   */
  preflight?(params: FlatParams, locked: Record<string, Environment>): Preflight[];
}
