/**
 * The sidebar view: the active notebook's measured cells, their totals and how they were measured.
 *
 * Everything from the kernel is rendered as React text nodes, never as HTML. Colours come from
 * JupyterLab's theme variables (style/base.css), so light and dark themes both work.
 */
import { TranslationBundle } from '@jupyterlab/translation';
import { ReactWidget } from '@jupyterlab/ui-components';
import { ISignal } from '@lumino/signaling';
import { Message } from '@lumino/messaging';
import * as React from 'react';

import {
  Co2Unit,
  EnergyUnit,
  formatCo2,
  formatDuration,
  formatEnergy,
  formatNumber,
  formatPower,
  formatRate,
  formatWater
} from './format';
import {
  CellStatus,
  ICellRecord,
  IHowMeasured,
  IPowerPoint,
  IRun,
  NotebookCarbonModel,
  runBelowResolution,
  runCo2eG,
  runDurationS,
  runEnergyJ,
  runIsModelled,
  runPowerW
} from './model';
import { LOAD_EXTENSION_CODE, MODEL_METHODS } from './protocol';
import { clusterLines, hostDetail, IRunHost, runClusterHosts } from './text';
import { CarbonTracker, ILoadResult, PanelCarbon } from './tracker';

/** User settings the view reads (schema/sidebar.json). */
export interface ISidebarSettings {
  energyUnit: EnergyUnit;
  co2Unit: Co2Unit;
  showSampleRate: boolean;
  writeCellMetadata: boolean;
  showStatusBar: boolean;
}

export const DEFAULT_SETTINGS: ISidebarSettings = {
  energyUnit: 'auto',
  co2Unit: 'auto',
  showSampleRate: false,
  writeCellMetadata: false,
  showStatusBar: true
};

/** How often live durations tick while a run is open (samples re-render on their own). */
const CLOCK_MS = 500;
/** The most often the panel re-renders for new data (samples come at up to 4 Hz). */
const RENDER_MS = 250;
/**
 * Rows listed (newest first) until the user asks for all: a Run All of hundreds of cells must not
 * re-render hundreds of rows four times a second. The totals still count every run.
 */
const MAX_ROWS = 50;

/**
 * The right-sidebar widget. It follows the active notebook.
 */
export class CarbonSidebar extends ReactWidget {
  constructor(tracker: CarbonTracker, trans: TranslationBundle) {
    super();
    this._tracker = tracker;
    this._trans = trans;
    this.addClass('jp-carbonlab-sidebar');
    tracker.currentChanged.connect(() => this.update(), this);
  }

  get settings(): ISidebarSettings {
    return this._settings;
  }

  set settings(value: ISidebarSettings) {
    this._settings = value;
    this.update();
  }

  protected render(): JSX.Element {
    const pc = this._tracker.current;
    return (
      <PanelView
        key={pc?.panel.id ?? 'none'}
        pc={pc}
        settings={this._settings}
        trans={this._trans}
        isVisible={this._isVisible}
      />
    );
  }

  // Re-render when shown again: a sidebar moved or hidden while runs went on must not look stale.
  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this._tracker.visible = true;
    this.update();
  }

  // The kernels are told whether the panel shows: their in-cell widget is compact only then.
  protected onAfterHide(msg: Message): void {
    super.onAfterHide(msg);
    this._tracker.visible = false;
  }

  protected onAfterAttach(msg: Message): void {
    super.onAfterAttach(msg);
    this._tracker.visible = this.isVisible;
  }

  protected onBeforeDetach(msg: Message): void {
    this._tracker.visible = false;
    super.onBeforeDetach(msg);
  }

  private _tracker: CarbonTracker;
  private _trans: TranslationBundle;
  private _settings: ISidebarSettings = DEFAULT_SETTINGS;
  private _isVisible = (): boolean => this.isVisible;
}

/**
 * Re-render on a signal, at most once per RENDER_MS, and not at all while the panel is hidden (it
 * renders afresh when shown, see CarbonSidebar.onAfterShow): a Run All of hundreds of cells must
 * not re-render a long list of rows every animation frame, in a page that shares the machine with
 * the kernel.
 */
