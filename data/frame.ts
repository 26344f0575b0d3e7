/** The aligned CelebA frame (178x218) that face boxes are given in; a box scales with the image. */
export const REFERENCE_WIDTH = 178;
export const REFERENCE_HEIGHT = 218;
