/**
 * The "GPU Jobs" sidebar: the newest jobs of the gpu_magic server extension, from the shared
 * `JobsModel` poller (which polls while the panel is visible), filtered client-side by status,
 * cluster and name. Plain DOM in a Lumino widget; rows are kept per job id and updated in
 * place, so a refresh never replaces a button under the pointer.
 */
import { LabIcon, refreshIcon } from '@jupyterlab/ui-components';

import { confirmAndCancel } from './cancel';
import { sparkline } from './charts';
import { element, option, ShownWidget } from './dom';
import { elapsedSeconds, formatElapsed } from './format';
import { ALL_STATES, isActive, JobsModel } from './model';
import { IJob } from './request';

/** How long a row stays highlighted after `highlight`. */
const HIGHLIGHT_MS = 10000;

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
  track: HTMLDivElement;
  eta: HTMLSpanElement;
  spark: HTMLSpanElement;
  cancel: HTMLButtonElement;
  job: IJob;
}

export class GpuJobsSidebar extends ShownWidget {
  /** `open` shows a job's page (clicking a row, or Enter on it). */
  constructor(model: JobsModel, open: (id: string) => void = () => undefined) {
    super();
    this._model = model;
    this._open = open;
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

    const filters = element('div', 'gpu-magic-filters', this.node);
    this._search = element('input', 'jp-mod-styled gpu-magic-search', filters);
    this._search.type = 'search';
    this._search.placeholder = 'Search by name';
    this._search.setAttribute('aria-label', 'Search jobs by name');
    this._search.addEventListener('input', () => this._applyFilters());
    const selects = element('div', 'gpu-magic-filter-selects', filters);
    this._statusFilter = element('select', 'jp-mod-styled gpu-magic-filter-status', selects);
    this._statusFilter.setAttribute('aria-label', 'Filter jobs by status');
    option(this._statusFilter, 'all', 'All states');
    option(this._statusFilter, 'active', 'Active');
    for (const state of ALL_STATES) {
      option(this._statusFilter, state, state);
    }
    this._statusFilter.addEventListener('change', () => this._applyFilters());
    this._clusterFilter = element('select', 'jp-mod-styled gpu-magic-filter-cluster', selects);
    this._clusterFilter.setAttribute('aria-label', 'Filter jobs by cluster');
    option(this._clusterFilter, 'all', 'All clusters');
    this._clusterFilter.addEventListener('change', () => this._applyFilters());

    this._message = element('div', 'gpu-magic-message', this.node);
    this._list = element('ul', 'gpu-magic-job-list', this.node);

    model.changed.connect(this._onChanged, this);
    model.failed.connect(this._onFailed, this);
    if (model.loaded) {
      this._onChanged(model, model.jobs);
    }
  }

  /** Fetch the jobs now and show them (or what went wrong). */
  refresh(): Promise<void> {
    return this._model.refresh();
  }

  /**
   * Mark the row of job `id` (`.gpu-magic-job-row--highlight`) and scroll it into view;
   * filters that hide it are cleared. The sidebar itself is opened by the caller.
   */
  highlight(id: string): void {
    this._highlightId = id;
    if (this._highlightTimer !== null) {
      window.clearTimeout(this._highlightTimer);
    }
    this._highlightTimer = window.setTimeout(() => {
      this._highlightId = null;
      this._highlightTimer = null;
      for (const row of this._rows.values()) {
        row.node.classList.remove('gpu-magic-job-row--highlight');
      }
    }, HIGHLIGHT_MS);
    const row = this._rows.get(id);
    if (row && row.node.hidden) {
      this._search.value = '';
      this._statusFilter.value = 'all';
      this._clusterFilter.value = 'all';
      this._applyFilters();
    }
    for (const [key, other] of this._rows) {
      other.node.classList.toggle('gpu-magic-job-row--highlight', key === id);
    }
    row?.node.scrollIntoView({ block: 'nearest' });
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    if (this._highlightTimer !== null) {
      window.clearTimeout(this._highlightTimer);
    }
    this._model.changed.disconnect(this._onChanged, this);
    this._model.failed.disconnect(this._onFailed, this);
    super.dispose();
  }

  /** The shared poller polls while the panel is shown. */
  protected onShown(shown: boolean): void {
    this._model.setActive(this.id, shown);
  }

  private _onChanged(_: JobsModel, jobs: IJob[]): void {
    this._jobs = jobs;
    this._updateClusters(jobs);
    this._render(jobs);
    this._applyFilters();
  }

  private _onFailed(_: JobsModel, error: Error): void {
    this._showMessage(`Could not load the jobs: ${error.message}`, true);
  }

