/**
 * The status-bar item: the running cell's live power and energy, else the notebook's total.
 * Always visible (like jupyter-resource-usage), so carbonlab is found without opening the sidebar;
 * a click opens the sidebar. The text is built by `statusText` (text.ts, tested in jest).
 */
import { TextItem } from '@jupyterlab/statusbar';
import { TranslationBundle } from '@jupyterlab/translation';
import { ReactWidget } from '@jupyterlab/ui-components';
import * as React from 'react';

import { Co2Unit, EnergyUnit } from './format';
import { statusKey, statusText } from './text';
import { CarbonTracker, PanelCarbon } from './tracker';

/** The status-bar widget; follows the active notebook. */
export class CarbonStatusItem extends ReactWidget {
  constructor(
    tracker: CarbonTracker,
    trans: TranslationBundle,
    onClick: () => void
  ) {
    super();
    this._tracker = tracker;
    this._trans = trans;
    this._onClick = onClick;
    // Not `jp-carbonlab-status`: that is the run status in the sidebar's rows.
    this.addClass('jp-carbonlab-statusbar');
    // JupyterLab's hover background for clickable status items.
    this.addClass('jp-mod-highlighted');
    tracker.currentChanged.connect(() => this.update(), this);
  }

  set units(value: { energy: EnergyUnit; co2: Co2Unit }) {
    this._units = value;
    this.update();
  }

  protected render(): JSX.Element {
    return (
      <StatusView
        key={this._tracker.current?.panel.id ?? 'none'}
        pc={this._tracker.current}
        trans={this._trans}
        units={this._units}
        onClick={this._onClick}
      />
    );
  }

  private _tracker: CarbonTracker;
  private _trans: TranslationBundle;
  private _onClick: () => void;
  private _units: { energy: EnergyUnit; co2: Co2Unit } = {
    energy: 'auto',
    co2: 'auto'
  };
}

/** The least time between two renders while nothing but the live figures changes. */
const RENDER_MS = 500;

/**
 * Re-render on the model's signal at most twice a second while only the figures move (the
 * status bar is glanced at), but at once when the item's kind of text changes: a run starts
 * or ends, or the runs were cleared (see `statusKey`). The first change after a quiet spell
 * renders at once too (leading edge), as the sidebar does.
 */
function useThrottled(pc: PanelCarbon | null): void {
  const [, setTick] = React.useState(0);
  React.useEffect(() => {
    if (!pc) {
      return;
    }
    let timer: ReturnType<typeof setTimeout> | null = null;
    let last = -Infinity;
    let key = statusKey(pc.model);
    const render = () => {
      if (timer !== null) {
        clearTimeout(timer);
        timer = null;
      }
      last = Date.now();
      key = statusKey(pc.model);
      setTick(t => t + 1);
    };
    const onChange = () => {
      if (statusKey(pc.model) !== key) {
        render();
      } else if (timer === null) {
        timer = setTimeout(render, Math.max(0, last + RENDER_MS - Date.now()));
      }
    };
    pc.model.changed.connect(onChange);
    return () => {
      pc.model.changed.disconnect(onChange);
      if (timer !== null) {
        clearTimeout(timer);
      }
    };
  }, [pc]);
}

function StatusView(props: {
  pc: PanelCarbon | null;
  trans: TranslationBundle;
  units: { energy: EnergyUnit; co2: Co2Unit };
  onClick: () => void;
}): JSX.Element {
  useThrottled(props.pc);
  const s = statusText(props.pc?.model ?? null, props.trans, props.units);
  // JupyterLab's own TextItem (class jp-StatusBar-TextItem): the same font and 24px line
  // height as the kernel status beside it, so the text sits on the same line.
  return (
    <TextItem
      className="jp-carbonlab-status-text"
      data-state={s.state}
      source={s.text}
      title={s.title}
      role="button"
      tabIndex={0}
      onClick={props.onClick}
      onKeyDown={e => {
        if (e.key === 'Enter' || e.key === ' ') {
          props.onClick();
        }
      }}
    />
  );
}
