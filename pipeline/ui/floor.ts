/**
 * A metric against its floor (the same metric between two sets of the reference, e.g. real vs
 * real): the "x floor" of the report, `compare` and `exp show`. Its own small module, so the
 * stages that show it (render) do not re-key when the engine's words change.
 */

/**
 * `value / floor`, or null without a positive floor: an unbiased estimate (KID) can sit at or
 * just below 0 between two real sets, where a ratio says nothing.
 */
export function floorMultiple(value: number | null, floor: number | null | undefined): number | null {
  return value === null || !(floor! > 0) ? null : value / floor!;
}

/** A value against its floor, `2.31x`; "-" without a positive floor. */
export function floorRatio(value: number | null, floor: number | null | undefined): string {
  const multiple = floorMultiple(value, floor);
  return multiple === null ? "-" : `${multiple.toFixed(2)}x`;
}

/** A floor's printed value with the sample size (per side) it was computed at, `0.1234 (N 1000)`. */
export function floorAtN(floorText: string, n: number | null | undefined): string {
  return n == null || floorText === "-" ? floorText : `${floorText} (N ${n})`;
}
