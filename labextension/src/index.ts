import { ILayoutRestorer, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import {
  ICommandPalette,
  InputDialog,
  MainAreaWidget,
  Notification,
  showErrorMessage,
  WidgetTracker
} from '@jupyterlab/apputils';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { IStatusBar } from '@jupyterlab/statusbar';
import { refreshIcon } from '@jupyterlab/ui-components';

import { confirmAndCancel } from './cancel';
import { JobPage } from './jobpage';
import { IJobFinished, isActive, JobsModel, TERMINAL_STATES } from './model';
import { getJob } from './request';
import { gpuJobsIcon, GpuJobsSidebar } from './sidebar';
import { GpuJobsStatus } from './statusbar';

const PLUGIN_ID = 'gpu-magic-labextension:plugin';

namespace CommandIDs {
  export const refresh = 'gpu-magic:refresh';
  export const openSidebar = 'gpu-magic:open-sidebar';
  export const openJob = 'gpu-magic:open-job';
  export const cancelJob = 'gpu-magic:cancel-job';
}

/** What the settings say (see schema/plugin.json). */
interface IOptions {
  refreshInterval: number;
  notifications: boolean;
  notifyStates: string[];
}

const DEFAULTS: IOptions = {
  refreshInterval: 2000,
  notifications: true,
  notifyStates: [...TERMINAL_STATES]
};

/**
 * The "GPU Jobs" panel in the left sidebar, a page per job in the main area, a status-bar item,
 * notifications when a job ends, and the palette commands Refresh, Show, Open Job and Cancel
 * Job; one poller feeds the list views, each open job page follows its own job.
 */
const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'A left-sidebar panel listing the jobs of the gpu_magic server extension.',
  autoStart: true,
  optional: [ILayoutRestorer, IStatusBar, ISettingRegistry, ICommandPalette],
  activate: (
    app: JupyterFrontEnd,
    restorer: ILayoutRestorer | null,
    statusBar: IStatusBar | null,
    settingRegistry: ISettingRegistry | null,
    palette: ICommandPalette | null
  ) => {
    const options: IOptions = { ...DEFAULTS, notifyStates: [...DEFAULTS.notifyStates] };
    const model = new JobsModel(options.refreshInterval);
    const pages = new WidgetTracker<MainAreaWidget<JobPage>>({ namespace: 'gpu-magic-job' });
    const openJob = (id: string) => app.commands.execute(CommandIDs.openJob, { id });
    const sidebar = new GpuJobsSidebar(model, id => void openJob(id));
    app.shell.add(sidebar, 'left', { rank: 900 });
    restorer?.add(sidebar, sidebar.id);
    if (restorer) {
      void restorer.restore(pages, {
        command: CommandIDs.openJob,
        args: widget => ({ id: widget.content.jobId }),
        name: widget => widget.content.jobId
      });
    }

    const openSidebar = () => app.shell.activateById(sidebar.id);

    app.commands.addCommand(CommandIDs.openJob, {
      label: args => (args.id ? `Open GPU job ${args.id}` : 'GPU Jobs: Open Job…'),
      caption: 'Open the page of a GPU job (by id or name)',
      icon: gpuJobsIcon,
      execute: async args => {
        const id = (args.id as string) || (await askForJob('Open GPU job'));
        if (!id) {
          return;
        }
        const open = pages.find(w => w.content.jobId === id || w.content.job?.name === id);
        if (open) {
          app.shell.activateById(open.id);
          return;
        }
        let jobId = id;
        try {
          jobId = (await getJob(id)).id; // a name opens the page of its job
        } catch (error) {
          await showErrorMessage('No such GPU job', error as Error);
          return;
        }
        const again = pages.find(w => w.content.jobId === jobId);
        if (again) {
          app.shell.activateById(again.id);
          return;
        }
        const content = new JobPage(jobId, options.refreshInterval);
        const widget = new MainAreaWidget({ content });
        widget.id = content.id;
        widget.title.icon = gpuJobsIcon;
        content.title.changed.connect(() => (widget.title.label = content.title.label));
        widget.title.label = content.title.label;
        await pages.add(widget);
        app.shell.add(widget, 'main');
        app.shell.activateById(widget.id);
        return widget;
      }
    });
    app.commands.addCommand(CommandIDs.cancelJob, {
      label: args => (args.id ? `Cancel GPU job ${args.id}` : 'GPU Jobs: Cancel Job…'),
      caption: 'Cancel a running or queued GPU job (by id or name)',
      execute: async args => {
        const id = (args.id as string) || (await askForJob('Cancel GPU job'));
        if (!id) {
          return;
        }
        try {
          const job = await getJob(id);
          if (!isActive(job.status)) {
            Notification.info(`GPU job ${job.name || job.id} already ${job.status}`);
            return;
          }
          if (await confirmAndCancel(job)) {
            await model.refresh();
          }
        } catch (error) {
          await showErrorMessage(`Could not cancel ${id}`, error as Error);
        }
      }
    });

    app.commands.addCommand(CommandIDs.refresh, {
      label: 'GPU Jobs: Refresh',
      caption: 'Fetch the GPU job list now',
      icon: refreshIcon,
      execute: () => model.refresh()
    });
    app.commands.addCommand(CommandIDs.openSidebar, {
      label: 'GPU Jobs: Show',
      caption: 'Show the GPU Jobs panel',
      icon: gpuJobsIcon,
      execute: () => openSidebar()
    });
    if (palette) {
      palette.addItem({ command: CommandIDs.refresh, category: 'GPU Jobs' });
      palette.addItem({ command: CommandIDs.openSidebar, category: 'GPU Jobs' });
      palette.addItem({ command: CommandIDs.openJob, category: 'GPU Jobs' });
      palette.addItem({ command: CommandIDs.cancelJob, category: 'GPU Jobs' });
    }

    if (statusBar) {
      const item = new GpuJobsStatus(model, openSidebar);
      statusBar.registerStatusItem(`${PLUGIN_ID}:status`, {
        item,
        align: 'left',
        rank: 100,
        isActive: () => true
      });
    }

    model.finished.connect((_: JobsModel, { job }: IJobFinished) => {
      if (!options.notifications || !options.notifyStates.includes(job.status)) {
        return;
      }
      notify(job.id, job.name || job.id, job.status, () => {
        openSidebar();
        sidebar.highlight(job.id);
        void openJob(job.id);
      });
    });

    if (settingRegistry) {
      const apply = (settings: ISettingRegistry.ISettings) => {
        const value = settings.composite as Partial<IOptions>;
        options.refreshInterval = Number(value.refreshInterval ?? DEFAULTS.refreshInterval);
        options.notifications = value.notifications ?? DEFAULTS.notifications;
        options.notifyStates = Array.isArray(value.notifyStates)
          ? value.notifyStates
          : [...DEFAULTS.notifyStates];
        model.refreshInterval = options.refreshInterval;
        pages.forEach(w => (w.content.refreshInterval = options.refreshInterval));
      };
      settingRegistry
        .load(PLUGIN_ID)
        .then(settings => {
          apply(settings);
          settings.changed.connect(apply);
        })
        .catch(reason => {
          console.warn(`${PLUGIN_ID}: could not load the settings`, reason);
        });
    }
  }
};

/** A job id or name, asked in a dialog (null when the user cancels). */
async function askForJob(title: string): Promise<string | null> {
  const result = await InputDialog.getText({ title, label: 'Job id or name' });
  const value = result.button.accept ? (result.value || '').trim() : '';
  return value || null;
}

/** A Lab toast "GPU job NAME STATUS" with "Open", and a browser one while the tab is hidden. */
function notify(id: string, name: string, status: string, open: () => void): void {
  const message = `GPU job ${name} ${status}`;
  const toast = {
    autoClose: 10000 as number | false,
    actions: [{ label: 'Open', caption: 'Open the job page', callback: open }]
  };
  if (status === 'completed') {
    Notification.success(message, toast);
  } else if (status === 'cancelled') {
    Notification.warning(message, toast);
  } else {
    Notification.error(message, { ...toast, autoClose: false });
  }

  const Browser = window.Notification;
  if (document.hidden && Browser && Browser.permission === 'granted') {
    try {
      const note = new Browser(message, { tag: `gpu-magic-${id}`, body: 'gpu_magic' });
      note.onclick = () => {
        window.focus();
        open();
        note.close();
      };
    } catch (error) {
      console.warn('gpu-magic: no browser notification', error);
    }
  }
}

export default plugin;
