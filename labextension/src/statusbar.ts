/**
 * The status-bar item "GPU: 2 running · 1 queued" (only the non-zero parts; "GPU: idle" when
 * no job is active). A click opens the "GPU Jobs" sidebar. It reads the shared `JobsModel`.
 */
import { Widget } from '@lumino/widgets';

import { JobsModel } from './model';
import { IJob } from './request';

/** The parts of the summary, in order: a label and the states it counts. */
const PARTS: [string, string[]][] = [
  ['running', ['running']],
  ['queued', ['queued']],
  ['pending', ['pending', 'uploading']]
];

/** "GPU: 2 running · 1 queued", or "GPU: idle". */
export function summarize(jobs: IJob[]): string {
  const parts: string[] = [];
  for (const [label, states] of PARTS) {
    const count = jobs.filter(job => states.includes(job.status)).length;
    if (count > 0) {
      parts.push(`${count} ${label}`);
    }
  }
  return parts.length ? `GPU: ${parts.join(' · ')}` : 'GPU: idle';
}

export class GpuJobsStatus extends Widget {
  constructor(model: JobsModel, onClick: () => void) {
    super();
    this._model = model;
    this.addClass('gpu-magic-statusbar');
    this.addClass('jp-StatusBar-TextItem');
    this.node.title = 'GPU jobs: click to show the GPU Jobs panel';
    this.node.setAttribute('role', 'button');
    this.node.tabIndex = 0;
    this.node.textContent = 'GPU: …';
    this.node.addEventListener('click', onClick);
    this.node.addEventListener('keydown', event => {
      if (event.key === 'Enter' || event.key === ' ') {
        event.preventDefault();
        onClick();
      }
    });
    model.changed.connect(this._onChanged, this);
    model.setActive('statusbar', true);
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this._model.setActive('statusbar', false);
    this._model.changed.disconnect(this._onChanged, this);
    super.dispose();
  }

  private _onChanged(_: JobsModel, jobs: IJob[]): void {
    const text = summarize(jobs);
    this.node.textContent = text;
    this.node.dataset.idle = String(text === 'GPU: idle');
  }

  private _model: JobsModel;
}
