/**
 * The seeds' DCGAN and its deeper variants. At 32 px (the seeds' baseline):
 *   D: conv(3->d, k4 s2, no BN) lrelu0.2, conv(d->2d)+BN lrelu, conv(2d->4d)+BN lrelu, dense(->1)
 *   G: dense(z->4*4*4g), convT(4g->2g)+BN relu, convT(2g->g)+BN relu, convT(g->3) tanh
 * Each doubling of the image size adds one conv layer (D) and one convT layer (G).
 */
import * as tf from "./tf.ts";
import { batchNorm, conv, convTranspose, dense, dropout, minibatchStd, type Pass, selfAttention } from "./layers.ts";
import { ParamStore } from "./params.ts";
import type { Rng } from "./rng.ts";
import type { SpectralNorm } from "./choices.ts";

export interface DcganConfig {
  imageSize: 32 | 64 | 128;
  zSize: number;
  gConvDim: number;
  dConvDim: number;
  spectralNorm: SpectralNorm;
  selfAttention: boolean;
  dDropout: number;
  minibatchStd: boolean;
  residual: boolean;
  /** batch norm in D (off for WGAN-GP, whose penalty is per sample) */
  dBatchNorm: boolean;
}

/** Number of stride-2 layers between 4x4 and the image size. */
export function depthFor(imageSize: number): number {
  const depth = Math.log2(imageSize / 4);
  if (!Number.isInteger(depth) || depth < 3) throw new Error(`image size ${imageSize} is not 32, 64 or 128`);
  return depth;
}

export class Generator {
  readonly store: ParamStore;
  constructor(readonly config: DcganConfig, rng: Rng) {
    this.store = new ParamStore("G", rng);
  }

  get spectralNorm(): boolean {
    return this.config.spectralNorm === "g" || this.config.spectralNorm === "both";
  }

  /** Create every variable (drawing initial weights) with an eval-mode pass on a tiny batch. */
  build(): void {
    tf.tidy(() => {
      this.sample(tf.zeros([2, this.config.zSize]));
    });
  }

  /** Eval mode (batch-norm running statistics, no dropout): z [B, zSize] -> images [B, S, S, 3] in [-1, 1]. */
  sample(z: tf.Tensor2D): tf.Tensor4D {
    return tf.tidy(() => this.forward(z, { training: false, spectralNorm: this.spectralNorm, updates: [] }));
  }

  /** z [B, zSize] -> images [B, S, S, 3] in [-1, 1]. */
  forward(z: tf.Tensor2D, pass: Pass): tf.Tensor4D {
    const { gConvDim, zSize } = this.config;
    const depth = depthFor(this.config.imageSize);
    const s = this.store;
    if (z.shape[1] !== zSize) throw new Error(`z has ${z.shape[1]} columns, expected ${zSize}`);
    let channels = gConvDim * 2 ** (depth - 1);
    let x = dense(s, "fc", z, 4 * 4 * channels, pass).reshape([z.shape[0], 4, 4, channels]) as tf.Tensor4D;
    for (let layer = 1; layer < depth; layer++) {
      channels /= 2;
      const up = convTranspose(s, `up${layer}`, x, channels, pass, { bias: false });
      x = batchNorm(s, `up${layer}/bn`, up, pass, "relu");
      if (this.config.residual) x = residualBlock(s, `res${layer}`, x, pass);
      // SAGAN puts attention on the middle resolution (16x16 at 32 px).
      if (this.config.selfAttention && layer === depth - 2) x = selfAttention(s, `attn`, x, pass);
    }
    return tf.tanh(convTranspose(s, `up${depth}`, x, 3, pass));
  }
}

function residualBlock(store: ParamStore, name: string, x: tf.Tensor4D, pass: Pass): tf.Tensor4D {
  const channels = x.shape[3];
  let h = conv(store, `${name}/conv1`, x, channels, pass, { kernel: 3, stride: 1, bias: false });
  h = batchNorm(store, `${name}/bn1`, h, pass, "relu");
  h = conv(store, `${name}/conv2`, h, channels, pass, { kernel: 3, stride: 1, bias: false });
  return tf.relu(x.add(batchNorm(store, `${name}/bn2`, h, pass)));
}

export interface DiscriminatorOutput {
  logits: tf.Tensor2D;
  /** the last convolutional features, flattened (for feature matching) */
  features: tf.Tensor2D;
}

export class Discriminator {
  readonly store: ParamStore;
  constructor(readonly config: DcganConfig, rng: Rng) {
    this.store = new ParamStore("D", rng);
  }

  get spectralNorm(): boolean {
    return this.config.spectralNorm === "d" || this.config.spectralNorm === "both";
  }

  build(): void {
    const size = this.config.imageSize;
    tf.tidy(() => {
      this.forward(tf.zeros([2, size, size, 3]), { training: false, spectralNorm: this.spectralNorm, updates: [] });
    });
  }

  forward(images: tf.Tensor4D, pass: Pass): DiscriminatorOutput {
    const { dConvDim, dDropout } = this.config;
    const depth = depthFor(this.config.imageSize);
    const s = this.store;
    let x = images;
    let channels = dConvDim;
    for (let layer = 1; layer <= depth; layer++) {
      // The first layer has no batch norm (DCGAN).
      const normed = layer > 1 && this.config.dBatchNorm;
      x = conv(s, `down${layer}`, x, channels, pass, { bias: !normed, leaky: !normed });
      if (normed) x = batchNorm(s, `down${layer}/bn`, x, pass, "leakyRelu");
      x = dropout(x, dDropout, pass);
      if (this.config.selfAttention && layer === 1) x = selfAttention(s, "attn", x, pass);
      channels *= 2;
    }
    const features = x.reshape([x.shape[0], -1]) as tf.Tensor2D;
    const head = this.config.minibatchStd ? minibatchStd(x) : x;
    const logits = dense(s, "fc", head.reshape([head.shape[0], -1]) as tf.Tensor2D, 1, pass);
    return { logits, features };
  }
}
