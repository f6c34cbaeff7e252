import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette, Notification } from '@jupyterlab/apputils';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { IStatusBar } from '@jupyterlab/statusbar';
import { refreshIcon } from '@jupyterlab/ui-components';

import { IJobFinished, JobsModel, TERMINAL_STATES } from './model';
import { gpuJobsIcon, GpuJobsSidebar } from './sidebar';
import { GpuJobsStatus } from './statusbar';

const PLUGIN_ID = 'gpu-magic-labextension:plugin';

namespace CommandIDs {
  export const refresh = 'gpu-magic:refresh';
  export const openSidebar = 'gpu-magic:open-sidebar';
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
 * The "GPU Jobs" panel in the left sidebar, a status-bar item, notifications when a job ends,
 * and the commands "GPU Jobs: Refresh" and "GPU Jobs: Show"; one poller feeds them all.
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
    const sidebar = new GpuJobsSidebar(model);
    app.shell.add(sidebar, 'left', { rank: 900 });
    restorer?.add(sidebar, sidebar.id);

    const openSidebar = () => app.shell.activateById(sidebar.id);

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

/** A Lab toast "GPU job NAME STATUS" with "Open", and a browser one while the tab is hidden. */
function notify(id: string, name: string, status: string, open: () => void): void {
  const message = `GPU job ${name} ${status}`;
  const toast = {
    autoClose: 10000 as number | false,
    actions: [{ label: 'Open', caption: 'Show the job in the GPU Jobs panel', callback: open }]
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
