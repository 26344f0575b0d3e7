/**
 * A DCGAN and its training step: alternating D and G updates with Adam (separate learning rates
 * and betas per network), optional tricks from the params, an optional running average of G's
 * weights to sample from, and every random draw taken from one seeded generator whose state a
 * checkpoint can store. Pure tensors: no file I/O.
 */
import * as tf from "./tf.ts";
import { type DcganConfig, Discriminator, Generator } from "./dcgan.ts";
import { applyUpdates, type Pass, updateSpectralVectors } from "./layers.ts";
import { discriminatorLoss, featureMatchingLoss, generatorLoss } from "./losses.ts";
import type { LossName, LrDecay } from "./choices.ts";
import { Rng, type RngState } from "./rng.ts";
import { adamOnDevice } from "./backends/webgpu_device.ts";
import { adamInHeap } from "./backends/native_adam.ts";
import { nativeKernelsInstalled } from "./backends/native.ts";
import "./gradients.ts";

export interface GanConfig {
  model: DcganConfig;
  loss: LossName;
  lrG: number;
  lrD: number;
  beta1: number;
  beta2: number;
  /** the real label for D (0.9 = one-sided smoothing, 1 = off) */
  realLabel: number;
  /** probability of swapping real/fake labels per sample in the D step */
  flipLabels: number;
  featureMatching: boolean;
  gradientPenalty: number;
  /** linear: to 0 at totalSteps; step: x gamma every decayEvery steps */
  lrDecay: LrDecay;
  decayEvery: number;
  decayGamma: number;
  totalSteps: number;
  /**
   * decay of the exponential moving average of G's weights that samples, exports and is evaluated
   * (0: off, G itself). Warmed up as min(decay, (1 + t) / (10 + t)) at G step t, so the random
   * initial weights do not linger in a short run.
   */
  emaDecay: number;
  seed: number;
}

/** How many training steps' losses are read back at once. */
export const LOSS_READ_EVERY = 16;

export interface StepLosses {
  dReal: number;
  dFake: number;
  g: number;
}

/** Adam over one network's weights, its moments kept as variables (checkpointed with the weights). */
export class Adam {
  readonly moments = new Map<string, tf.Variable>();
  steps = 0;

  constructor(private readonly name: string, private readonly beta1: number, private readonly beta2: number) {}

  init(variables: Map<string, tf.Variable>): void {
    for (const [name, variable] of variables) {
      for (const kind of ["m", "v"]) {
        // In a tidy, so the variable alone owns its zeros (the webgpu and native Adams update it in place).
        this.moments.set(`${this.name}/${kind}/${name}`, tf.tidy(() => tf.variable(tf.zerosLike(variable), false)));
      }
    }
  }

  /** `grads` is keyed by tfjs' own variable names (what variableGrads returns). */
  apply(variables: Map<string, tf.Variable>, grads: tf.NamedTensorMap, lr: number): void {
    this.steps++;
    const correction1 = 1 - this.beta1 ** this.steps;
    const correction2 = 1 - this.beta2 ** this.steps;
    const moments = (name: string) =>
      [this.moments.get(`${this.name}/m/${name}`)!, this.moments.get(`${this.name}/v/${name}`)!] as const;
    if (tf.getBackend() === "webgpu" || nativeKernelsInstalled()) {
      // One pass per weight: a dispatch with the per-step numbers as uniforms, no uploads (see
      // webgpu_device.ts), or a loop over the wasm heap (native_adam.ts).
      const triples = [...variables].map(([name, variable]) => {
        const [m, v] = moments(name);
        return { variable, m, v, grad: grads[variable.name] };
      });
      const { beta1, beta2 } = this;
      const update = tf.getBackend() === "webgpu" ? adamOnDevice : adamInHeap;
      return update(triples, { beta1, beta2, correction1, correction2, lr });
    }
    tf.tidy(() => {
      for (const [name, variable] of variables) {
        const grad = grads[variable.name];
        const [m, v] = moments(name);
        m.assign(m.mul(this.beta1).add(grad.mul(1 - this.beta1)));
        v.assign(v.mul(this.beta2).add(grad.square().mul(1 - this.beta2)));
        const update = m.div(correction1).div(v.div(correction2).sqrt().add(1e-8)).mul(lr);
        variable.assign(variable.sub(update));
      }
    });
  }
}

/**
 * `target` <- a copy of `source`'s values. Not `assign(source)`, which would share its buffer: the
 * webgpu and native Adam update G's weights in place.
 */
function copyInto(target: tf.Variable, source: tf.Variable): void {
  tf.tidy(() => target.assign(source.mul(1))); // x * 1 keeps every bit, -0 included
}

export class Gan {
  readonly generator: Generator;
  readonly discriminator: Discriminator;
  /** the running average of G's trainable weights (config.emaDecay > 0), else null */
  private readonly averaged: Generator | null;
  private readonly adamG: Adam;
  private readonly adamD: Adam;
  /** noise, label flips, dropout masks and gradient-penalty mixes, in a fixed order per step */
  rng: Rng;
  step = 0;
  /** d_real, d_fake, g per queued step, not yet read */
  private readonly pendingLosses: tf.Scalar[] = [];
  /** the label targets when no labels flip: the same every step of a batch size, so made once */
  private fixedTargets: [tf.Tensor2D, tf.Tensor2D] | null = null;

