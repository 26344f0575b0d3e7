/**
 * The one way a test says it needs a part this machine may lack (a library, a server, a browser,
 * root, a mount namespace): where `why` is set, the test is reported ignored with the reason in
 * its name, so a skipped test is never a silent pass.
 */
export function requires(name: string, why: string | null | undefined | false): { name: string; ignore: boolean } {
  return why ? { name: `${name} (ignored: ${why})`, ignore: true } : { name, ignore: false };
}
