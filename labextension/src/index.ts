import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';

import { GpuJobsSidebar } from './sidebar';

/** The "GPU Jobs" panel in the left sidebar. */
const plugin: JupyterFrontEndPlugin<void> = {
  id: 'gpu-magic-labextension:sidebar',
  description: 'A left-sidebar panel listing the jobs of the gpu_magic server extension.',
  autoStart: true,
  optional: [ILayoutRestorer],
  activate: (app: JupyterFrontEnd, restorer: ILayoutRestorer | null) => {
    const sidebar = new GpuJobsSidebar();
    app.shell.add(sidebar, 'left', { rank: 900 });
    restorer?.add(sidebar, sidebar.id);
  }
};

export default plugin;
