/**
 * The embedded default dataset: seeded, procedurally drawn faces in CelebA's aligned geometry
 * (178x218, eyes level near y=112, face centred), so crop does the same work as on the
 * real photos and the whole pipeline runs on a fresh machine with no network. Each face varies in
 * skin tone, lighting direction, head size and position, hair colour and style, eye colour,
 * brows, nose and mouth shape, background and clothes. Same seed and index -> the same pixels.
 */
import { Rng } from "../models/rng.ts";

export const SYNTHETIC_WIDTH = 178;
export const SYNTHETIC_HEIGHT = 218;

type Rgb = [number, number, number];

const SKIN: Rgb[] = [[255, 224, 196], [241, 194, 160], [224, 172, 130], [198, 134, 96], [160, 100, 70], [110, 70, 50]];
const HAIR: Rgb[] = [[20, 16, 14], [60, 40, 28], [110, 75, 45], [190, 150, 90], [150, 70, 40], [150, 150, 150]];
const IRIS: Rgb[] = [[70, 45, 25], [50, 90, 140], [70, 110, 70], [40, 30, 20]];

const EYE_WHITE: Rgb = [235, 235, 230];
const PUPIL: Rgb = [10, 10, 10];

function mix(a: Rgb, b: Rgb, t: number): Rgb {
  // Most features cover most pixels not at all: a + (b - a) * 0 is a, so skip the arithmetic.
  if (t === 0) return a;
  return [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t];
}

/** `into` = mix(into, b, t), in place. */
function blend(into: Float64Array, b: ArrayLike<number>, t: number): void {
  if (t === 0) return;
  for (let c = 0; c < 3; c++) into[c] = into[c] + (b[c] - into[c]) * t;
}

/** Soft ellipse coverage: 1 inside, 0 outside, a one-pixel ramp at the edge (anti-aliasing). */
function ellipse(x: number, y: number, cx: number, cy: number, rx: number, ry: number): number {
  if (Math.abs(x - cx) > rx + 1 || Math.abs(y - cy) > ry + 1) return 0;
  const d = Math.hypot((x - cx) / rx, (y - cy) / ry);
  const edge = 1 / Math.min(rx, ry);
  return Math.min(1, Math.max(0, (1 - d) / edge + 0.5));
}

function pick<T>(rng: Rng, items: T[]): T {
  return items[rng.int(items.length)];
}

function jitter(rng: Rng, color: Rgb, amount: number): Rgb {
  return color.map((c) => Math.min(255, Math.max(0, c + (rng.next() - 0.5) * 2 * amount))) as Rgb;
}

