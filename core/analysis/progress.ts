// Progress of batched work, the same for every front end: an analysis counts the rows it runs (one prompt under
// one ablation set, edge-weight set or gradient step) per phase, and a sink shows them — the CLI on stderr, the
// extension in its progress notification. Rate and ETA come from the rows done so far in the phase.
import { formatSeconds } from './cost';

export interface ProgressEvent {
  /** The phase, in words ("ablation sets", "edge gradients"). */
  what: string;
  done: number;
  total: number;
  elapsedMs: number;
  /** Rows per second so far; undefined until a row is done. */
  rate?: number;
  /** Seconds left at that rate; undefined until a row is done. */
  etaSeconds?: number;
}

export type ProgressSink = (e: ProgressEvent) => void;

/** Counts one phase's rows and reports each step to the sink. */
export class Meter {
  private done = 0;
  private readonly t0: number;

  constructor(private readonly sink: ProgressSink, readonly what: string, readonly total: number, private readonly now: () => number = Date.now) {
    this.t0 = now();
    sink(this.event());
  }

  tick(rows: number): void {
    this.done = Math.min(this.total, this.done + rows);
    this.sink(this.event());
  }

  private event(): ProgressEvent {
    const elapsedMs = this.now() - this.t0;
    const rate = this.done > 0 && elapsedMs > 0 ? (this.done * 1000) / elapsedMs : undefined;
    return { what: this.what, done: this.done, total: this.total, elapsedMs, rate, etaSeconds: rate ? (this.total - this.done) / rate : undefined };
  }
}

/** A meter when the context has a sink and there is work to count. */
export function meter(ctx: { progress?: ProgressSink }, what: string, total: number): Meter | undefined {
  return ctx.progress && total > 0 ? new Meter(ctx.progress, what, total) : undefined;
}

/** One line: "ablation sets: 1,200/4,400 rows, 85 rows/s, about 38 s left". */
export function describeProgress(e: ProgressEvent): string {
  const n = (x: number) => x.toLocaleString('en');
  const rate = e.rate === undefined ? '' : `, ${e.rate >= 10 ? n(Math.round(e.rate)) : e.rate.toPrecision(2)} rows/s`;
  const eta = e.done >= e.total ? `, done in ${formatSeconds(e.elapsedMs / 1000)}` : e.etaSeconds === undefined ? '' : `, about ${formatSeconds(e.etaSeconds)} left`;
  return `${e.what}: ${n(e.done)}/${n(e.total)} rows${rate}${eta}`;
}