  constructor(readonly config: GanConfig) {
    const init = new Rng(config.seed);
    this.generator = new Generator(config.model, init);
    this.discriminator = new Discriminator(config.model, init);
    // Create every variable now, in a fixed order, so the initial weights depend only on the seed.
    this.generator.build();
    this.discriminator.build();
    this.adamG = new Adam("adam_G", config.beta1, config.beta2);
    this.adamD = new Adam("adam_D", config.beta1, config.beta2);
    this.adamG.init(this.generator.store.trainable);
    this.adamD.init(this.discriminator.store.trainable);
    this.rng = new Rng(init.nextUint32());
    // Its own variables (same names, its own store), starting at G's initial weights; no random draw.
    this.averaged = config.emaDecay > 0 ? new Generator(config.model, new Rng(0)) : null;
    if (this.averaged) {
      this.averaged.build();
      for (const [name, variable] of this.averaged.store.trainable) {
        copyInto(variable, this.generator.store.trainable.get(name)!);
      }
    }
  }

  private pass(training: boolean, spectralNorm: boolean): Pass {
    return { training, spectralNorm, updates: [], rng: training ? this.rng : undefined };
  }

  learningRate(base: number): number {
    const { lrDecay, decayEvery, decayGamma, totalSteps } = this.config;
    if (lrDecay === "linear") return base * Math.max(0, 1 - this.step / Math.max(totalSteps, 1));
    if (lrDecay === "step") return base * decayGamma ** Math.floor(this.step / Math.max(decayEvery, 1));
    return base;
  }

  noise(batch: number): tf.Tensor2D {
    return tf.tensor2d(this.rng.normals(batch * this.config.model.zSize), [batch, this.config.model.zSize]);
  }

  /** One step whose losses are then read at once (tests, bench); training reads every LOSS_READ_EVERY steps. */
  async trainStep(real: tf.Tensor4D): Promise<StepLosses> {
    this.queueStep(real);
    return (await this.readLosses())[0];
  }

  /** Steps queued whose losses are still on the device. */
  get pendingSteps(): number {
    return this.pendingLosses.length / 3;
  }

  /**
   * The losses of every queued step, oldest first, in one readback: reading stalls the CPU until
   * the device has caught up, so a GPU run reads every LOSS_READ_EVERY steps, not every step.
   */
  async readLosses(): Promise<StepLosses[]> {
    const parts = this.pendingLosses.splice(0);
    if (!parts.length) return [];
    const stacked = tf.stack(parts);
    const values = await stacked.data();
    tf.dispose([stacked, ...parts]);
    return Array.from({ length: parts.length / 3 }, (_, i) => ({
      dReal: values[3 * i],
      dFake: values[3 * i + 1],
      g: values[3 * i + 2],
    }));
  }

  /**
   * One D update then one G update on a batch of real images in [-1, 1]. The losses stay on the
   * device until `readLosses`: nothing here waits for the device.
   */
  queueStep(real: tf.Tensor4D): void {
    const { config, generator: G, discriminator: D } = this;
    const batch = real.shape[0];
    if (D.spectralNorm) updateSpectralVectors(D.store);
    if (G.spectralNorm) updateSpectralVectors(G.store);
    const dVars = [...D.store.trainable.values()];
    const gVars = [...G.store.trainable.values()];

    // --- discriminator ---
    const gPassForD = this.pass(true, G.spectralNorm);
    const fake = tf.tidy(() => G.forward(this.noise(batch), gPassForD));
    const [realTarget, fakeTarget] = this.targets(batch);
    const dPass = this.pass(true, D.spectralNorm);
    const mix = config.loss === "wgan-gp"
      ? tf.tensor4d(Float32Array.from({ length: batch }, () => this.rng.next()), [batch, 1, 1, 1])
      : null;
    const parts: tf.Scalar[] = [];
    const dStep = tf.variableGrads(() => {
      const realOut = D.forward(real, dPass);
      const fakeOut = D.forward(fake, dPass);
      const { real: lossReal, fake: lossFake } = discriminatorLoss(
        config.loss,
        realOut.logits,
        fakeOut.logits,
        realTarget,
        fakeTarget,
      );
      parts.push(tf.keep(lossReal), tf.keep(lossFake));
      let total = lossReal.add(lossFake);
      if (mix) total = total.add(this.gradientPenalty(real, fake, mix));
      return total as tf.Scalar;
    }, dVars);
    this.adamD.apply(D.store.trainable, dStep.grads, this.learningRate(config.lrD));
    applyUpdates(dPass);
    applyUpdates(gPassForD);
    tf.dispose([fake, dStep.value, mix as tf.Tensor]);
    if (realTarget !== this.fixedTargets?.[0]) tf.dispose([realTarget, fakeTarget]);
    tf.dispose(dStep.grads);

    // --- generator ---
    const gPass = this.pass(true, G.spectralNorm);
    const dPassForG = this.pass(true, D.spectralNorm);
    const z = this.noise(batch);
    const gStep = tf.variableGrads(() => {
      const generated = G.forward(z, gPass);
      const out = D.forward(generated, dPassForG);
      if (config.featureMatching) return featureMatchingLoss(D.forward(real, dPassForG).features, out.features);
      return generatorLoss(config.loss, out.logits);
    }, gVars);
    this.adamG.apply(G.store.trainable, gStep.grads, this.learningRate(config.lrG));
    applyUpdates(gPass);
    if (this.averaged) this.updateAverage();
    tf.dispose(dPassForG.updates.map(([, value]) => value)); // D is only read in the G step
    this.pendingLosses.push(parts[0], parts[1], gStep.value);
    tf.dispose(z);
    tf.dispose(gStep.grads);
    this.step++;
  }