/** Draw face number `index` of the dataset seeded by `seed`, as RGBA pixels (imagescript layout). */
export function renderSyntheticFace(seed: number, index: number): Uint8Array {
  const rng = new Rng((seed * 1_000_003 + index) >>> 0);
  const W = SYNTHETIC_WIDTH, H = SYNTHETIC_HEIGHT;
  const scale = 0.92 + rng.next() * 0.16;
  const cx = 89 + (rng.next() - 0.5) * 6;
  const eyeY = 112 + (rng.next() - 0.5) * 6;
  const faceRx = (38 + rng.next() * 8) * scale;
  const faceRy = (50 + rng.next() * 8) * scale;
  const faceCy = eyeY + 12 * scale;
  const skin = jitter(rng, mix(pick(rng, SKIN), pick(rng, SKIN), rng.next()), 12);
  const hair = jitter(rng, pick(rng, HAIR), 15);
  const longHair = rng.next() < 0.5;
  const hairVolume = 1.08 + rng.next() * 0.15;
  const hairline = faceCy - faceRy * (0.55 + rng.next() * 0.2);
  const iris = pick(rng, IRIS);
  const eyeGap = (17 + rng.next() * 4) * scale;
  const eyeOpen = (2.5 + rng.next() * 2) * scale;
  const browLift = (7 + rng.next() * 4) * scale;
  const browThick = 1.5 + rng.next() * 2;
  const mouthY = eyeY + (38 + rng.next() * 6) * scale;
  const mouthW = (10 + rng.next() * 7) * scale;
  const mouthH = (2 + rng.next() * 4) * scale;
  const smile = (rng.next() - 0.3) * 6;
  const lips = jitter(rng, mix(skin, [170, 60, 70], 0.55), 15);
  const noseLength = (18 + rng.next() * 6) * scale;
  const backgroundTop = jitter(rng, [128, 128, 128], 110);
  const backgroundBottom = jitter(rng, backgroundTop, 60);
  const clothes = jitter(rng, [110, 110, 110], 100);
  const light = rng.next() * Math.PI * 2;
  const lightStrength = 0.1 + rng.next() * 0.15;
  const [lx, ly] = [Math.cos(light), Math.sin(light)];

  // Per-face constants, computed as the per-pixel code once computed them (same values).
  const neck = mix(skin, [0, 0, 0], 0.2);
  const brow = mix(hair, [0, 0, 0], 0.3);
  const nostril = mix(skin, [0, 0, 0], 0.45);
  const noseDark = mix(skin, [0, 0, 0], 0.5);
  const eyes = [-1, 1].map((side) => ({ ex: cx + side * eyeGap, nostrilX: cx + side * 4 * scale }));
  const [whiteRx, irisR, pupilR, browRx] = [8 * scale, 3.6 * scale, 1.5 * scale, 10 * scale];
  const nostrilY = eyeY + noseLength + 1;
  const hairCy = faceCy - 8 * scale;
  const [hairRx, hairRy] = [faceRx * hairVolume * 1.18, faceRy * hairVolume];

  // The colour being built and the face's own pixel, blended in place: the same float arithmetic
  // as building a new array per step, without 40,000 x ~20 allocations per face.
  const color = new Float64Array(3);
  const facePixel = new Float64Array(3);
  const out = new Uint8Array(W * H * 4);
  for (let y = 0; y < H; y++) {
    const rowBackground = mix(backgroundTop, backgroundBottom, y / H);
    for (let x = 0; x < W; x++) {
      color.set(rowBackground);
      // Hair mass behind the head; long hair falls to the shoulders.
      let hairCover = ellipse(x, y, cx, hairCy, hairRx, hairRy);
      if (longHair && y > faceCy && Math.abs(x - cx) < faceRx * 1.3) {
        hairCover = Math.max(hairCover, y < faceCy + faceRy * 1.5 ? 1 : 0);
      }
      blend(color, hair, hairCover);
      blend(color, clothes, ellipse(x, y, cx, H + 25, 95, 60));
      blend(color, neck, ellipse(x, y, cx, faceCy + faceRy, faceRx * 0.42, faceRy * 0.6) * (y > faceCy ? 1 : 0));
      const face = ellipse(x, y, cx, faceCy, faceRx, faceRy);
      if (face > 0) {
        // Directional light across the face.
        const shade = 1 + lightStrength * (((x - cx) / faceRx) * lx + ((y - faceCy) / faceRy) * ly);
        for (let c = 0; c < 3; c++) facePixel[c] = skin[c] * shade;
        // Fringe: hair covers the face above a wavy hairline.
        blend(facePixel, hair, y < hairline + 4 * Math.sin((x - cx) / 9) ? 1 : 0);
        for (const { ex, nostrilX } of eyes) {
          const white = ellipse(x, y, ex, eyeY, whiteRx, eyeOpen);
          blend(facePixel, EYE_WHITE, white);
          blend(facePixel, iris, white * ellipse(x, y, ex, eyeY, irisR, irisR));
          blend(facePixel, PUPIL, white * ellipse(x, y, ex, eyeY, pupilR, pupilR));
          const browY = eyeY - browLift - 2 * Math.cos((x - ex) / 6);
          blend(facePixel, brow, ellipse(x, y, ex, browY, browRx, browThick));
          blend(facePixel, nostril, 0.8 * ellipse(x, y, nostrilX, nostrilY, 2.2, 1.4));
        }
        // Nose: a soft shadow along one side.
        const noseShadow = Math.abs(x - (cx + 3 * lx)) < 1.5 && y > eyeY + 4 && y < eyeY + noseLength ? 0.25 : 0;
        blend(facePixel, noseDark, noseShadow);
        const curve = smile * ((x - cx) / mouthW) ** 2;
        blend(facePixel, lips, ellipse(x, y + curve, cx, mouthY, mouthW, mouthH));
        blend(color, facePixel, face);
      }
      const p = (y * W + x) * 4;
      out[p] = Math.round(Math.min(255, Math.max(0, color[0])));
      out[p + 1] = Math.round(Math.min(255, Math.max(0, color[1])));
      out[p + 2] = Math.round(Math.min(255, Math.max(0, color[2])));
      out[p + 3] = 255;
    }
  }
  return out;
}
