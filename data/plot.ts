/**
 * Line plots drawn by the project itself, as SVG (crisp, with real text) and as PNG (a raster
 * with a built-in 5x7 bitmap font, so no font file is needed): axes with tick labels, a legend.
 */
import { Image } from "imagescript";
import type { LossRow } from "./training_log.ts";

export interface Series {
  name: string;
  /** 0xRRGGBB */
  color: number;
  points: [number, number][];
}

/** A grey horizontal line at `y` (a floor, a target) across the x range of `series` (not empty). */
export function referenceLine(name: string, y: number, series: Series[]): Series {
  const xs = series.flatMap((one) => one.points.map(([x]) => x));
  return { name, color: 0x999999, points: [[Math.min(...xs), y], [Math.max(...xs), y]] };
}

export interface PlotSpec {
  title: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
}

/** The training losses (D on real, D on fake, G) per step, in the colours the report and the live page share. */
export function lossPlot(title: string, rows: LossRow[]): PlotSpec {
  return {
    title,
    xLabel: "step",
    yLabel: "loss",
    series: [
      { name: "D real", color: 0x1f77b4, points: rows.map((r) => [r.step, r.d_real]) },
      { name: "D fake", color: 0xff7f0e, points: rows.map((r) => [r.step, r.d_fake]) },
      { name: "G", color: 0x2ca02c, points: rows.map((r) => [r.step, r.g]) },
    ],
  };
}

const WIDTH = 720, HEIGHT = 400;
/** A generous width of a 12 px sans-serif character: the legend box holds its longest name. */
const SVG_CHAR_WIDTH = 7;
const MARGIN = { left: 70, right: 20, top: 40, bottom: 50 };

/** "Nice" tick values covering [min, max]. */
function ticks(min: number, max: number, count = 5): number[] {
  const span = max - min || 1;
  const step = 10 ** Math.floor(Math.log10(span / count));
  const nice = [1, 2, 5, 10].map((m) => m * step).find((s) => span / s <= count) ?? step * 10;
  const out: number[] = [];
  for (let v = Math.ceil(min / nice) * nice; v <= max + nice * 1e-9; v += nice) out.push(Number(v.toPrecision(12)));
  return out;
}

function label(value: number): string {
  return Math.abs(value) >= 1e4 || (Math.abs(value) < 1e-3 && value !== 0) ? value.toExponential(1) : String(value);
}