  /** average <- d * average + (1 - d) * weight for each of G's trainable weights, after G's step. */
  private updateAverage(): void {
    const decay = Math.min(this.config.emaDecay, (1 + this.step) / (10 + this.step));
    tf.tidy(() => {
      for (const [name, average] of this.averaged!.store.trainable) {
        average.assign(average.mul(decay).add(this.generator.store.trainable.get(name)!.mul(1 - decay)));
      }
    });
  }

  /**
   * The generator that samples, is exported and evaluated: the weight average (with G's current
   * batch-norm statistics and spectral-norm vectors, which are not averaged) when train.ema is on.
   */
  samplingGenerator(): Generator {
    if (!this.averaged) return this.generator;
    for (const [name, variable] of this.generator.store.state) copyInto(this.averaged.store.state.get(name)!, variable);
    return this.averaged;
  }

  private targets(batch: number): [tf.Tensor2D, tf.Tensor2D] {
    if (this.config.flipLabels <= 0 && this.fixedTargets?.[0].shape[0] === batch) return this.fixedTargets;
    const real = new Float32Array(batch).fill(this.config.realLabel);
    const fake = new Float32Array(batch);
    if (this.config.flipLabels > 0) {
      for (let i = 0; i < batch; i++) {
        if (this.rng.next() < this.config.flipLabels) {
          real[i] = 0;
          fake[i] = this.config.realLabel;
        }
      }
    }
    const targets: [tf.Tensor2D, tf.Tensor2D] = [tf.tensor2d(real, [batch, 1]), tf.tensor2d(fake, [batch, 1])];
    if (this.config.flipLabels <= 0) {
      if (this.fixedTargets) tf.dispose(this.fixedTargets);
      this.fixedTargets = targets;
    }
    return targets;
  }

  /** WGAN-GP: lambda * (||grad_x D(x_hat)|| - 1)^2 on random mixes of real and fake. */
  private gradientPenalty(real: tf.Tensor4D, fake: tf.Tensor4D, mix: tf.Tensor4D): tf.Scalar {
    const mixed = real.mul(mix).add(fake.mul(tf.scalar(1).sub(mix))) as tf.Tensor4D;
    const pass = this.pass(true, this.discriminator.spectralNorm);
    pass.rng = undefined; // the same dropout-free D on both sides of the penalty
    const gradient = tf.grad((x: tf.Tensor) => this.discriminator.forward(x as tf.Tensor4D, pass).logits.sum())(mixed);
    tf.dispose(pass.updates.map(([, value]) => value));
    const norms = gradient.square().sum([1, 2, 3]).add(1e-12).sqrt();
    return norms.sub(1).square().mean().mul(this.config.gradientPenalty) as tf.Scalar;
  }

  /** Generator output in eval mode (batch-norm running statistics), values in [-1, 1]. */
  sample(z: tf.Tensor2D): tf.Tensor4D {
    return this.samplingGenerator().sample(z);
  }

  /** Every tensor of the training state by name, in a fixed order (for checkpoints). */
  stateTensors(): [string, tf.Variable][] {
    return [
      ...this.generator.store.entries(),
      ...this.discriminator.store.entries(),
      ...this.adamG.moments.entries(),
      ...this.adamD.moments.entries(),
      ...[...this.averaged?.store.trainable ?? []].map(([name, variable]) =>
        [`ema/${name}`, variable] as [string, tf.Variable]
      ),
    ];
  }

  dispose(): void {
    for (const [, variable] of this.stateTensors()) variable.dispose();
    for (const [, variable] of this.averaged?.store.state ?? []) variable.dispose();
    tf.dispose([...this.pendingLosses.splice(0), ...this.fixedTargets ?? []]);
  }

  /** The scalars of the training state that are not tensors. */
  counters(): { step: number; adamSteps: [number, number]; rng: RngState } {
    return { step: this.step, adamSteps: [this.adamG.steps, this.adamD.steps], rng: this.rng.state() };
  }

  restoreCounters(counters: { step: number; adamSteps: [number, number]; rng: RngState }): void {
    this.step = counters.step;
    [this.adamG.steps, this.adamD.steps] = counters.adamSteps;
    this.rng = Rng.restore(counters.rng);
  }
}
