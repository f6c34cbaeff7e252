/**
 * LogLines: the streamed log's lines, their levels, the unfinished last line, trimming, the
 * filter, and the offset a dropped socket resumes from.
 */
import { compileSearch, keeps, LogLines, shownFrame, utf8Length } from '../loglines';

describe('utf8Length', () => {
  it('counts bytes as the server counts offsets', () => {
    expect(utf8Length('abc')).toBe(3);
    expect(utf8Length('é')).toBe(2);
    expect(utf8Length('€')).toBe(3);
    expect(utf8Length('🚀')).toBe(4);
    expect(utf8Length('')).toBe(0);
  });
});

describe('shownFrame', () => {
  it('keeps what a terminal shows of a line that \\r rewrote', () => {
    expect(shownFrame(' 10%|█ | 1/10\r 20%|██ | 2/10')).toBe(' 20%|██ | 2/10');
    expect(shownFrame('done\r')).toBe('done');
    expect(shownFrame('plain')).toBe('plain');
    expect(shownFrame('\x1b[32mgreen\x1b[0m\r   ')).toBe('green'); // no escapes, no blank frame
  });
});

describe('LogLines', () => {
  it('completes lines across messages and pairs each with its level', () => {
    const log = new LogLines();
    expect(log.push('INFO:root:a\nWARN', 16, ['INFO'])).toEqual([
      { index: 0, text: 'INFO:root:a', level: 'INFO' }
    ]);
    expect(log.partial).toBe('WARN');
    const added = log.push('ING:root:b\nplain\n', 33, ['WARNING', null]);
    expect(added.map(l => [l.index, l.text, l.level])).toEqual([
      [1, 'WARNING:root:b', 'WARNING'],
      [2, 'plain', null]
    ]);
    expect(log.partial).toBe('');
    expect(log.count).toBe(3);
    expect(log.offset).toBe(33);
  });

  it('resumes at the start of the unfinished line, counted in bytes', () => {
    const log = new LogLines();
    log.push('ok\nété', 3 + utf8Length('été'), [null]);
    expect(log.resumeOffset).toBe(3);
    log.rewindPartial();
    expect(log.partial).toBe('');
    expect(log.offset).toBe(3);
    log.push('été fini\n', 3 + utf8Length('été fini\n'), ['INFO']);
    expect(log.lines.map(l => l.text)).toEqual(['ok', 'été fini']); // the line arrives once
  });

  it('keeps the last maxLines lines, numbered across the trimming', () => {
    const log = new LogLines(3);
    log.push('a\nb\nc\nd\ne\n', 10, [null, null, null, null, null]);
    expect(log.lines.map(l => [l.index, l.text])).toEqual([
      [2, 'c'],
      [3, 'd'],
      [4, 'e']
    ]);
    expect(log.count).toBe(5);
  });

  it('filters by lowest level and by search', () => {
    const log = new LogLines();
    const text = 'DEBUG:x:d\nINFO:x:loss=1\nWARNING:x:slow\nERROR:x:boom\nloss=2\n';
    log.push(text, text.length, ['DEBUG', 'INFO', 'WARNING', 'ERROR', null]);
    const texts = (level: string | null, search: string) =>
      log.filtered(level, compileSearch(search)).map(l => l.text);
    expect(texts(null, '')).toHaveLength(5);
    expect(texts('WARNING', '')).toEqual(['WARNING:x:slow', 'ERROR:x:boom']);
    expect(texts(null, 'LOSS=')).toEqual(['INFO:x:loss=1', 'loss=2']); // case-insensitive
    expect(texts('INFO', 'loss')).toEqual(['INFO:x:loss=1']); // no level: out once one is asked
  });
});

describe('keeps and compileSearch', () => {
  it('reads an empty search as no search and throws on a bad pattern', () => {
    expect(compileSearch('  ')).toBeNull();
    expect(() => compileSearch('(')).toThrow();
    expect(keeps({ index: 0, text: 'x', level: 'ERROR' }, 'DEBUG', null)).toBe(true);
    expect(keeps({ index: 0, text: 'x', level: 'INFO' }, 'ERROR', null)).toBe(false);
  });
});
