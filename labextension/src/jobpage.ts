/**
 * A job's page in the main area: header (status, host, GPUs, timings, exit reason), the metric
 * and GPU charts, the live log (over the WebSocket, with the notebook panel's level filter and
 * search, follow or pause), the remote traceback of a failed job and its results with a
 * download link per file. It asks the server only while it is shown and stops once the job
 * ended and everything final was fetched.
 */
import { confirmAndCancel } from './cancel';
import { gpuSeries, LineChart, metricSeries } from './charts';
import { element, option, ShownWidget } from './dom';
import { clusterLine, elapsedSeconds, formatBytes, formatElapsed, formatTime } from './format';
import { compileSearch, ILogLine, keeps, LEVELS } from './loglines';
import { LogStream, StreamState } from './logstream';
import { isActive } from './model';
import {
  getGpuSamples,
  getJob,
  getMetrics,
  getRemoteError,
  getResults,
  ICluster,
  IJob,
  IJobStatus,
  listClusters,
  resultUrl
} from './request';

export class JobPage extends ShownWidget {
  constructor(
    readonly jobId: string,
    private _refreshInterval = 2000
  ) {
    super();
    this.id = `gpu-magic-job-${jobId}`;
    this.addClass('gpu-magic-job-page');
    this.title.label = `GPU job ${jobId}`;
    this.title.closable = true;
    this._buildHeader();
    this._buildCharts();
    this._buildLog();
    this._traceback = element('section', 'gpu-magic-page-section gpu-magic-traceback');
    element('h3', 'gpu-magic-section-title', this._traceback, 'Remote traceback');
    this._tracebackText = element('pre', 'gpu-magic-traceback-text', this._traceback);
    this._traceback.hidden = true;
    this.node.appendChild(this._traceback);
    this._buildResults();
    this._stream = new LogStream(jobId);
    this._stream.received.connect(this._onLines, this);
    this._stream.status.connect(() => void this.refresh(), this);
    this._stream.stateChanged.connect(this._onStreamState, this);
    void listClusters()
      .then(clusters => {
        this._clusters = clusters;
        this._showHeader();
      })
      .catch(() => undefined); // the cluster's name is shown without its host
  }

  /** The job as last fetched (null before the first answer). */
  get job(): IJobStatus | null {
    return this._job;
  }

  set refreshInterval(ms: number) {
    this._refreshInterval = Math.max(500, ms);
  }

  /** Fetch the job, its charts and, once it ended, its traceback and results. */
  async refresh(): Promise<void> {
    try {
      const [job, metrics, samples] = await Promise.all([
        getJob(this.jobId),
        getMetrics(this.jobId),
        getGpuSamples(this.jobId)
      ]);
      this._job = job;
      this._error.textContent = '';
      this._showHeader();
      const [primary, secondary] = metricSeries(metrics);
      this._metricChart.update(primary, 'No metrics parsed from the log yet.');
      this._secondaryChart.node.hidden = secondary.length === 0;
      this._secondaryChart.update(secondary, '');
      this._gpuChart.update(gpuSeries(samples), 'No GPU samples yet.', [0, 100]);
      if (!isActive(job.status) && !this._finalShown) {
        this._finalShown = true;
        await this._showFinal();
      }
    } catch (error) {
      this._error.textContent = `Could not load the job: ${(error as Error).message}`;
    }
  }

  dispose(): void {
    if (!this.isDisposed) {
      this._stream.dispose();
    }
    super.dispose();
  }

  /** Polls the job's routes while the page is shown (the log streams regardless). */
  protected onShown(shown: boolean): void {
    if (shown) {
      this._startPolling();
    } else {
      this._stopPolling();
    }
  }

