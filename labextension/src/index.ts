/**
 * carbonlab's JupyterLab plugin: a right-sidebar panel with the live energy and CO2e of the
 * active notebook's cells. The measuring is done in the kernel (carbonlab's IPython extension);
 * this plugin only listens to its `carbonlab.cell` comms (see protocol.ts).
 */
import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { INotebookTracker } from '@jupyterlab/notebook';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { IStatusBar } from '@jupyterlab/statusbar';
import { ITranslator, nullTranslator } from '@jupyterlab/translation';
import { LabIcon } from '@jupyterlab/ui-components';

// Both are needed at activation: the tracker must register the comm target before the first
// measured cell runs, and the sidebar's tab must be in the shell for the layout restorer.
// eslint-disable-next-line jupyter/prefer-lazy-imports
import { CarbonSidebar, DEFAULT_SETTINGS, ISidebarSettings } from './sidebar';
// eslint-disable-next-line jupyter/prefer-lazy-imports
import { CarbonTracker } from './tracker';
// eslint-disable-next-line jupyter/prefer-lazy-imports
import { addCommands, COMMANDS } from './commands';
// eslint-disable-next-line jupyter/prefer-lazy-imports
import { CarbonStatusItem } from './statusbar';
import { untrackSubshellRequests } from './kernelstatus';

const PLUGIN_ID = 'carbonlab:sidebar';

/** A leaf with a bolt; `jp-icon3` makes it follow the theme. Also the settings' icon. */
export const carbonIcon = new LabIcon({
  name: 'carbonlab:leaf',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" width="16" viewBox="0 0 24 24">' +
    '<g class="jp-icon3" fill="#616161"><path d="M17.5 3C11 3 5 6.5 4.2 13.6c-.1 1 .1 2 .5 2.9' +
    'L2.3 19.9l1.4 1.4 2.6-2.7c1 .5 2.1.7 3.2.6C16.6 18.5 20 12.5 20 5.5V3h-2.5zm-4.1 5.2-2.3 ' +
    '3.6h2.6l-4.1 5.4 1-3.9H8.4l2.3-5.1h2.7z"/></g></svg>'
});

/** Read the settings, falling back to the defaults for anything missing or mistyped. */
function readSettings(s: ISettingRegistry.ISettings): ISidebarSettings {
  const c = s.composite as Partial<Record<keyof ISidebarSettings, unknown>>;
  const oneOf = <T extends string>(v: unknown, allowed: T[], d: T): T =>
    allowed.includes(v as T) ? (v as T) : d;
  return {
    energyUnit: oneOf(c.energyUnit, ['auto', 'J', 'Wh'], 'auto'),
    co2Unit: oneOf(c.co2Unit, ['auto', 'g', 'kg'], 'auto'),
    showSampleRate: c.showSampleRate === true,
    writeCellMetadata: c.writeCellMetadata === true,
    showStatusBar: c.showStatusBar !== false
  };
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'Live energy and CO2e of notebook cells, in the right sidebar.',
  autoStart: true,
  requires: [INotebookTracker],
  optional: [
    ISettingRegistry,
    ILayoutRestorer,
    ITranslator,
    ICommandPalette,
    IStatusBar
  ],
  activate: (
    app: JupyterFrontEnd,
    notebooks: INotebookTracker,
    settingRegistry: ISettingRegistry | null,
    restorer: ILayoutRestorer | null,
    translator: ITranslator | null,
    palette: ICommandPalette | null,
    statusBar: IStatusBar | null
  ) => {
    const trans = (translator ?? nullTranslator).load('carbonlab');
    try {
      untrackSubshellRequests(); // the kernel must not read "Idle" while a measured cell runs
    } catch (e) {
      console.warn('carbonlab: could not untrack subshell requests', e);
    }
    const tracker = new CarbonTracker(notebooks);
    const sidebar = new CarbonSidebar(tracker, trans);
    sidebar.id = 'carbonlab-sidebar';
    sidebar.title.icon = carbonIcon;
    sidebar.title.caption = trans.__('Energy and CO2e of cells (carbonlab)');
    if (app.name !== 'JupyterLab') {
      // Notebook 7 lists side panels by label (View > Right Sidebar), not by icon.
      sidebar.title.label = trans.__('carbonlab');
    }
    app.shell.add(sidebar, 'right', { rank: 650 });
    if (restorer) {
      restorer.add(sidebar, 'carbonlab-sidebar');
    }

    addCommands({
      app,
      tracker,
      sidebarId: sidebar.id,
      trans,
      icon: carbonIcon,
      palette
    });

    let showStatus = DEFAULT_SETTINGS.showStatusBar;
    let status: CarbonStatusItem | null = null;
    if (statusBar) {
      status = new CarbonStatusItem(tracker, trans, () => {
        app.shell.activateById(sidebar.id);
      });
      statusBar.registerStatusItem('carbonlab:status', {
        item: status,
        align: 'left',
        rank: 5,
        isActive: () => showStatus
      });
    }

    const apply = (value: ISidebarSettings) => {
      sidebar.settings = value;
      tracker.writeMetadata = value.writeCellMetadata;
      showStatus = value.showStatusBar;
      if (status) {
        status.units = { energy: value.energyUnit, co2: value.co2Unit };
        // isActive is read when the status bar refreshes; make it refresh now.
        status.setHidden(!showStatus);
      }
      app.commands.notifyCommandChanged(COMMANDS.toggle);
    };
    apply(DEFAULT_SETTINGS);
    if (settingRegistry) {
      settingRegistry
        .load(PLUGIN_ID)
        .then(settings => {
          apply(readSettings(settings));
          settings.changed.connect(() => apply(readSettings(settings)));
        })
        .catch(reason => {
          console.error('carbonlab: could not load settings', reason);
        });
    }
  }
};

export default plugin;