  /** The cluster filter offers the clusters of the jobs listed (and keeps its choice). */
  private _updateClusters(jobs: IJob[]): void {
    const clusters = new Set<string>();
    for (const job of jobs) {
      if (job.cluster) {
        clusters.add(job.cluster);
      }
    }
    const selected = this._clusterFilter.value;
    if (selected !== 'all') {
      clusters.add(selected);
    }
    const wanted = ['all', ...[...clusters].sort()];
    const have = Array.from(this._clusterFilter.options).map(o => o.value);
    if (wanted.join('\n') === have.join('\n')) {
      return;
    }
    while (this._clusterFilter.options.length > 1) {
      this._clusterFilter.remove(1);
    }
    for (const name of wanted.slice(1)) {
      option(this._clusterFilter, name, name);
    }
    this._clusterFilter.value = selected;
  }

  private _matches(job: IJob): boolean {
    const status = this._statusFilter.value;
    if (status === 'active' ? !isActive(job.status) : status !== 'all' && job.status !== status) {
      return false;
    }
    const cluster = this._clusterFilter.value;
    if (cluster !== 'all' && job.cluster !== cluster) {
      return false;
    }
    const needle = this._search.value.trim().toLowerCase();
    return !needle || (job.name || job.id).toLowerCase().includes(needle);
  }

  /** Hide the rows the filters leave out; say so when none is left. */
  private _applyFilters(): void {
    let shown = 0;
    for (const row of this._rows.values()) {
      const match = this._matches(row.job);
      row.node.hidden = !match;
      shown += match ? 1 : 0;
    }
    if (!this._model.loaded) {
      return;
    }
    if (this._jobs.length === 0) {
      this._showMessage('No GPU jobs yet.');
    } else if (shown === 0) {
      this._showMessage('No job matches the filters.');
    } else {
      this._showMessage('');
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
    const spark = element('span', 'gpu-magic-job-spark', meta);
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
    const eta = element('span', 'gpu-magic-job-eta', progress);
    const row: IRow = {
      node,
      name,
      status,
      cluster,
      elapsed,
      progress,
      bar,
      percent,
      track,
      eta,
      spark,
      cancel,
      job
    };
    cancel.addEventListener('click', event => {
      event.stopPropagation(); // cancelling is not opening
      void this._confirmCancel(row);
    });
    node.tabIndex = 0;
    node.title = 'Open the job page';
    node.addEventListener('click', () => this._open(row.job.id));
    node.addEventListener('keydown', event => {
      if (event.key === 'Enter' && event.target === node) {
        this._open(row.job.id);
      }
    });
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
    const elapsed = elapsedSeconds(job, now);
    row.elapsed.textContent = elapsed === null ? '' : formatElapsed(elapsed);
    row.cancel.hidden = !isActive(job.status);
    this._updateSpark(row, job);
    row.node.classList.toggle(
      'gpu-magic-job-row--highlight',
      this._highlightId !== null && this._highlightId === job.id
    );
    row.cancel.title = `Cancel ${label}`;

    const fraction = job.progress?.fraction;
    const known = typeof fraction === 'number' && isFinite(fraction);
    const remaining = job.progress?.remaining_s;
    const etaKnown = isActive(job.status) && typeof remaining === 'number' && isFinite(remaining);
    row.progress.hidden = !known && !etaKnown;
    row.track.hidden = !known;
    row.percent.hidden = !known;
    row.eta.hidden = !etaKnown;
    row.eta.textContent = etaKnown ? `ETA ${formatElapsed(remaining as number)}` : '';
    row.eta.title = job.progress?.finish_at ? `finishes at ${job.progress.finish_at}` : '';
    if (known) {
      const percent = Math.round(Math.min(1, Math.max(0, fraction as number)) * 100);
      row.bar.style.width = `${percent}%`;
      row.percent.textContent = `${percent}%`;
      row.progress.setAttribute('aria-valuenow', String(percent));
      row.progress.title = job.progress?.hint || '';
    }
  }

  /** The GPU sparkline of a running job the server samples; nothing for the others. */
  private _updateSpark(row: IRow, job: IJob): void {
    const values = job.status === 'running' ? job.utilization || [] : [];
    row.spark.hidden = values.length === 0;
    row.spark.replaceChildren(...(values.length ? [sparkline(values)] : []));
    const last = values[values.length - 1];
    row.spark.title = last === undefined ? '' : `GPU utilisation ${Math.round(last)}% (mean)`;
  }

  private async _confirmCancel(row: IRow): Promise<void> {
    if (await confirmAndCancel(row.job, row.cancel)) {
      await this.refresh();
    }
  }

  private _model: JobsModel;
  private _open: (id: string) => void;
  private _jobs: IJob[] = [];
  private _search: HTMLInputElement;
  private _statusFilter: HTMLSelectElement;
  private _clusterFilter: HTMLSelectElement;
  private _highlightId: string | null = null;
  private _highlightTimer: number | null = null;
  private _list: HTMLUListElement;
  private _message: HTMLDivElement;
  private _refreshButton: HTMLButtonElement;
  private _rows = new Map<string, IRow>();
}