  // -- building ---------------------------------------------------------------------------
  private _buildHeader(): void {
    const header = element('header', 'gpu-magic-page-header', this.node);
    const top = element('div', 'gpu-magic-page-title-line', header);
    this._name = element('h2', 'gpu-magic-page-title', top, this.jobId);
    this._status = element('span', 'gpu-magic-job-status gpu-magic-page-status', top);
    this._cancel = element('button', 'jp-Button jp-mod-styled jp-mod-warn gpu-magic-cancel', top);
    this._cancel.type = 'button';
    this._cancel.textContent = 'Cancel';
    this._cancel.hidden = true;
    this._cancel.addEventListener('click', () => void this._confirmCancel());
    this._facts = element('dl', 'gpu-magic-page-facts', header);
    this._reason = element('div', 'gpu-magic-page-reason', header);
    this._error = element('div', 'gpu-magic-error gpu-magic-page-error', header);
    this._failure = element('div', 'gpu-magic-failure', header);
    this._failure.hidden = true;
  }

  private _buildCharts(): void {
    const charts = element('section', 'gpu-magic-page-section gpu-magic-page-charts', this.node);
    this._metricChart = new LineChart('Metrics', 'gpu-magic-metric-chart');
    this._secondaryChart = new LineChart('Learning rate', 'gpu-magic-secondary-chart');
    this._secondaryChart.node.hidden = true;
    this._gpuChart = new LineChart('GPU utilisation (%)', 'gpu-magic-gpu-chart');
    for (const chart of [this._metricChart, this._secondaryChart, this._gpuChart]) {
      charts.appendChild(chart.node);
    }
  }

  private _buildLog(): void {
    const section = element('section', 'gpu-magic-page-section gpu-magic-page-log', this.node);
    const bar = element('div', 'gpu-magic-log-toolbar', section);
    element('h3', 'gpu-magic-section-title', bar, 'Log');
    this._level = element('select', 'jp-mod-styled gpu-magic-log-level', bar);
    this._level.setAttribute('aria-label', 'Lowest log level shown');
    option(this._level, '', 'All lines');
    for (const level of LEVELS) {
      option(this._level, level, `${level} and above`);
    }
    this._level.addEventListener('change', () => this._renderLog());
    this._search = element('input', 'jp-mod-styled gpu-magic-log-search', bar);
    this._search.type = 'search';
    this._search.placeholder = 'Search (regular expression)';
    this._search.setAttribute('aria-label', 'Search the log');
    this._search.addEventListener('input', () => this._renderLog());
    const follow = element('label', 'gpu-magic-log-follow', bar);
    this._follow = element('input', '', follow);
    this._follow.type = 'checkbox';
    this._follow.checked = true;
    follow.appendChild(document.createTextNode(' Follow'));
    this._follow.addEventListener('change', () => this._scrollIfFollowing());
    this._streamState = element('span', 'gpu-magic-log-state', bar, 'connecting…');
    this._count = element('span', 'gpu-magic-log-count', bar);
    this._log = element('pre', 'gpu-magic-log', section);
    this._log.tabIndex = 0;
    this._log.setAttribute('aria-label', 'Job log');
    this._log.addEventListener('scroll', () => {
      const atEnd = this._log.scrollHeight - this._log.scrollTop - this._log.clientHeight < 4;
      if (!this._scrolling && this._follow.checked !== atEnd) {
        this._follow.checked = atEnd; // scrolling up pauses; back at the end follows again
      }
    });
    this._partial = element('div', 'gpu-magic-log-line gpu-magic-log-partial', this._log);
    this._partial.hidden = true;
  }

  private _buildResults(): void {
    this._results = element('section', 'gpu-magic-page-section gpu-magic-page-results');
    element('h3', 'gpu-magic-section-title', this._results, 'Results');
    this._resultsBody = element('div', 'gpu-magic-results-body', this._results);
    this._results.hidden = true;
    this.node.appendChild(this._results);
  }