function layout(spec: PlotSpec) {
  const all = spec.series.flatMap((s) => s.points).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
  const xs = all.map(([x]) => x), ys = all.map(([, y]) => y);
  let [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  if (!(x1 > x0)) [x0, x1] = [x0 - 1, x0 + 1];
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  if (!(y1 > y0)) [y0, y1] = [y0 - 1, y0 + 1];
  const pad = (y1 - y0) * 0.05;
  [y0, y1] = [y0 - pad, y1 + pad];
  const px = (x: number) => MARGIN.left + ((x - x0) / (x1 - x0 || 1)) * (WIDTH - MARGIN.left - MARGIN.right);
  const py = (y: number) => HEIGHT - MARGIN.bottom - ((y - y0) / (y1 - y0)) * (HEIGHT - MARGIN.top - MARGIN.bottom);
  return { px, py, xTicks: ticks(x0, x1), yTicks: ticks(y0, y1) };
}

const hex = (color: number) => `#${color.toString(16).padStart(6, "0")}`;
const escape = (text: string) => text.replace(/[&<>]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;" })[c]!);

export function plotSvg(spec: PlotSpec): string {
  const { px, py, xTicks, yTicks } = layout(spec);
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}" ` +
    `font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${WIDTH / 2}" y="22" text-anchor="middle" font-size="15">${escape(spec.title)}</text>`,
    `<line x1="${MARGIN.left}" y1="${HEIGHT - MARGIN.bottom}" x2="${WIDTH - MARGIN.right}" y2="${
      HEIGHT - MARGIN.bottom
    }" stroke="black"/>`,
    `<line x1="${MARGIN.left}" y1="${MARGIN.top}" x2="${MARGIN.left}" y2="${HEIGHT - MARGIN.bottom}" stroke="black"/>`,
  ];
  for (const t of xTicks) {
    parts.push(`<text x="${px(t)}" y="${HEIGHT - MARGIN.bottom + 16}" text-anchor="middle">${label(t)}</text>`);
  }
  for (const t of yTicks) {
    parts.push(`<line x1="${MARGIN.left}" x2="${WIDTH - MARGIN.right}" y1="${py(t)}" y2="${py(t)}" stroke="#ddd"/>`);
    parts.push(`<text x="${MARGIN.left - 6}" y="${py(t) + 4}" text-anchor="end">${label(t)}</text>`);
  }
  parts.push(`<text x="${WIDTH / 2}" y="${HEIGHT - 12}" text-anchor="middle">${escape(spec.xLabel)}</text>`);
  parts.push(
    `<text transform="translate(16 ${HEIGHT / 2}) rotate(-90)" text-anchor="middle">${escape(spec.yLabel)}</text>`,
  );
  for (const series of spec.series) {
    const d = series.points.map(([x, y], j) => `${j ? "L" : "M"}${px(x).toFixed(1)},${py(y).toFixed(1)}`).join("");
    parts.push(`<path d="${d}" fill="none" stroke="${hex(series.color)}" stroke-width="1.5"/>`);
  }
  // The legend, sized to its longest name and inside the plot's top right corner, on white over the lines.
  const legendWidth = 30 + Math.max(...spec.series.map((series) => series.name.length)) * SVG_CHAR_WIDTH;
  const left = WIDTH - MARGIN.right - 6 - legendWidth;
  parts.push(
    `<rect x="${left}" y="${MARGIN.top}" width="${legendWidth}" height="${spec.series.length * 16 + 8}" ` +
      `fill="white" fill-opacity="0.85" stroke="#ccc"/>`,
  );
  spec.series.forEach((series, i) => {
    const ly = MARGIN.top + 4 + i * 16;
    parts.push(`<rect x="${left + 6}" y="${ly}" width="12" height="12" fill="${hex(series.color)}"/>`);
    parts.push(`<text x="${left + 24}" y="${ly + 10}">${escape(series.name)}</text>`);
  });
  parts.push("</svg>");
  return parts.join("\n");
}

// 5x7 glyphs, one string of 7 rows of 5 bits per character.
const GLYPHS: Record<string, string> = {
  "0": "01110100011001110101110011000101110",
  "1": "00100011000010000100001000010001110",
  "2": "01110100010000100010001000100011111",
  "3": "11111000100010000010000011000101110",
  "4": "00010001100101010010111110001000010",
  "5": "11111100001111000001000011000101110",
  "6": "00110010001000011110100011000101110",
  "7": "11111000010001000100010000100001000",
  "8": "01110100011000101110100011000101110",
  "9": "01110100011000101111000010001001100",
  ".": "00000000000000000000000000110001100",
  "-": "00000000000000011111000000000000000",
  "+": "00000001000010011111001000010000000",
  " ": "00000000000000000000000000000000000",
  "(": "00010001000100001000010000010000010",
  ")": "01000001000001000010000100010001000",
  "/": "00000000010001000100010001000000000",
  ":": "00000011000110000000011000110000000",
  "%": "11000110010001000100010001001100011",
  "_": "00000000000000000000000000000011111",
  A: "01110100011000111111100011000110001",
  B: "11110100011000111110100011000111110",
  C: "01110100011000010000100001000101110",
  D: "11100100101000110001100011001011100",
  E: "11111100001000011110100001000011111",
  F: "11111100001000011110100001000010000",
  G: "01110100011000010111100011000101111",
  H: "10001100011000111111100011000110001",
  I: "01110001000010000100001000010001110",
  J: "00111000100001000010000101001001100",
  K: "10001100101010011000101001001010001",
  L: "10000100001000010000100001000011111",
  M: "10001110111010110101100011000110001",
  N: "10001100011100110101100111000110001",
  O: "01110100011000110001100011000101110",
  P: "11110100011000111110100001000010000",
  Q: "01110100011000110001101011001001101",
  R: "11110100011000111110101001001010001",
  S: "01111100001000001110000010000111110",
  T: "11111001000010000100001000010000100",
  U: "10001100011000110001100011000101110",
  V: "10001100011000110001100010101000100",
  W: "10001100011000110101101011010101010",
  X: "10001100010101000100010101000110001",
  Y: "10001100010101000100001000010000100",
  Z: "11111000010001000100010001000011111",
};