function useSignalThrottle(
  signal: ISignal<any, any> | null,
  isVisible: () => boolean
): void {
  const [, setTick] = React.useState(0);
  React.useEffect(() => {
    if (!signal) {
      return;
    }
    let timer: ReturnType<typeof setTimeout> | null = null;
    let last = -Infinity;
    const render = () => {
      timer = null;
      last = Date.now();
      setTick(t => t + 1);
    };
    const onSignal = () => {
      if (timer !== null || !isVisible()) {
        return;
      }
      timer = setTimeout(render, Math.max(0, last + RENDER_MS - Date.now()));
    };
    signal.connect(onSignal);
    return () => {
      signal.disconnect(onSignal);
      if (timer !== null) {
        clearTimeout(timer);
      }
    };
  }, [signal, isVisible]);
}

/** Tick every CLOCK_MS while `on` and shown, so live durations move between samples. */
function useClock(on: boolean, isVisible: () => boolean): void {
  const [, setTick] = React.useState(0);
  React.useEffect(() => {
    if (!on) {
      return;
    }
    const id = setInterval(() => {
      if (isVisible()) {
        setTick(t => t + 1);
      }
    }, CLOCK_MS);
    return () => clearInterval(id);
  }, [on, isVisible]);
}

interface IPanelViewProps {
  pc: PanelCarbon | null;
  settings: ISidebarSettings;
  trans: TranslationBundle;
  /** Whether the panel shows now (hidden: no re-render until it shows again). */
  isVisible: () => boolean;
}

function PanelView(props: IPanelViewProps): JSX.Element {
  const { pc, settings, trans, isVisible } = props;
  useSignalThrottle(pc?.model.changed ?? null, isVisible);
  useSignalThrottle(pc?.stateChanged ?? null, isVisible);
  useClock(pc?.model.hasOpenRuns ?? false, isVisible);
  const [showAll, setShowAll] = React.useState(false);

  if (!pc) {
    return (
      <div className="jp-carbonlab-empty">
        <Header title={trans.__('Energy and CO2e')} />
        <p>
          {trans.__(
            'Open a notebook to see the energy and CO2e of its cells, live while they run.'
          )}
        </p>
      </div>
    );
  }
  const model = pc.model;
  const order = pc.cellOrder();
  const rows = model.rows(order);
  const title = pc.panel.context.localPath.split('/').pop() ?? '';

  if (rows.length === 0) {
    return (
      <div className="jp-carbonlab-empty">
        <Header title={title} />
        <EmptyState pc={pc} trans={trans} />
      </div>
    );
  }
  const now = model.now();
  const index = new Map(order.map((id, i) => [id, i]));
  return (
    <div className="jp-carbonlab-body">
      <Header
        title={title}
        onClear={() => {
          setShowAll(false);
          model.clear();
        }}
        trans={trans}
      />
      {!model.active && <NotMeasuring pc={pc} trans={trans} />}
      <div className="jp-carbonlab-rows" role="list">
        <div className="jp-carbonlab-row jp-carbonlab-row-head" aria-hidden>
          <span>{trans.__('Cell')}</span>
          <span>{trans.__('Energy')}</span>
          <span>{trans.__('CO2e')}</span>
          <span>{trans.__('Time')}</span>
        </div>
        {(showAll ? rows : rows.slice(0, MAX_ROWS)).map(rec => (
          <Row
            key={rec.cellId}
            rec={rec}
            status={model.status(rec)}
            index={index.get(rec.cellId)}
            now={now}
            settings={settings}
            trans={trans}
            onClick={() => void pc.scrollTo(rec.cellId)}
          />
        ))}
        {!showAll && rows.length > MAX_ROWS && (
          <div className="jp-carbonlab-more">
            {trans._n(
              '%1 more cell not listed',
              '%1 more cells not listed',
              rows.length - MAX_ROWS
            )}{' '}
            <button
              className="jp-carbonlab-link"
              onClick={() => setShowAll(true)}
              title={trans.__('List every cell (slower while many cells run)')}
            >
              {trans.__('Show all')}
            </button>
          </div>
        )}
      </div>
      <Totals model={model} settings={settings} trans={trans} />
      <HowMeasured
        how={model.howMeasured()}
        settings={settings}
        trans={trans}
      />
    </div>
  );
}

