/**
 * carbonlab's commands: in the command palette, the menus (schema/sidebar.json) and bindable
 * through `jupyter.lab.shortcuts`. Each acts on the active notebook.
 */
import { JupyterFrontEnd } from '@jupyterlab/application';
import {
  Clipboard,
  ICommandPalette,
  InputDialog,
  Notification
} from '@jupyterlab/apputils';
import { TranslationBundle } from '@jupyterlab/translation';
import { LabIcon } from '@jupyterlab/ui-components';

import { summaryText, ZONE_PATTERN } from './text';
import { CarbonTracker } from './tracker';

export const COMMANDS = {
  load: 'carbonlab:load',
  clear: 'carbonlab:clear',
  toggle: 'carbonlab:toggle-sidebar',
  copy: 'carbonlab:copy-summary',
  zone: 'carbonlab:set-zone'
} as const;

export interface ICommandOptions {
  app: JupyterFrontEnd;
  tracker: CarbonTracker;
  sidebarId: string;
  trans: TranslationBundle;
  icon: LabIcon;
  palette: ICommandPalette | null;
}

export function addCommands(o: ICommandOptions): void {
  const { app, tracker, sidebarId, trans, icon } = o;
  const hasNotebook = () => tracker.current !== null;
  const sidebarVisible = () =>
    Array.from(app.shell.widgets('right')).some(
      w => w.id === sidebarId && w.isVisible
    );

  app.commands.addCommand(COMMANDS.load, {
    describedBy: { args: { type: 'object', properties: {} } },
    label: trans.__('Load carbonlab in the Kernel'),
    caption: trans.__(
      'Run %load_ext carbonlab in the active notebook’s kernel, silently'
    ),
    icon,
    isEnabled: hasNotebook,
    execute: async () => {
      const pc = tracker.current;
      if (!pc) {
        return;
      }
      const r = await pc.loadExtension();
      if (r.ok) {
        Notification.success(
          trans.__('carbonlab is measuring every cell of this notebook.'),
          { autoClose: 3000 }
        );
      } else {
        Notification.error(
          r.reason === 'not-installed'
            ? trans.__(
                'carbonlab is not installed in this kernel’s Python environment.'
              )
            : trans.__(
                'Loading carbonlab failed: %1',
                r.detail || r.reason || ''
              ),
          { autoClose: 6000 }
        );
      }
    }
  });

  app.commands.addCommand(COMMANDS.clear, {
    describedBy: { args: { type: 'object', properties: {} } },
    label: trans.__('Clear carbonlab Sidebar'),
    caption: trans.__(
      'Forget the runs shown for the active notebook (history in the kernel is kept)'
    ),
    isEnabled: hasNotebook,
    execute: () => tracker.current?.model.clear()
  });

  app.commands.addCommand(COMMANDS.toggle, {
    describedBy: { args: { type: 'object', properties: {} } },
    label: trans.__('Show carbonlab Sidebar'),
    caption: trans.__('Show or hide the energy and CO2e sidebar'),
    icon,
    isToggled: sidebarVisible,
    execute: () => {
      if (sidebarVisible()) {
        // Both JupyterLab's shell and Notebook 7's have collapseRight(); Notebook 7 registers
        // no 'application:toggle-right-area' command (found by tests/ui/test_notebook7.py).
        const shell = app.shell as unknown as { collapseRight?: () => void };
        if (typeof shell.collapseRight === 'function') {
          shell.collapseRight();
          return;
        }
        if (app.commands.hasCommand('application:toggle-right-area')) {
          return app.commands.execute('application:toggle-right-area');
        }
        return;
      }
      app.shell.activateById(sidebarId);
    }
  });

  app.commands.addCommand(COMMANDS.copy, {
    describedBy: { args: { type: 'object', properties: {} } },
    label: trans.__('Copy carbonlab Summary of the Notebook'),
    caption: trans.__(
      'Copy the notebook’s energy and CO2e totals, and how they were measured, as text'
    ),
    isEnabled: () => (tracker.current?.model.totals().runs ?? 0) > 0,
    execute: () => {
      const pc = tracker.current;
      if (!pc) {
        return;
      }
      const title = pc.panel.context.localPath.split('/').pop() ?? '';
      const text = summaryText(title, pc.model);
      if (text) {
        Clipboard.copyToSystem(text);
        Notification.info(trans.__('carbonlab summary copied.'), {
          autoClose: 2000
        });
      }
    }
  });

  app.commands.addCommand(COMMANDS.zone, {
    describedBy: {
      args: {
        type: 'object',
        properties: {
          zone: {
            type: 'string',
            description: 'The zone code; without it, a dialog asks for one'
          }
        }
      }
    },
    label: trans.__('Set carbonlab Grid Zone…'),
    caption: trans.__(
      'Switch the grid zone (e.g. FR, US-CAL-CISO, aws:eu-west-3) for this kernel’s session'
    ),
    isEnabled: hasNotebook,
    execute: async args => {
      const pc = tracker.current;
      if (!pc) {
        return;
      }
      let zone = typeof args['zone'] === 'string' ? args['zone'] : null;
      if (zone === null) {
        const answer = await InputDialog.getText({
          title: trans.__('carbonlab: grid zone for this kernel'),
          label: trans.__(
            'A country code (FR), an Electricity Maps zone (US-CAL-CISO) or a cloud region (gcp:europe-west1)'
          ),
          // A zone code, the same in every language.
          // eslint-disable-next-line jupyter/no-untranslated-string
          placeholder: 'FR'
        });
        if (!answer.button.accept || !answer.value) {
          return;
        }
        zone = answer.value.trim();
      }
      if (!ZONE_PATTERN.test(zone)) {
        Notification.error(
          trans.__('“%1” is not a zone code (letters, digits, : _ . -).', zone),
          { autoClose: 6000 }
        );
        return;
      }
      const r = await pc.runCarbonMagic(`zone ${zone}`);
      if (r.ok) {
        Notification.success(r.text || trans.__('Zone set to %1.', zone), {
          autoClose: 4000
        });
      } else {
        Notification.error(r.text, { autoClose: 8000 });
      }
    }
  });

  if (o.palette) {
    const category = 'carbonlab';
    for (const command of Object.values(COMMANDS)) {
      o.palette.addItem({ command, category });
    }
  }
}