function drawText(image: Image, text: string, x: number, y: number, color: number, scale = 2, vertical = false) {
  let cursor = 0;
  for (const char of text.toUpperCase()) {
    const glyph = GLYPHS[char] ?? GLYPHS[" "];
    for (let row = 0; row < 7; row++) {
      for (let column = 0; column < 5; column++) {
        if (glyph[row * 5 + column] !== "1") continue;
        for (let dy = 0; dy < scale; dy++) {
          for (let dx = 0; dx < scale; dx++) {
            const gx = column * scale + dx, gy = row * scale + dy;
            const [ox, oy] = vertical ? [x + gy, y - cursor - gx] : [x + cursor + gx, y + gy];
            if (ox >= 1 && oy >= 1 && ox <= image.width && oy <= image.height) image.setPixelAt(ox, oy, color);
          }
        }
      }
    }
    cursor += 6 * scale;
  }
}

const textWidth = (text: string, scale = 2) => text.length * 6 * scale;

function drawLine(image: Image, xa: number, ya: number, xb: number, yb: number, color: number, thickness = 2) {
  const steps = Math.max(Math.abs(xb - xa), Math.abs(yb - ya), 1);
  for (let i = 0; i <= steps; i++) {
    const x = Math.round(xa + ((xb - xa) * i) / steps), y = Math.round(ya + ((yb - ya) * i) / steps);
    for (let t = 0; t < thickness; t++) {
      if (x + t >= 1 && y >= 1 && x + t <= image.width && y <= image.height) image.setPixelAt(x + t, y, color);
    }
  }
}

export function plotPng(spec: PlotSpec): Image {
  const { px, py, xTicks, yTicks } = layout(spec);
  const image = new Image(WIDTH, HEIGHT);
  image.fill(0xffffffff);
  const black = 0x000000ff, grey = 0xddddddff;
  drawText(image, spec.title, Math.round(WIDTH / 2 - textWidth(spec.title) / 2), 10, black);
  for (const t of yTicks) {
    drawLine(image, MARGIN.left, Math.round(py(t)), WIDTH - MARGIN.right, Math.round(py(t)), grey, 1);
    drawText(image, label(t), MARGIN.left - 6 - textWidth(label(t), 1), Math.round(py(t)) - 3, black, 1);
  }
  for (const t of xTicks) {
    drawText(image, label(t), Math.round(px(t) - textWidth(label(t), 1) / 2), HEIGHT - MARGIN.bottom + 8, black, 1);
  }
  drawLine(image, MARGIN.left, HEIGHT - MARGIN.bottom, WIDTH - MARGIN.right, HEIGHT - MARGIN.bottom, black, 1);
  drawLine(image, MARGIN.left, MARGIN.top, MARGIN.left, HEIGHT - MARGIN.bottom, black, 1);
  drawText(image, spec.xLabel, Math.round(WIDTH / 2 - textWidth(spec.xLabel) / 2), HEIGHT - 22, black);
  drawText(image, spec.yLabel, 14, Math.round(HEIGHT / 2 + textWidth(spec.yLabel) / 2), black, 2, true);
  spec.series.forEach((series, i) => {
    const color = series.color * 256 + 0xff;
    for (let j = 1; j < series.points.length; j++) {
      const [a, b] = [series.points[j - 1], series.points[j]];
      drawLine(image, Math.round(px(a[0])), Math.round(py(a[1])), Math.round(px(b[0])), Math.round(py(b[1])), color);
    }
    const ly = MARGIN.top + 4 + i * 18;
    const left = WIDTH - MARGIN.right - 24 - Math.max(...spec.series.map((s) => textWidth(s.name)));
    image.drawBox(left, ly, 12, 12, color);
    drawText(image, series.name, left + 18, ly, black);
  });
  return image;
}
