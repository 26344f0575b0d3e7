/**
 * Spherical interpolation, the usual path between Gaussian latents. Used by render,
 * `deno task sample` and the faces page, which inlines this function's source: keep it
 * self-contained (no imports, nothing outside its body).
 */
export function slerp(a: Float32Array, b: Float32Array, t: number): Float32Array {
  const dot = a.reduce((sum, v, i) => sum + v * b[i], 0) / (Math.hypot(...a) * Math.hypot(...b));
  const omega = Math.acos(Math.min(1, Math.max(-1, dot)));
  if (omega < 1e-6) return a.map((v, i) => v + (b[i] - v) * t);
  const [wa, wb] = [Math.sin((1 - t) * omega) / Math.sin(omega), Math.sin(t * omega) / Math.sin(omega)];
  return a.map((v, i) => wa * v + wb * b[i]);
}
