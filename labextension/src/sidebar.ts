/**
 * The "GPU Jobs" sidebar: the newest jobs of the gpu_magic server extension, polled every
 * 2 s while the panel is visible. Plain DOM in a Lumino widget; rows are kept per job id and
 * updated in place, so a refresh never replaces a button under the pointer.
 */
import { Dialog, showDialog, showErrorMessage } from '@jupyterlab/apputils';
import { LabIcon, refreshIcon } from '@jupyterlab/ui-components';
import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import { cancelJob, IJob, listJobs } from './request';

const REFRESH_MS = 2000;

/** States in which a job can still be cancelled. */
const ACTIVE = new Set(['pending', 'uploading', 'queued', 'running', 'retrying']);

const GPU_SVG = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <path d="M4 6h14a2 2 0 0 1 2 2v1h2v2h-2v2h2v2h-2v1a2 2 0 0 1-2 2H4V6zm2 2v8h12V8H6z"/>
    <rect x="8" y="10" width="3" height="4"/>
    <rect x="13" y="10" width="3" height="4"/>
    <rect x="6" y="19" width="2" height="2"/>
    <rect x="10" y="19" width="2" height="2"/>
    <rect x="14" y="19" width="2" height="2"/>
  </g>
</svg>`;

export const gpuJobsIcon = new LabIcon({ name: 'gpu-magic:jobs', svgstr: GPU_SVG });

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

/** Seconds since the job started (or was created) until it ended, or until now. */
function elapsedOf(job: IJob, now: number): number | null {
  const start = Date.parse(job.started_at || job.created_at || '');
  if (isNaN(start)) {
    return null;
  }
  const end = job.ended_at ? Date.parse(job.ended_at) : now;
  return isNaN(end) ? null : (end - start) / 1000;
}

/** The elements of one job's row. */
interface IRow {
  node: HTMLLIElement;
  name: HTMLSpanElement;
  status: HTMLSpanElement;
  cluster: HTMLSpanElement;
  elapsed: HTMLSpanElement;
  progress: HTMLDivElement;
  bar: HTMLDivElement;
  percent: HTMLSpanElement;
  cancel: HTMLButtonElement;
  job: IJob;
}

function element<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className: string,
  parent?: HTMLElement
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  node.className = className;
  parent?.appendChild(node);
  return node;
}

export class GpuJobsSidebar extends Widget {
  constructor() {
    super();
    this.id = 'gpu-magic-jobs';
    this.addClass('gpu-magic-sidebar');
    this.title.icon = gpuJobsIcon;
    this.title.caption = 'GPU Jobs';
    this.title.label = '';

    const header = element('div', 'gpu-magic-header', this.node);
    element('h2', 'gpu-magic-title', header).textContent = 'GPU Jobs';
    this._refreshButton = element('button', 'jp-Button jp-mod-minimal gpu-magic-refresh', header);
    this._refreshButton.type = 'button';
    this._refreshButton.title = 'Refresh the job list';
    this._refreshButton.setAttribute('aria-label', 'Refresh');
    refreshIcon.element({ container: this._refreshButton, elementPosition: 'center' });
    this._refreshButton.addEventListener('click', () => void this.refresh());

    this._message = element('div', 'gpu-magic-message', this.node);
    this._list = element('ul', 'gpu-magic-job-list', this.node);
  }

  /** Fetch the jobs now and show them (or what went wrong). */
  async refresh(): Promise<void> {
    if (this._loading) {
      return this._loading;
    }
    this._loading = (async () => {
      try {
        const { jobs } = await listJobs(100);
        this._render(jobs);
        this._showMessage(jobs.length ? '' : 'No GPU jobs yet.');
      } catch (error) {
        this._showMessage(`Could not load the jobs: ${(error as Error).message}`, true);
      } finally {
        this._loading = null;
      }
    })();
    return this._loading;
  }

  dispose(): void {
    this._stopPolling();
    super.dispose();
  }

  protected onAfterShow(msg: Message): void {
    this._startPolling();
  }

  protected onAfterAttach(msg: Message): void {
    if (this.isVisible) {
      this._startPolling();
    }
  }

  protected onBeforeHide(msg: Message): void {
    this._stopPolling();
  }

  protected onBeforeDetach(msg: Message): void {
    this._stopPolling();
  }

  private _startPolling(): void {
    if (this._timer !== null) {
      return;
    }
    const tick = async () => {
      if (!document.hidden) {
        await this.refresh();
      }
      if (this._timer !== null) {
        this._timer = window.setTimeout(tick, REFRESH_MS);
      }
    };
    this._timer = window.setTimeout(tick, 0);
  }

  private _stopPolling(): void {
    if (this._timer !== null) {
      window.clearTimeout(this._timer);
      this._timer = null;
    }
  }

  private _showMessage(text: string, error = false): void {
    this._message.textContent = text;
    this._message.hidden = !text;
    this._message.classList.toggle('gpu-magic-error', error);
  }

  /** Rows in the order of `jobs` (newest first), reusing each job's row. */
  private _render(jobs: IJob[]): void {
    const now = Date.now();
    const seen = new Set<string>();
    let previous: HTMLElement | null = null;
    for (const job of jobs) {
      seen.add(job.id);
      let row = this._rows.get(job.id);
      if (!row) {
        row = this._createRow(job);
        this._rows.set(job.id, row);
      }
      this._updateRow(row, job, now);
      const expected: ChildNode | null = previous ? previous.nextSibling : this._list.firstChild;
      if (expected !== row.node) {
        this._list.insertBefore(row.node, expected);
      }
      previous = row.node;
    }
    for (const [id, row] of this._rows) {
      if (!seen.has(id)) {
        row.node.remove();
        this._rows.delete(id);
      }
    }
  }

  private _createRow(job: IJob): IRow {
    const node = element('li', 'gpu-magic-job-row');
    node.dataset.jobId = job.id;
    const top = element('div', 'gpu-magic-job-line', node);
    const name = element('span', 'gpu-magic-job-name', top);
    const status = element('span', 'gpu-magic-job-status', top);
    const meta = element('div', 'gpu-magic-job-line gpu-magic-job-meta', node);
    const cluster = element('span', 'gpu-magic-job-cluster', meta);
    const elapsed = element('span', 'gpu-magic-job-elapsed', meta);
    const cancel = element('button', 'jp-Button jp-mod-minimal gpu-magic-cancel', meta);
    cancel.type = 'button';
    cancel.textContent = 'Cancel';
    const progress = element('div', 'gpu-magic-job-progress', node);
    progress.setAttribute('role', 'progressbar');
    progress.setAttribute('aria-valuemin', '0');
    progress.setAttribute('aria-valuemax', '100');
    const track = element('div', 'gpu-magic-job-progress-track', progress);
    const bar = element('div', 'gpu-magic-job-progress-bar', track);
    const percent = element('span', 'gpu-magic-job-progress-label', progress);
    const row: IRow = { node, name, status, cluster, elapsed, progress, bar, percent, cancel, job };
    cancel.addEventListener('click', () => void this._confirmCancel(row));
    return row;
  }

  private _updateRow(row: IRow, job: IJob, now: number): void {
    row.job = job;
    row.node.dataset.status = job.status;
    const label = job.name || job.id;
    row.name.textContent = label;
    row.name.title = job.name ? `${job.name} (${job.id})` : job.id;
    row.status.textContent = job.status;
    row.status.title = job.error || (job.exit_code !== null ? `exit code ${job.exit_code}` : '');
    row.cluster.textContent = job.cluster || '';
    const elapsed = elapsedOf(job, now);
    row.elapsed.textContent = elapsed === null ? '' : formatElapsed(elapsed);
    row.cancel.hidden = !ACTIVE.has(job.status);
    row.cancel.title = `Cancel ${label}`;

    const fraction = job.progress?.fraction;
    const known = typeof fraction === 'number' && isFinite(fraction);
    row.progress.hidden = !known;
    if (known) {
      const percent = Math.round(Math.min(1, Math.max(0, fraction as number)) * 100);
      row.bar.style.width = `${percent}%`;
      row.percent.textContent = `${percent}%`;
      row.progress.setAttribute('aria-valuenow', String(percent));
      row.progress.title = job.progress?.hint || '';
    }
  }

  private async _confirmCancel(row: IRow): Promise<void> {
    const job = row.job;
    const label = job.name || job.id;
    const result = await showDialog({
      title: 'Cancel GPU job?',
      body: `Cancel ${label} (${job.id}) on ${job.cluster || 'its cluster'}?`,
      buttons: [
        Dialog.cancelButton({ label: 'Keep running' }),
        Dialog.warnButton({ label: 'Cancel job' })
      ]
    });
    if (!result.button.accept) {
      return;
    }
    row.cancel.disabled = true;
    try {
      await cancelJob(job.id);
    } catch (error) {
      await showErrorMessage(`Could not cancel ${label}`, error as Error);
    } finally {
      row.cancel.disabled = false;
    }
    await this.refresh();
  }

  private _list: HTMLUListElement;
  private _message: HTMLDivElement;
  private _refreshButton: HTMLButtonElement;
  private _rows = new Map<string, IRow>();
  private _timer: number | null = null;
  private _loading: Promise<void> | null = null;
}
