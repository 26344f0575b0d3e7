import { UserError } from "./errors.ts";

/** Run git in `cwd`; null when it fails (not a repo, unknown revision, file absent there). */
export async function git(cwd: string, args: string[]): Promise<string | null> {
  try {
    const output = await new Deno.Command("git", { args, cwd, stdout: "piped", stderr: "null" }).output();
    return output.success ? new TextDecoder().decode(output.stdout) : null;
  } catch {
    throw new UserError("git is not installed; compare and gc read locks from git history");
  }
}

/** A file as committed at `rev` (path relative to `cwd`), or null. */
export function showAt(cwd: string, rev: string, path: string): Promise<string | null> {
  return git(cwd, ["show", `${rev}:./${path}`]);
}
