/**
 * How the extension writes durations, sizes, times and clusters (pure).
 */
import type { ICluster } from './request';

/** "42s", "3m 05s", "1h 02m". */
export function formatElapsed(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) {
    return `${s}s`;
  }
  const pad = (n: number) => String(n).padStart(2, '0');
  if (s < 3600) {
    return `${Math.floor(s / 60)}m ${pad(s % 60)}s`;
  }
  return `${Math.floor(s / 3600)}h ${pad(Math.floor((s % 3600) / 60))}m`;
}

/**
 * "512 B", "4.1 kB", "12.3 MB": decimal SI units, the one byte-size format every user sees
 * (`gpu_magic.formatting.size`).
 */
export function formatBytes(size: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB', 'PB'];
  let value = size;
  let unit = 0;
  while (Math.abs(value) >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return unit === 0 ? `${Math.trunc(value)} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/** An ISO time as the browser's local date and time, or "" for none. */
export function formatTime(iso: string | null | undefined): string {
  const at = Date.parse(iso || '');
  return isNaN(at) ? '' : new Date(at).toLocaleString();
}

/** Seconds from the job's start (or creation) to its end, or to `now`; null when unknown. */
export function elapsedSeconds(
  job: { started_at?: string | null; created_at?: string | null; ended_at?: string | null },
  now: number
): number | null {
  const start = Date.parse(job.started_at || job.created_at || '');
  if (isNaN(start)) {
    return null;
  }
  const end = job.ended_at ? Date.parse(job.ended_at) : now;
  return isNaN(end) ? null : (end - start) / 1000;
}

/** "hpc (alice@login.example.org:2222, slurm)", or "local (process)" for a host-less one. */
export function clusterLine(name: string | null, cluster: ICluster | undefined): string {
  if (!cluster) {
    return name || '';
  }
  const port = cluster.port && cluster.port !== 22 ? `:${cluster.port}` : '';
  const host = cluster.host
    ? `${cluster.user ? cluster.user + '@' : ''}${cluster.host}${port}`
    : '';
  return `${cluster.name} (${[host, cluster.scheduler].filter(Boolean).join(', ')})`;
}