function Header(props: {
  title: string;
  onClear?: () => void;
  trans?: TranslationBundle;
}): JSX.Element {
  return (
    <div className="jp-carbonlab-header">
      <span className="jp-carbonlab-title" title={props.title}>
        {props.title}
      </span>
      {props.onClear && props.trans && (
        <button
          className="jp-carbonlab-link"
          onClick={props.onClear}
          title={props.trans.__(
            'Forget the rows shown (the notebook is not changed)'
          )}
        >
          {props.trans.__('Clear')}
        </button>
      )}
    </div>
  );
}

/** Label and tooltip of a status. */
function statusText(
  status: CellStatus,
  trans: TranslationBundle
): { label: string; title: string } {
  switch (status) {
    case 'queued':
      return {
        label: trans.__('queued'),
        title: trans.__('Waiting for the kernel to run it')
      };
    case 'running':
      return {
        label: trans.__('running'),
        title: trans.__('Measuring now; figures so far')
      };
    case 'done':
      return { label: trans.__('done'), title: trans.__('Finished') };
    case 'error':
      return {
        label: trans.__('error'),
        title: trans.__('The cell raised; it was still measured')
      };
    case 'interrupted':
      return {
        label: trans.__('interrupted'),
        title: trans.__('The run ended without a summary; figures up to then')
      };
  }
}

interface IRowProps {
  rec: ICellRecord;
  status: CellStatus;
  index: number | undefined;
  now: number;
  settings: ISidebarSettings;
  trans: TranslationBundle;
  onClick: () => void;
}

