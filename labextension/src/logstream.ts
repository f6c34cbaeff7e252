/**
 * A job's log over `WS gpu-jobs/{id}/logs/stream`, reconnecting after a dropped socket from
 * the byte offset it had reached, so every byte arrives once and in order. It stops for good
 * when the server says the job ended and its whole log was sent, or when disposed.
 */
import { ISignal, Signal } from '@lumino/signaling';

import { LogLines } from './loglines';
import { IJob, logStreamUrl } from './request';

/** Backoff between reconnects: 0.5 s, doubling up to 10 s, reset by a message. */
const FIRST_RETRY_MS = 500;
const MAX_RETRY_MS = 10000;

export type StreamState = 'connecting' | 'open' | 'reconnecting' | 'ended';

export class LogStream {
  constructor(
    readonly jobId: string,
    readonly lines = new LogLines()
  ) {
    this._connect();
  }

  /** Emits the lines each message completed (the unfinished line is `lines.partial`). */
  get received(): ISignal<this, void> {
    return this._received;
  }

  /** Emits the job on each of its state changes. */
  get status(): ISignal<this, IJob> {
    return this._status;
  }

  get stateChanged(): ISignal<this, StreamState> {
    return this._stateChanged;
  }

  get state(): StreamState {
    return this._state;
  }

  dispose(): void {
    if (this._disposed) {
      return;
    }
    this._disposed = true;
    window.clearTimeout(this._retryTimer);
    this._socket?.close();
    this._socket = null;
    Signal.clearData(this);
  }

  private _connect(): void {
    if (this._disposed || this._state === 'ended') {
      return;
    }
    const socket = new WebSocket(logStreamUrl(this.jobId, this.lines.resumeOffset));
    this._socket = socket;
    this.lines.rewindPartial(); // the server sends the unfinished line again, whole
    socket.onopen = () => this._setState('open');
    socket.onmessage = event => this._onMessage(String(event.data));
    socket.onclose = () => {
      if (this._socket === socket) {
        this._socket = null;
        this._retry();
      }
    };
  }

  private _onMessage(raw: string): void {
    let message: any;
    try {
      message = JSON.parse(raw);
    } catch {
      return; // not ours
    }
    this._delay = FIRST_RETRY_MS;
    if (message.type === 'log') {
      this.lines.push(String(message.text), Number(message.offset), message.levels || []);
      this._received.emit();
    } else if (message.type === 'status') {
      const { type, ...job } = message;
      this._status.emit(job as IJob);
    } else if (message.type === 'end') {
      this._setState('ended');
      this._socket?.close();
      this._socket = null;
    }
  }

  private _retry(): void {
    if (this._disposed || this._state === 'ended') {
      return;
    }
    this._setState('reconnecting');
    const delay = this._delay;
    this._delay = Math.min(MAX_RETRY_MS, this._delay * 2);
    this._retryTimer = window.setTimeout(() => this._connect(), delay);
  }

  private _setState(state: StreamState): void {
    if (state !== this._state) {
      this._state = state;
      this._stateChanged.emit(state);
    }
  }

  private _socket: WebSocket | null = null;
  private _state: StreamState = 'connecting';
  private _delay = FIRST_RETRY_MS;
  private _retryTimer = 0;
  private _disposed = false;
  private _received = new Signal<this, void>(this);
  private _status = new Signal<this, IJob>(this);
  private _stateChanged = new Signal<this, StreamState>(this);
}
