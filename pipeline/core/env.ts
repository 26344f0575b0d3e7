/**
 * The project's name and the environment variables the engine reads, named under the project's
 * prefix (`Project.envPrefix`: "FACEGAN_" gives FACEGAN_CACHE), so the engine names no project.
 * The CLI sets both once (`main`), before anything reads them; a stage's process reads none.
 */

/** What each variable is for: the engine reads only these. */
export type EngineVariable =
  /** a cache folder shared by hosts (instead of outputs/cache) */
  | "CACHE"
  /** the http(s) URL of a remote cache */
  | "REMOTE"
  | "REMOTE_TOKEN"
  | "REMOTE_BASIC"
  /** this host's name in leases (two "hosts" on one machine in tests) */
  | "HOST_ID"
  /** the lease period in seconds */
  | "LEASE_S";

/** Until a project sets its own: an engine used without a project (a test of one module). */
let project = { name: "pipeline", envPrefix: "PIPELINE_" };

export function useProjectNames(names: { name: string; envPrefix: string }): void {
  project = { name: names.name, envPrefix: names.envPrefix };
}

/** The project's name, for what the engine writes for people (a page title, an example URL). */
export function projectName(): string {
  return project.name;
}

/** The full name of an engine variable: `envName("CACHE")` is "FACEGAN_CACHE" for facegan. */
export function envName(variable: EngineVariable): string {
  return project.envPrefix + variable;
}

/** An engine variable's value, or undefined when unset. */
export function readEnv(variable: EngineVariable): string | undefined {
  return Deno.env.get(envName(variable));
}