function Row(props: IRowProps): JSX.Element {
  const { rec, status, index, now, settings, trans } = props;
  const run: IRun | undefined = rec.runs[rec.runs.length - 1];
  const st = statusText(status, trans);
  const cellLabel = index === undefined ? '–' : `#${index + 1}`;
  const cellTitle =
    index === undefined
      ? trans.__('This cell is no longer in the notebook')
      : trans.__('Cell %1 of the notebook: click to scroll to it', index + 1);
  const runsNote =
    rec.runs.length > 1
      ? trans.__('%1 runs; figures are of the latest', rec.runs.length)
      : '';
  const modelled = run ? runIsModelled(run) : false;
  const belowRes = run ? runBelowResolution(run) : false;
  const power = run ? runPowerW(run, now) : null;
  const co2 = run ? runCo2eG(run) : null;
  const sampleUnix =
    run?.lastSample !== null && run?.lastSample !== undefined
      ? run.t0 + run.lastSample.t
      : undefined;
  // An attached cluster's figures per host: a disclosure in the row, only where there are some.
  const hosts = run ? runClusterHosts(run) : [];
  const [expanded, setExpanded] = React.useState(false);
  const detailsId = `jp-carbonlab-details-${React.useId().replace(/:/g, '')}`;
  const onKey = (e: React.KeyboardEvent) => {
    if (e.target !== e.currentTarget) {
      return; // a key on the disclosure button is its own
    }
    if (e.key === 'Enter' || e.key === ' ') {
      e.preventDefault();
      props.onClick();
    } else if (
      hosts.length &&
      (e.key === 'ArrowRight' || e.key === 'ArrowLeft')
    ) {
      e.preventDefault();
      setExpanded(e.key === 'ArrowRight');
    }
  };
  return (
    <div
      className={`jp-carbonlab-row jp-carbonlab-status-${status}${expanded && hosts.length ? ' jp-mod-expanded' : ''}`}
      role="listitem"
      tabIndex={0}
      onClick={props.onClick}
      onKeyDown={onKey}
      title={[cellTitle, runsNote, run?.label ?? '', run?.note ?? '']
        .filter(s => s)
        .join('\n')}
      data-cell-id={rec.cellId}
      data-status={status}
      data-energy-j={run ? runEnergyJ(run) : undefined}
      data-sample-count={run?.sampleCount ?? 0}
      data-sample-unix={sampleUnix}
    >
      <span className="jp-carbonlab-cell">
        {cellLabel}
        {rec.runs.length > 1 && (
          <span className="jp-carbonlab-runs">×{rec.runs.length}</span>
        )}
      </span>
      {run ? (
        <>
          <span className="jp-carbonlab-num jp-carbonlab-energy">
            <Marks modelled={modelled} belowRes={belowRes} trans={trans} />
            {formatEnergy(runEnergyJ(run), settings.energyUnit)}
          </span>
          <span className="jp-carbonlab-num">
            {co2 === null ? '–' : formatCo2(co2, settings.co2Unit)}
          </span>
          <span className="jp-carbonlab-num">
            {formatDuration(runDurationS(run, now))}
          </span>
        </>
      ) : (
        <span className="jp-carbonlab-wide">–</span>
      )}
      <span className="jp-carbonlab-line2">
        <span className="jp-carbonlab-status" title={st.title}>
          {st.label}
        </span>
        {hosts.length > 0 && (
          <button
            className="jp-carbonlab-disclose"
            aria-expanded={expanded}
            aria-controls={expanded ? detailsId : undefined}
            title={
              expanded
                ? trans.__('Hide the cluster per host')
                : trans.__('Show the cluster per host')
            }
            onClick={e => {
              e.stopPropagation(); // not a click on the row (that scrolls to the cell)
              setExpanded(!expanded);
            }}
            onKeyDown={e => e.stopPropagation()}
          >
            {trans._n('%1 host', '%1 hosts', hosts.length)}
          </button>
        )}
        {run?.labelled && (
          <span className="jp-carbonlab-label" title={run.label}>
            {run.label}
          </span>
        )}
        {run?.source === 'saved' && (
          <span
            className="jp-carbonlab-badge"
            title={trans.__(
              'Read from the cell metadata of an earlier session'
            )}
          >
            {trans.__('saved')}
          </span>
        )}
        {belowRes && (
          <span
            className="jp-carbonlab-badge jp-carbonlab-warn"
            title={trans.__(
              "Shorter than the meters' update period (about 100 ms): a lower bound, not a measured value"
            )}
          >
            {trans.__('below resolution')}
          </span>
        )}
        {power !== null && (
          <span
            className="jp-carbonlab-power"
            title={
              status === 'running'
                ? trans.__('Power now (latest sample)')
                : trans.__('Mean power over the run')
            }
          >
            {formatPower(power)}
          </span>
        )}
        {run && run.points.length > 1 && (
          <Sparkline points={run.points} live={status === 'running'} />
        )}
      </span>
      {expanded && hosts.length > 0 && (
        <ClusterDetails
          id={detailsId}
          hosts={hosts}
          running={status === 'running'}
          settings={settings}
          trans={trans}
        />
      )}
    </div>
  );
}

/** A row's details: its cluster per engine and host (carbonlab.cluster), largest first. */
function ClusterDetails(props: {
  id: string;
  hosts: IRunHost[];
  running: boolean;
  settings: ISidebarSettings;
  trans: TranslationBundle;
}): JSX.Element {
  const { hosts, trans } = props;
  const live = hosts.some(h => h.live);
  const share = hosts.some(h => h.share);
  return (
    <div
      id={props.id}
      className="jp-carbonlab-details"
      role="group"
      aria-label={trans.__('Cluster per host')}
      data-cluster-details={live ? 'live' : 'summary'}
      // Reading or selecting the details is not a click on the row (that scrolls to the cell).
      onClick={e => e.stopPropagation()}
    >
      <ul className="jp-carbonlab-hosts">
        {hosts.map(h => {
          const d = hostDetail(h, trans, props.settings.energyUnit);
          return (
            <li
              key={`${h.engine} ${h.host}`}
              className="jp-carbonlab-host"
              title={d.title}
              aria-label={d.text}
              data-host={h.host}
              data-engine={h.engine}
              data-energy-j={h.energyJ}
            >
              <span className="jp-carbonlab-host-name">{d.name}</span>
              <span className="jp-carbonlab-host-workers">{d.workers}</span>
              <span className="jp-carbonlab-num jp-carbonlab-host-energy">
                {d.energy}
              </span>
              <span className="jp-carbonlab-num jp-carbonlab-host-power">
                {d.power ?? ''}
              </span>
            </li>
          );
        })}
      </ul>
      <div className="jp-carbonlab-muted">
        {live
          ? props.running
            ? trans.__(
                "Whole hosts, every client's work, polled at most once a second; this client's share comes when the cell ends."
              )
            : trans.__(
                "Whole hosts, every client's work, up to the last poll (no summary came)."
              )
          : share
            ? trans.__("This client's share of each host's energy.")
            : trans.__("Each host's energy over the run.")}
      </div>
    </div>
  );
}

