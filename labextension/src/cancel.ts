/**
 * Cancelling a job, the one way the sidebar, the job page and the palette command do it: a
 * confirmation naming the job and its cluster, then the request, and its error in a dialog.
 */
import { Dialog, showDialog, showErrorMessage } from '@jupyterlab/apputils';

import { cancelJob, IJob } from './request';

/** Asks, then cancels (`button` disabled meanwhile); answers whether the job was cancelled. */
export async function confirmAndCancel(job: IJob, button?: HTMLButtonElement): Promise<boolean> {
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
    return false;
  }
  if (button) {
    button.disabled = true;
  }
  try {
    await cancelJob(job.id);
    return true;
  } catch (error) {
    await showErrorMessage(`Could not cancel ${label}`, error as Error);
    return false;
  } finally {
    if (button) {
      button.disabled = false;
    }
  }
}
