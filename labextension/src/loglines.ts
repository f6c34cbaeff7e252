/**
 * The lines of a streamed job log and their filter (pure: no DOM, no network).
 *
 * The server sends text with the levels of the lines it completes (split at `\n`, classified
 * by the same rules as the notebook panel's filter); this keeps the last `maxLines` of them,
 * the unfinished last line apart, and the byte offset to resume from after a dropped socket:
 * the start of that unfinished line, so the server classifies it whole.
 */

/** The levels of the filter, lowest first (as `gpu_magic.parsers.levels.LEVELS`). */
export const LEVELS = ['DEBUG', 'INFO', 'WARNING', 'ERROR'];

const RANK = new Map(LEVELS.map((name, i) => [name, i]));

export interface ILogLine {
  /** 0-based number of the line in the whole log (kept across trimming). */
  index: number;
  text: string;
  level: string | null;
}

/** The bytes of `text` in UTF-8, as the server counts offsets. */
export function utf8Length(text: string): number {
  let bytes = 0;
  for (const char of text) {
    const code = char.codePointAt(0) as number;
    bytes += code < 0x80 ? 1 : code < 0x800 ? 2 : code < 0x10000 ? 3 : 4;
  }
  return bytes;
}

// eslint-disable-next-line no-control-regex
const ESCAPES = /\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x08/g;

/**
 * What a terminal shows of a line that `\r` rewrote (tqdm): its last non-blank frame, without
 * terminal escapes (as `gpu_magic.parsers.events.terminal_lines`, by which the server
 * classifies the line).
 */
export function shownFrame(line: string): string {
  const frames = line.split('\r').map(f => f.replace(ESCAPES, '').replace(/\s+$/, ''));
  const shown = frames.filter(f => f.trim() !== '');
  return shown.length ? shown[shown.length - 1] : '';
}

/**
 * Whether a line passes the filter: at `minLevel` or above (a line without a level drops out
 * once a level is asked for) and matching `search` (a case-insensitive regular expression).
 */
export function keeps(line: ILogLine, minLevel: string | null, search: RegExp | null): boolean {
  if (minLevel !== null) {
    const rank = line.level === null ? undefined : RANK.get(line.level);
    if (rank === undefined || rank < (RANK.get(minLevel) ?? 0)) {
      return false;
    }
  }
  return search === null || search.test(line.text);
}

/** A search box's text as a case-insensitive regular expression; throws on a bad pattern. */
export function compileSearch(text: string): RegExp | null {
  return text.trim() === '' ? null : new RegExp(text, 'i');
}

export class LogLines {
  constructor(readonly maxLines = 5000) {}

  /** The complete lines kept, oldest first. */
  get lines(): readonly ILogLine[] {
    return this._lines;
  }

  /** The unfinished last line (shown, not yet classified). */
  get partial(): string {
    return this._partial;
  }

  /** How many complete lines the log has had (kept or trimmed). */
  get count(): number {
    return this._count;
  }

  /** The byte offset just after the last text received. */
  get offset(): number {
    return this._offset;
  }

  /** Where a new socket resumes: the start of the unfinished line. */
  get resumeOffset(): number {
    return this._offset - utf8Length(this._partial);
  }

  /**
   * Add a message's `text` that ends at byte `offset`, with the `levels` of the lines it
   * completes; answers the lines it completed.
   */
  push(text: string, offset: number, levels: (string | null)[]): ILogLine[] {
    const parts = (this._partial + text).split('\n');
    this._partial = parts.pop() as string;
    const added = parts.map((line, i) => ({
      index: this._count + i,
      text: shownFrame(line),
      level: i < levels.length ? levels[i] : null
    }));
    this._count += added.length;
    this._offset = offset;
    this._lines.push(...added);
    if (this._lines.length > this.maxLines) {
      this._lines.splice(0, this._lines.length - this.maxLines);
    }
    return added;
  }

  /**
   * Drop the unfinished line before resuming at `resumeOffset`: the new socket sends it again,
   * whole, with its level.
   */
  rewindPartial(): void {
    this._offset = this.resumeOffset;
    this._partial = '';
  }

  /** The kept lines that pass the filter. */
  filtered(minLevel: string | null, search: RegExp | null): ILogLine[] {
    if (minLevel === null && search === null) {
      return [...this._lines];
    }
    return this._lines.filter(line => keeps(line, minLevel, search));
  }

  private _lines: ILogLine[] = [];
  private _partial = '';
  private _count = 0;
  private _offset = 0;
}