function Marks(props: {
  modelled: boolean;
  belowRes: boolean;
  trans: TranslationBundle;
}): JSX.Element | null {
  if (props.belowRes) {
    return (
      <span
        className="jp-carbonlab-mark"
        title={props.trans.__("Below the meters' resolution: a lower bound")}
      >
        {'≥'}
      </span>
    );
  }
  if (props.modelled) {
    return (
      <span
        className="jp-carbonlab-mark"
        title={props.trans.__(
          'Partly estimated by a model (CPU time × W per core, resident GB × W per GB), not read from a meter'
        )}
      >
        {'≈'}
      </span>
    );
  }
  return null;
}

/** A small SVG line of total power over the run. */
function Sparkline(props: {
  points: IPowerPoint[];
  live: boolean;
}): JSX.Element {
  const w = 72;
  const h = 14;
  const pts = props.points;
  const t0 = pts[0].t;
  const span = Math.max(pts[pts.length - 1].t - t0, 1e-9);
  const max = Math.max(...pts.map(p => p.w), 1e-9);
  const d = pts
    .map(p => `${((p.t - t0) / span) * w},${h - 1 - (p.w / max) * (h - 2)}`)
    .join(' ');
  return (
    <svg
      className={`jp-carbonlab-spark${props.live ? ' jp-carbonlab-spark-live' : ''}`}
      width={w}
      height={h}
      viewBox={`0 0 ${w} ${h}`}
      preserveAspectRatio="none"
      aria-hidden
    >
      <polyline points={d} fill="none" strokeWidth={1.25} />
    </svg>
  );
}

function Totals(props: {
  model: NotebookCarbonModel;
  settings: ISidebarSettings;
  trans: TranslationBundle;
}): JSX.Element {
  const { settings, trans } = props;
  const t = props.model.totals();
  const dash = '–';
  return (
    <div className="jp-carbonlab-totals" data-runs={t.runs}>
      <div className="jp-carbonlab-totals-title">
        {trans.__('Notebook total')}
        {t.live && (
          <span className="jp-carbonlab-badge">{trans.__('live')}</span>
        )}
        <span className="jp-carbonlab-muted">
          {' '}
          {trans._n('%1 run', '%1 runs', t.runs)}
        </span>
      </div>
      <dl>
        <dt>{trans.__('Energy')}</dt>
        <dd data-total="energy">
          {t.modelled ? '≈ ' : ''}
          {formatEnergy(t.energyJ, settings.energyUnit)}
        </dd>
        <dt>{trans.__('CO2e')}</dt>
        <dd
          data-total="co2e"
          title={
            t.co2eMissing
              ? trans.__('Some runs had no carbon intensity: not counted')
              : undefined
          }
        >
          {formatCo2(t.co2eG, settings.co2Unit)}
          {t.co2eMissing ? ' +?' : ''}
        </dd>
        <dt title={trans.__("Share of the devices' manufacturing footprint")}>
          {trans.__('Embodied')}
        </dt>
        <dd data-total="embodied">
          {t.embodiedCo2eG === null
            ? dash
            : formatCo2(t.embodiedCo2eG, settings.co2Unit)}
        </dd>
        <dt>{trans.__('Water')}</dt>
        <dd data-total="water">
          {t.waterL === null ? dash : formatWater(t.waterL)}
        </dd>
      </dl>
      {props.model.historyFault && (
        <div
          className="jp-carbonlab-history-fault"
          data-total="history"
          title={trans.__(
            'Runs are still measured; the kernel retries writing them'
          )}
        >
          {trans.__(
            '⚠ history not saved: %1: %2',
            props.model.historyFault.path,
            props.model.historyFault.reason
          )}
        </div>
      )}
      {props.model.advice && (
        <div
          className="jp-carbonlab-advice"
          data-total="advice"
          title={trans.__('From the live grid forecast')}
        >
          {props.model.advice.sentence}
        </div>
      )}
      {(t.modelled || t.belowResolution) && (
        <div className="jp-carbonlab-muted jp-carbonlab-legend">
          {t.modelled && (
            <div>{trans.__('≈ estimated by a model, not a meter.')}</div>
          )}
          {t.belowResolution && (
            <div>
              {trans.__(
                "≥ shorter than the meters' resolution: a lower bound."
              )}
            </div>
          )}
        </div>
      )}
    </div>
  );
}

