/**
 * Every URL of the gpu_magic server extension that the sidebar uses, in one place.
 *
 * Requests go through `ServerConnection.makeRequest` with the settings of the running Jupyter
 * server, so its base URL and its auth (token, cookie, XSRF header) apply.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/** What `GET gpu-jobs` reports of a job's progress (null fields are unknown). */
export interface IJobProgress {
  step: number | null;
  total: number | null;
  fraction: number | null;
  rate: number | null;
  remaining_s: number | null;
  epoch: number | null;
  epochs: number | null;
  unit: string | null;
  finish_at: string | null;
  hint: string | null;
}

/** One job as `GET gpu-jobs` lists it. */
export interface IJob {
  id: string;
  name: string | null;
  status: string;
  cluster: string | null;
  created_at: string | null;
  started_at: string | null;
  ended_at: string | null;
  exit_code: number | null;
  error: string | null;
  gpus: number | null;
  progress: IJobProgress | null;
  /** Mean GPU utilisation (%) of the last samples, oldest first, when the server follows it. */
  utilization?: number[] | null;
  reason?: string | null;
  scheduler_id?: string | null;
  remote_dir?: string | null;
  submitted_at?: string | null;
  /** Why it did not complete, classified (null while it runs and when it completed). */
  failure?: IJobFailure | null;
  /** Which run of the job this is: 1, then 2, 3, ... after retries. */
  attempt?: number;
}

/** A classified failure: `cuda_oom`, `host_oom`, `disk_full`, ... with what to do about it. */
export interface IJobFailure {
  kind: string;
  explanation: string;
  fix: string;
  detail?: Record<string, string | number>;
}

/** One state change of a job. */
export interface ITransition {
  status: string;
  at: string;
  reason: string | null;
}

/** `GET gpu-jobs/{id}/status`: the job and its state history. */
export interface IJobStatus extends IJob {
  history: ITransition[];
}

/** `GET gpu-jobs/{id}/metrics`: every metric series as [x, y] points. */
export interface IMetrics {
  series: Record<string, [number, number][]>;
  /** The series drawn on their own axis (learning rates and the like). */
  secondary: string[];
}

/** One nvidia-smi sample of one GPU (`GET gpu-jobs/{id}/gpu`). */
export interface IGpuSample {
  at: number;
  index: number;
  uuid: string;
  utilization: number | null;
  memory_used: number | null;
  memory_total: number | null;
  temperature: number | null;
  power: number | null;
}

/** One file of a job's results manifest. */
export interface IResultFile {
  path: string;
  size: number;
  kind: string;
  fetched: boolean;
}

/** The exception the cell raised on the host. */
export interface IRemoteError {
  type: string;
  message: string;
  traceback: string;
}

/** A cluster as the server describes it (never key material). */
export interface ICluster {
  name: string;
  host: string | null;
  port: number | null;
  user: string | null;
  scheduler: string;
  default: boolean;
}

export interface IJobList {
  jobs: IJob[];
  cursor: string | null;
}

const ROOT = 'gpu-jobs';

/** `{base_url}gpu-jobs/{...path}`, each segment percent-encoded. */
function routeUrl(base: string, path: string[]): string {
  return URLExt.join(base, ROOT, ...path.map(encodeURIComponent));
}

/**
 * A JSON request to `{base_url}gpu-jobs[/{path}][?{query}]`; throws
 * `ServerConnection.ResponseError` for a non-2xx answer, with the server's message when it
 * sent one. (The routes end without a slash: `gpu-jobs/` would be a 404.)
 */
async function requestAPI<T>(
  path: string[] = [],
  init: RequestInit = {},
  query: Record<string, string> = {}
): Promise<T> {
  const settings = ServerConnection.makeSettings();
  const url = routeUrl(settings.baseUrl, path) + URLExt.objectToQueryString(query);
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new ServerConnection.NetworkError(error as TypeError);
  }
  const text = await response.text();
  let data: any = text;
  if (text.length > 0) {
    try {
      data = JSON.parse(text);
    } catch {
      // not JSON: keep the text for the error message
    }
  }
  if (!response.ok) {
    const message = (data && (data.message || data.reason)) || text || response.statusText;
    throw new ServerConnection.ResponseError(response, String(message));
  }
  return data as T;
}

/** The newest `limit` jobs, newest first. */
export function listJobs(limit = 100): Promise<IJobList> {
  return requestAPI<IJobList>([], {}, { limit: String(limit) });
}

/** Ask the server to cancel a job; answers the job as it is now. */
export function cancelJob(id: string): Promise<IJob> {
  return requestAPI<IJob>([id, 'cancel'], { method: 'POST' });
}

/** One job, with its state history. */
export function getJob(id: string): Promise<IJobStatus> {
  return requestAPI<IJobStatus>([id, 'status']);
}

export function getMetrics(id: string): Promise<IMetrics> {
  return requestAPI<IMetrics>([id, 'metrics']);
}

export async function getGpuSamples(id: string): Promise<IGpuSample[]> {
  return (await requestAPI<{ samples: IGpuSample[] }>([id, 'gpu'])).samples;
}

/** The job's results manifest (the server collects a finished job first if needed). */
export async function getResults(id: string): Promise<IResultFile[]> {
  return (await requestAPI<{ files: IResultFile[] }>([id, 'results'])).files;
}

/** The cell's exception on the host, or null (while it runs, or when it raised none). */
export async function getRemoteError(id: string): Promise<IRemoteError | null> {
  return (await requestAPI<{ error: IRemoteError | null }>([id, 'error'])).error;
}

export async function listClusters(): Promise<ICluster[]> {
  return (await requestAPI<{ clusters: ICluster[] }>(['clusters'])).clusters;
}

/** Where the browser downloads one result file (the path's `/` kept, each part encoded). */
export function resultUrl(id: string, path: string): string {
  const settings = ServerConnection.makeSettings();
  return withToken(routeUrl(settings.baseUrl, [id, 'results', ...path.split('/')]), settings);
}

/** The WebSocket of a job's log from byte `offset` on. */
export function logStreamUrl(id: string, offset: number): string {
  const settings = ServerConnection.makeSettings();
  const url = routeUrl(settings.wsUrl, [id, 'logs', 'stream']);
  return withToken(url + URLExt.objectToQueryString({ offset: String(offset) }), settings);
}

/**
 * A link or socket cannot send the Authorization header: with token auth the token goes in
 * the query, as JupyterLab does for kernel sockets (with cookie auth there is none to add).
 */
function withToken(url: string, settings: ServerConnection.ISettings): string {
  if (!settings.token || !settings.appendToken) {
    return url;
  }
  return url + (url.includes('?') ? '&' : '?') + `token=${encodeURIComponent(settings.token)}`;
}
