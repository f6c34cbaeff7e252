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
}

export interface IJobList {
  jobs: IJob[];
  cursor: string | null;
}

const ROOT = 'gpu-jobs';

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
  const segments = path.map(encodeURIComponent);
  const url =
    URLExt.join(settings.baseUrl, ROOT, ...segments) + URLExt.objectToQueryString(query);
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