/** Scope of a figure in words: a device-wide GPU figure includes other processes' work. */
function scopeText(scope: string, trans: TranslationBundle): string {
  switch (scope) {
    case 'device':
      return trans.__('whole device');
    case 'package':
      return trans.__('whole CPU package');
    case 'process':
      return trans.__('this kernel');
    case 'tasks':
      return trans.__("this client's tasks");
    default:
      return scope;
  }
}

function HowMeasured(props: {
  how: IHowMeasured | null;
  settings: ISidebarSettings;
  trans: TranslationBundle;
}): JSX.Element | null {
  const { how, trans } = props;
  if (!how) {
    return null;
  }
  const devices = how.devices.map(d => {
    const what = d.name || (d.device !== d.kind ? d.device : '');
    const model = MODEL_METHODS.has(d.method) ? ' ≈' : '';
    const scope = d.scope ? `, ${scopeText(d.scope, trans)}` : '';
    return `${d.kind.toUpperCase()}${what ? ` ${what}` : ''} (${d.method}${model}${scope})`;
  });
  const lines: string[] = [];
  if (devices.length) {
    lines.push(trans.__('Measured: %1', devices.join('; ')));
  } else if (how.methods.length) {
    lines.push(trans.__('Methods: %1', how.methods.join(', ')));
  }
  const i = how.intensity;
  if (i) {
    const zone = i.zone ?? trans.__('world average');
    const value =
      i.gco2e_per_kwh === null
        ? ''
        : `, ${formatNumber(i.gco2e_per_kwh)} gCO2e/kWh`;
    const source = i.source ? ` (${i.source}${i.at ? `, ${i.at}` : ''})` : '';
    const pue =
      how.pue !== null ? trans.__('; PUE %1', formatNumber(how.pue)) : '';
    lines.push(trans.__('Intensity: %1%2%3%4', zone, value, source, pue));
  } else {
    lines.push(trans.__('Intensity: not known to the kernel (no CO2e)'));
  }
  if (props.settings.showSampleRate) {
    lines.push(
      trans.__('Samples: %1', formatRate(how.sampleCount, how.sampleSpanS))
    );
  }
  // Work sent to an attached Dask or Ray cluster, per host (carbonlab.cluster).
  for (const line of clusterLines(
    how.components,
    trans,
    props.settings.energyUnit
  )) {
    lines.push(trans.__('Cluster: %1', line));
  }
  return (
    <div className="jp-carbonlab-how" data-how-measured>
      {lines.map(l => (
        <div key={l}>{l}</div>
      ))}
    </div>
  );
}

/** Why the sidebar is empty, and the button that starts measuring. */
function EmptyState(props: {
  pc: PanelCarbon;
  trans: TranslationBundle;
}): JSX.Element {
  const { pc, trans } = props;
  const kernel = pc.kernelState;
  if (kernel.phase === 'none') {
    return (
      <p>
        {trans.__(
          'This notebook has no kernel. Select a Python kernel, then load carbonlab in it to measure each cell.'
        )}
      </p>
    );
  }
  if (kernel.language !== null && kernel.language !== 'python') {
    return (
      <NotPython
        kernel={kernel.displayName}
        lang={kernel.language}
        trans={trans}
      />
    );
  }
  return (
    <>
      <p>
        {pc.model.active
          ? trans.__(
              'carbonlab is measuring in this kernel. Run a cell: its power, energy and CO2e appear here while it runs.'
            )
          : trans.__(
              'No measured cells yet. carbonlab measures the energy and CO2e of each cell while it runs, once its IPython extension is loaded in the kernel.'
            )}
      </p>
      {!pc.model.active && <LoadButton pc={pc} trans={trans} />}
    </>
  );
}