  // -- showing ----------------------------------------------------------------------------
  private _showHeader(): void {
    const job = this._job;
    if (!job) {
      return;
    }
    this._name.textContent = job.name || job.id;
    this._name.title = job.id;
    this.title.label = `GPU job ${job.name || job.id}`;
    this._status.textContent = job.status;
    this._status.dataset.status = job.status;
    this.node.dataset.status = job.status;
    this._cancel.hidden = !isActive(job.status);
    const cluster = this._clusters.find(c => c.name === job.cluster);
    const elapsed = elapsedSeconds(job, Date.now());
    const facts: [string, string][] = [
      ['Job', job.id],
      ['Cluster', clusterLine(job.cluster, cluster)],
      ['Scheduler id', job.scheduler_id || ''],
      ['GPUs', job.gpus ? String(job.gpus) : 'none'],
      ['Created', formatTime(job.created_at)],
      ['Started', formatTime(job.started_at)],
      ['Ended', formatTime(job.ended_at)],
      [job.ended_at ? 'Ran for' : 'Running for', elapsed === null ? '' : formatElapsed(elapsed)],
      ['Exit code', job.exit_code === null ? '' : String(job.exit_code)],
      ['Attempt', job.attempt && job.attempt > 1 ? String(job.attempt) : ''],
      ['Folder', job.remote_dir || '']
    ];
    this._facts.replaceChildren();
    for (const [term, value] of facts) {
      if (value) {
        element('dt', '', this._facts, term);
        element(
          'dd',
          `gpu-magic-fact-${term.toLowerCase().replace(/\s+/g, '-')}`,
          this._facts,
          value
        );
      }
    }
    const why = [job.reason, job.error].filter(Boolean).join(' · ');
    this._reason.textContent = why;
    this._reason.hidden = !why;
    this._showFailure(job);
  }

  /** The classified failure: its kind, what happened and the suggested fix. */
  private _showFailure(job: IJob): void {
    const failure = job.failure;
    this._failure.hidden = !failure;
    this._failure.replaceChildren();
    if (failure) {
      element('span', 'gpu-magic-failure-kind', this._failure, failure.kind);
      element('span', 'gpu-magic-failure-explanation', this._failure, failure.explanation);
      element('div', 'gpu-magic-failure-fix', this._failure, `Fix: ${failure.fix}`);
    }
  }

  private async _showFinal(): Promise<void> {
    const [error, files] = await Promise.all([
      getRemoteError(this.jobId).catch(() => null),
      getResults(this.jobId).catch((reason: Error) => reason)
    ]);
    this._traceback.hidden = error === null;
    if (error !== null) {
      this._tracebackText.textContent = error.traceback.replace(/\s+$/, '');
      this._tracebackText.title = `${error.type}: ${error.message}`;
    }
    this._results.hidden = false;
    this._resultsBody.replaceChildren();
    if (files instanceof Error) {
      element('div', 'gpu-magic-error', this._resultsBody, `No results: ${files.message}`);
      return;
    }
    if (files.length === 0) {
      element('div', 'gpu-magic-message', this._resultsBody, 'The job left no files.');
      return;
    }
    const table = element('table', 'gpu-magic-results-table', this._resultsBody);
    const head = element('tr', '', element('thead', '', table));
    for (const name of ['File', 'Kind', 'Size', '']) {
      element('th', '', head, name);
    }
    const body = element('tbody', '', table);
    for (const file of files) {
      const row = element('tr', 'gpu-magic-result-row', body);
      row.dataset.path = file.path;
      element('td', 'gpu-magic-result-path', row, file.path);
      element('td', '', row, file.kind);
      element('td', 'gpu-magic-result-size', row, formatBytes(file.size));
      const link = element('a', 'gpu-magic-result-download', element('td', '', row));
      link.href = resultUrl(this.jobId, file.path);
      link.download = file.path.split('/').pop() || file.path;
      link.textContent = file.fetched ? 'Download' : 'Fetch and download';
    }
  }

  // -- the log ----------------------------------------------------------------------------
  private _filter(): [string | null, RegExp | null] {
    let search: RegExp | null = null;
    try {
      search = compileSearch(this._search.value);
      this._search.classList.remove('gpu-magic-invalid');
      this._search.title = '';
    } catch (error) {
      this._search.classList.add('gpu-magic-invalid');
      this._search.title = (error as Error).message;
    }
    return [this._level.value || null, search];
  }

  private _lineNode(line: ILogLine): HTMLDivElement {
    const node = element('div', 'gpu-magic-log-line', undefined, line.text);
    if (line.level) {
      node.dataset.level = line.level;
    }
    return node;
  }

