/**
 * The formats of durations, sizes, times and clusters (the sidebar, the job page).
 */
import { clusterLine, elapsedSeconds, formatBytes, formatElapsed } from '../format';

describe('formatElapsed', () => {
  it('shows seconds under a minute, rounded down', () => {
    expect(formatElapsed(0)).toBe('0s');
    expect(formatElapsed(42)).toBe('42s');
    expect(formatElapsed(42.9)).toBe('42s');
    expect(formatElapsed(59.99)).toBe('59s');
  });

  it('shows minutes and two-digit seconds under an hour', () => {
    expect(formatElapsed(60)).toBe('1m 00s');
    expect(formatElapsed(185)).toBe('3m 05s');
    expect(formatElapsed(600)).toBe('10m 00s');
    expect(formatElapsed(3599)).toBe('59m 59s');
  });

  it('shows hours and two-digit minutes from an hour on', () => {
    expect(formatElapsed(3600)).toBe('1h 00m');
    expect(formatElapsed(3720)).toBe('1h 02m');
    expect(formatElapsed(3600 + 59 * 60 + 59)).toBe('1h 59m');
    expect(formatElapsed(25 * 3600)).toBe('25h 00m');
  });

  it('shows a negative duration (clock skew) as 0s', () => {
    expect(formatElapsed(-5)).toBe('0s');
  });
});

describe('formatBytes', () => {
  it('writes decimal SI units, as gpu_magic.formatting.size', () => {
    expect(formatBytes(0)).toBe('0 B');
    expect(formatBytes(999)).toBe('999 B');
    expect(formatBytes(1000)).toBe('1.0 kB');
    expect(formatBytes(4100)).toBe('4.1 kB');
    expect(formatBytes(12_300_000)).toBe('12.3 MB');
    expect(formatBytes(2e15)).toBe('2.0 PB');
  });
});

describe('elapsedSeconds', () => {
  it('counts from the start, else the creation, to the end or to now', () => {
    const now = Date.parse('2026-01-01T00:10:00Z');
    const created = '2026-01-01T00:00:00Z';
    expect(elapsedSeconds({ created_at: created }, now)).toBe(600);
    expect(elapsedSeconds({ created_at: created, started_at: '2026-01-01T00:01:00Z' }, now)).toBe(
      540
    );
    expect(elapsedSeconds({ started_at: created, ended_at: '2026-01-01T00:00:42Z' }, now)).toBe(42);
    expect(elapsedSeconds({}, now)).toBeNull();
  });
});

describe('clusterLine', () => {
  const hpc = {
    name: 'hpc',
    host: 'login.example.org',
    port: 2222,
    user: 'alice',
    scheduler: 'slurm',
    default: false
  };

  it('names the host, a port other than 22 and the scheduler', () => {
    expect(clusterLine('hpc', hpc)).toBe('hpc (alice@login.example.org:2222, slurm)');
    expect(clusterLine('hpc', { ...hpc, port: 22, user: null })).toBe(
      'hpc (login.example.org, slurm)'
    );
  });

  it('leaves out a host the cluster has not (local) and keeps an unknown cluster name', () => {
    const local = {
      ...hpc,
      name: 'local',
      host: null,
      port: null,
      user: null,
      scheduler: 'process'
    };
    expect(clusterLine('local', local)).toBe('local (process)');
    expect(clusterLine('gone', undefined)).toBe('gone');
  });
});