function NotPython(props: {
  kernel: string;
  lang: string;
  trans: TranslationBundle;
}): JSX.Element {
  return (
    <p className="jp-carbonlab-warn-text">
      {props.trans.__(
        'The kernel is %1 (%2). carbonlab measures Python (IPython) kernels only.',
        props.kernel,
        props.lang || '?'
      )}
    </p>
  );
}

/** Shown above the rows when the kernel is not measuring (after a restart or a reload). */
function NotMeasuring(props: {
  pc: PanelCarbon;
  trans: TranslationBundle;
}): JSX.Element | null {
  const { pc, trans } = props;
  const kernel = pc.kernelState;
  if (kernel.phase !== 'ready' || kernel.language !== 'python') {
    return null;
  }
  return (
    <div className="jp-carbonlab-notice">
      <span>
        {trans.__(
          'No carbonlab run seen in this kernel since it started: new runs are not measured until the extension is loaded.'
        )}
      </span>
      <LoadButton pc={pc} trans={trans} />
    </div>
  );
}

function LoadButton(props: {
  pc: PanelCarbon;
  trans: TranslationBundle;
}): JSX.Element {
  const { pc, trans } = props;
  const [busy, setBusy] = React.useState(false);
  const [result, setResult] = React.useState<ILoadResult | null>(null);
  const mounted = React.useRef(true);
  React.useEffect(
    () => () => {
      mounted.current = false;
    },
    []
  );
  const onClick = async () => {
    setBusy(true);
    let r: ILoadResult;
    try {
      r = await pc.loadExtension();
    } catch (reason) {
      r = { ok: false, reason: 'error', detail: String(reason) };
    }
    if (mounted.current) {
      setBusy(false);
      setResult(r);
    }
  };
  return (
    <div className="jp-carbonlab-load">
      <button
        className="jp-mod-styled jp-mod-accept jp-carbonlab-load-button"
        disabled={busy}
        onClick={() => void onClick()}
        title={trans.__(
          'Runs %1 in the kernel, silently: no cell output, no history',
          LOAD_EXTENSION_CODE
        )}
      >
        {busy ? trans.__('Loading…') : trans.__('Load carbonlab')}
      </button>
      {result && <LoadMessage result={result} pc={pc} trans={trans} />}
    </div>
  );
}

function LoadMessage(props: {
  result: ILoadResult;
  pc: PanelCarbon;
  trans: TranslationBundle;
}): JSX.Element {
  const { result, pc, trans } = props;
  let text: string;
  switch (result.reason) {
    case null:
      text = trans.__(
        'carbonlab is loaded. Run a cell: it appears here while it runs.'
      );
      break;
    case 'no-kernel':
      text = trans.__('This notebook has no kernel.');
      break;
    case 'not-python':
      text = trans.__(
        'The kernel is %1 (%2). carbonlab measures Python (IPython) kernels only.',
        pc.kernelState.displayName,
        result.detail || '?'
      );
      break;
    case 'not-installed':
      text = trans.__(
        "carbonlab is not installed in this kernel's Python environment. Install it there (python -m pip install carbonlab), restart the kernel, and load it again."
      );
      break;
    default:
      text = trans.__('Loading carbonlab failed.');
  }
  return (
    <div
      className={result.ok ? 'jp-carbonlab-ok-text' : 'jp-carbonlab-warn-text'}
      role="status"
      data-load-result={result.reason ?? 'ok'}
    >
      <p>{text}</p>
      {result.detail && result.reason !== 'not-python' && (
        <pre className="jp-carbonlab-detail">{result.detail}</pre>
      )}
    </div>
  );
}