  /** Everything again, for a changed filter. */
  private _renderLog(): void {
    const [level, search] = this._filter();
    const shown = this._stream.lines.filtered(level, search).map(l => this._lineNode(l));
    this._log.replaceChildren(...shown, this._partial);
    this._shown = shown.length;
    this._showPartial(level, search);
    this._showCount();
    this._scrollIfFollowing();
  }

  /** The new lines of one message, appended; the oldest go beyond what the log keeps. */
  private _onLines(): void {
    const lines = this._stream.lines;
    const [level, search] = this._filter();
    const fresh = lines.lines.slice(Math.max(0, lines.lines.length - (lines.count - this._seen)));
    this._seen = lines.count;
    for (const line of fresh) {
      if (keeps(line, level, search)) {
        this._log.insertBefore(this._lineNode(line), this._partial);
        this._shown++;
      }
    }
    while (this._shown > lines.maxLines && this._log.firstChild !== this._partial) {
      this._log.firstChild?.remove();
      this._shown--;
    }
    this._showPartial(level, search);
    this._showCount();
    this._scrollIfFollowing();
  }

  private _showPartial(level: string | null, search: RegExp | null): void {
    const text = this._stream.lines.partial;
    const line = { index: -1, text, level: null };
    this._partial.textContent = text;
    this._partial.hidden = !text || !keeps(line, level, search);
  }

  private _showCount(): void {
    const total = this._stream.lines.count;
    this._count.textContent = `${this._shown} of ${total} lines`;
  }

  private _scrollIfFollowing(): void {
    if (this._follow.checked) {
      this._scrolling = true;
      this._log.scrollTop = this._log.scrollHeight;
      requestAnimationFrame(() => (this._scrolling = false));
    }
  }

  private _onStreamState(_: LogStream, state: StreamState): void {
    const words: Record<StreamState, string> = {
      connecting: 'connecting…',
      open: 'live',
      reconnecting: 'connection lost; reconnecting…',
      ended: 'complete'
    };
    this._streamState.textContent = words[state];
    this._streamState.dataset.state = state;
    if (state === 'ended') {
      void this.refresh();
    }
  }

  // -- polling and actions ----------------------------------------------------------------
  private _startPolling(): void {
    if (this._timer !== null) {
      return;
    }
    const tick = async () => {
      await this.refresh();
      if (this._timer === null || this.isDisposed) {
        return; // hidden or closed meanwhile
      }
      const going = !this._job || isActive(this._job.status) || !this._finalShown;
      this._timer = going ? window.setTimeout(tick, this._refreshInterval) : null;
    };
    this._timer = window.setTimeout(tick, 0);
  }

  private _stopPolling(): void {
    if (this._timer !== null) {
      window.clearTimeout(this._timer);
      this._timer = null;
    }
  }

  private async _confirmCancel(): Promise<void> {
    const job = this._job ?? { id: this.jobId, name: null, cluster: null };
    if (await confirmAndCancel(job as IJobStatus, this._cancel)) {
      await this.refresh();
    }
  }

  private _job: IJobStatus | null = null;
  private _clusters: ICluster[] = [];
  private _finalShown = false;
  private _timer: number | null = null;
  private _stream: LogStream;
  private _seen = 0;
  private _shown = 0;
  private _scrolling = false;
  private _name!: HTMLHeadingElement;
  private _status!: HTMLSpanElement;
  private _cancel!: HTMLButtonElement;
  private _facts!: HTMLDListElement;
  private _reason!: HTMLDivElement;
  private _error!: HTMLDivElement;
  private _failure!: HTMLDivElement;
  private _metricChart!: LineChart;
  private _secondaryChart!: LineChart;
  private _gpuChart!: LineChart;
  private _level!: HTMLSelectElement;
  private _search!: HTMLInputElement;
  private _follow!: HTMLInputElement;
  private _streamState!: HTMLSpanElement;
  private _count!: HTMLSpanElement;
  private _log!: HTMLPreElement;
  private _partial!: HTMLDivElement;
  private _traceback: HTMLElement;
  private _tracebackText: HTMLPreElement;
  private _results!: HTMLElement;
  private _resultsBody!: HTMLDivElement;
}
