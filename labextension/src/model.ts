/**
 * One poller of `GET gpu-jobs`, shared by the sidebar and the status bar: it polls every
 * `refreshInterval` ms while at least one consumer has asked for it (`setActive`), and
 * emits the jobs (`changed`), a failed fetch (`failed`) and each job that went from a
 * non-terminal state to a terminal one between two polls (`finished`).
 */
import { ISignal, Signal } from '@lumino/signaling';

import { IJob, listJobs } from './request';

/** States in which a job is still going (and can still be cancelled). */
export const ACTIVE_STATES = ['pending', 'uploading', 'queued', 'running'];

/** States in which a job has ended for good. */
export const TERMINAL_STATES = ['completed', 'failed', 'cancelled', 'timeout', 'lost'];

/** Every state, in the order of a job's life. */
export const ALL_STATES = [...ACTIVE_STATES, ...TERMINAL_STATES];

const ACTIVE = new Set(ACTIVE_STATES);
const TERMINAL = new Set(TERMINAL_STATES);

export function isActive(status: string): boolean {
  return ACTIVE.has(status);
}

/** A job that ended between two polls, with the state it was last seen in before. */
export interface IJobFinished {
  job: IJob;
  previous: string;
}

export class JobsModel {
  constructor(refreshInterval = 2000) {
    this._interval = refreshInterval;
  }

  /** The jobs of the last successful fetch, newest first. */
  get jobs(): IJob[] {
    return this._jobs;
  }

  /** The error of the last fetch, or null when it succeeded. */
  get error(): Error | null {
    return this._error;
  }

  /** Whether a fetch has succeeded yet. */
  get loaded(): boolean {
    return this._loaded;
  }

  get changed(): ISignal<this, IJob[]> {
    return this._changed;
  }

  get failed(): ISignal<this, Error> {
    return this._failed;
  }

  get finished(): ISignal<this, IJobFinished> {
    return this._finished;
  }

  get refreshInterval(): number {
    return this._interval;
  }

  set refreshInterval(ms: number) {
    const value = Math.max(500, Number(ms) || 2000);
    if (value === this._interval) {
      return;
    }
    this._interval = value;
    if (this._timer !== null) {
      this._schedule(value); // the new interval applies from now
    }
  }

  /** A consumer (`key`) asks for polling (or stops asking); polls while any one asks. */
  setActive(key: string, active: boolean): void {
    if (active) {
      this._consumers.add(key);
    } else {
      this._consumers.delete(key);
    }
    if (this._consumers.size > 0 && this._timer === null) {
      this._schedule(0);
    } else if (this._consumers.size === 0) {
      this._stop();
    }
  }

  /** Fetch the jobs now; concurrent calls share one request. */
  refresh(): Promise<void> {
    if (this._loading) {
      return this._loading;
    }
    this._loading = (async () => {
      try {
        const { jobs } = await listJobs(100);
        this._jobs = jobs;
        this._error = null;
        this._loaded = true;
        const ended: IJobFinished[] = [];
        for (const job of jobs) {
          const previous = this._seen.get(job.id);
          if (previous !== undefined && !TERMINAL.has(previous) && TERMINAL.has(job.status)) {
            ended.push({ job, previous });
          }
          this._seen.set(job.id, job.status);
        }
        this._changed.emit(jobs);
        for (const item of ended) {
          this._finished.emit(item);
        }
      } catch (error) {
        this._error = error as Error;
        this._failed.emit(this._error);
      } finally {
        this._loading = null;
      }
    })();
    return this._loading;
  }

  dispose(): void {
    this._consumers.clear();
    this._stop();
    Signal.clearData(this);
  }

  private _schedule(delay: number): void {
    this._stop();
    const generation = ++this._generation;
    const tick = async () => {
      await this.refresh();
      if (generation === this._generation && this._timer !== null && this._consumers.size) {
        this._timer = window.setTimeout(tick, this._interval);
      }
    };
    this._timer = window.setTimeout(tick, delay);
  }

  private _stop(): void {
    this._generation++;
    if (this._timer !== null) {
      window.clearTimeout(this._timer);
      this._timer = null;
    }
  }

  private _generation = 0;
  private _interval: number;
  private _jobs: IJob[] = [];
  private _error: Error | null = null;
  private _loaded = false;
  private _seen = new Map<string, string>();
  private _consumers = new Set<string>();
  private _timer: number | null = null;
  private _loading: Promise<void> | null = null;
  private _changed = new Signal<this, IJob[]>(this);
  private _failed = new Signal<this, Error>(this);
  private _finished = new Signal<this, IJobFinished>(this);
}
