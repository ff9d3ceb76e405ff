/**
 * The state of one notebook's measured cells: pure, no DOM, no JupyterLab widgets.
 *
 * It is fed by two sources only (see tracker.ts):
 *  - the kernel's `carbonlab.cell` comms (open → running, samples, close → done/error), and
 *  - JupyterLab's `NotebookActions.executionScheduled` / `executed` signals (queued, finished).
 * It never looks at `kernel.status`: that flickers to idle mid-cell (debug and subshell requests),
 * so "running" is exactly "a comm is open for this cell".
 */
import { ISignal, Signal } from '@lumino/signaling';

import {
  IComponent,
  IDevice,
  IIntensity,
  IMeasurement,
  ISample,
  MODEL_METHODS,
  parseOpen,
  parseRuns,
  parseSample,
  parseSavedRun,
  parseState,
  parseSummary,
  IAdvice,
  IHistoryStatus,
  ILiveHost
} from './protocol';

/** Comm id under which a run forwarded on the hello comm (hello v2) is kept. */
export function helloRunKey(runId: string): string {
  return `hello:${runId}`;
}

/** What a row shows as its state. */
export type CellStatus =
  'queued' | 'running' | 'done' | 'error' | 'interrupted';

/** State of one run (one comm). */
export type RunStatus = 'running' | 'done' | 'error' | 'interrupted';

/** One point of the power sparkline: seconds since t0, total watts. */
export interface IPowerPoint {
  t: number;
  w: number;
}

/** One measured run of a cell. */
export interface IRun {
  runId: string;
  cellId: string;
  label: string;
  /** The user gave the label (`%%carbon --label`): the row shows it. */
  labelled: boolean;
  /** PUE of the live figures (from the open message), null when not said. */
  pue: number | null;
  /** Kernel's unix seconds at the start. */
  t0: number;
  devices: IDevice[];
  zone: IIntensity | null;
  status: RunStatus;
  /**
   * Where the run came from: a live comm, cell metadata saved by an earlier session, or the
   * kernel's history (its answer to the hello after a page reload or on reopening).
   */
  source: 'live' | 'saved' | 'history';
  /** Client clock (ms) when the comm opened; null for saved runs. */
  openedAt: number | null;
  /** Client clock (ms) when the run ended. */
  closedAt: number | null;
  /** Total power over time, bounded in length (see `maxPoints`). */
  points: IPowerPoint[];
  sampleCount: number;
  firstSampleT: number | null;
  lastSample: ISample | null;
  /** Client clock (ms) when the last sample arrived. */
  lastSampleAt: number | null;
  /**
   * The attached cluster's latest live figures per engine and host (a sample's `cluster_hosts`),
   * kept when a later sample has none; null when no sample had any. See `runClusterHosts`.
   */
  clusterHosts: ILiveHost[] | null;
  /** The summary's Measurement, once the run closed normally. */
  measurement: IMeasurement | null;
  /** Why a run is interrupted, for the row's tooltip. */
  note: string | null;
}

/** All runs of one cell, keyed by cell id. */
export interface ICellRecord {
  cellId: string;
  runs: IRun[];
  /** Scheduled by JupyterLab and not yet started or finished. */
  queued: boolean;
  /** Order in which records were first seen; sorts cells no longer in the notebook. */
  seq: number;
  /** Order of the latest start of a run of this cell (rows are newest first); -1: none yet. */
  lastStart: number;
}

/** Totals over every run of the notebook in this session (plus restored runs). */
export interface ITotals {
  runs: number;
  energyJ: number;
  co2eG: number;
  /** Some run has energy but no CO2e figure (no carbon intensity known): co2eG is partial. */
  co2eMissing: boolean;
  /** Null when no finished run reported it. */
  embodiedCo2eG: number | null;
  waterL: number | null;
  /** Some energy in the totals comes from a model, not a meter. */
  modelled: boolean;
  /** Some run was too short for the meters' resolution. */
  belowResolution: boolean;
  /** Some run is still measuring: the totals are live. */
  live: boolean;
}

/** What the "how measured" line says, from the latest run. */
export interface IHowMeasured {
  devices: IDevice[];
  methods: string[];
  intensity: IIntensity | null;
  pue: number | null;
  /** Samples of the latest live run and the span they cover, for the sample rate. */
  sampleCount: number;
  sampleSpanS: number;
  /** Components of the latest finished run (for the cluster breakdown); empty while running. */
  components: IComponent[];
}

const sum = (m: Record<string, number> | undefined): number =>
  m ? Object.values(m).reduce((a, b) => a + b, 0) : 0;

/** Energy of a run so far (J): the summary when there is one, else the last sample. */
export function runEnergyJ(run: IRun): number {
  if (run.measurement) {
    return run.measurement.energy_j;
  }
  return run.lastSample ? sum(run.lastSample.energy_j) : 0;
}

/** CO2e of a run so far (g); null while the kernel reports no carbon intensity. */
export function runCo2eG(run: IRun): number | null {
  if (run.measurement) {
    return run.measurement.co2e_g;
  }
  return run.lastSample ? run.lastSample.co2e_g : null;
}

/** Duration of a run in seconds; `now` is the client clock in ms, for runs still open. */
export function runDurationS(run: IRun, now: number): number {
  if (run.measurement) {
    return run.measurement.duration_s;
  }
  if (run.openedAt !== null) {
    return ((run.closedAt ?? now) - run.openedAt) / 1000;
  }
  return run.lastSample ? run.lastSample.t : 0;
}

/** Power of a run (W): the latest sample while it runs, the mean once it is done. */
export function runPowerW(run: IRun, now: number): number | null {
  if (run.status === 'running') {
    return run.lastSample ? sum(run.lastSample.power_w) : null;
  }
  const d = runDurationS(run, now);
  return d > 0 ? runEnergyJ(run) / d : null;
}

/** Methods behind a run's figures: the summary's components, else the announced devices. */
export function runMethods(run: IRun): string[] {
  const src = run.measurement?.components.length
    ? run.measurement.components
    : run.devices;
  return [...new Set(src.map(c => c.method).filter(m => m))];
}

/** Whether any of a run's energy is estimated by a model (cpu-time-model, ram-model). */
export function runIsModelled(run: IRun): boolean {
  return runMethods(run).some(m => MODEL_METHODS.has(m));
}

/** Whether the run was too short for the meters' update period. */
export function runBelowResolution(run: IRun): boolean {
  return run.measurement?.below_resolution === true;
}

/** An automatic label (`In [3]`, `cell`) is not shown in the row; one the user gave is. */
export function isUserLabel(label: string): boolean {
  return label !== '' && label !== 'cell' && !/^In \[\d*\]$/.test(label);
}

/** A finished run known only by its Measurement (cell metadata, or the kernel's history). */
function finishedRun(
  runId: string,
  cellId: string,
  m: IMeasurement,
  status: RunStatus,
  source: 'saved' | 'history'
): IRun {
  return {
    runId,
    cellId,
    label: m.label,
    labelled: isUserLabel(m.label),
    pue: m.pue,
    t0: m.started_at ? Date.parse(m.started_at) / 1000 || 0 : 0,
    devices: [],
    zone: m.intensity,
    status,
    source,
    openedAt: null,
    closedAt: null,
    points: [],
    sampleCount: 0,
    firstSampleT: null,
    lastSample: null,
    lastSampleAt: null,
    clusterHosts: null,
    measurement: m,
    note: null
  };
}

/** Options of the model. */
export interface IModelOptions {
  /** Client clock in ms; injectable for tests. */
  now?: () => number;
  /** Most sparkline points kept per run; older points are thinned, not dropped. */
  maxPoints?: number;
}

/**
 * Measured cells of one notebook, keyed by cell id.
 */
export class NotebookCarbonModel {
  constructor(options: IModelOptions = {}) {
    this._now = options.now ?? (() => Date.now());
    this._maxPoints = Math.max(8, options.maxPoints ?? 120);
  }

  /** Emits after every change of state. */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /**
   * Whether the kernel is known to measure cells: a carbonlab comm opened since the kernel
   * (re)started, or the extension was loaded from the sidebar. Queued cells are only shown then,
   * so a run-all in a kernel without carbonlab does not fill the sidebar with rows that never run.
   */
  get active(): boolean {
    return this._active;
  }

  set active(value: boolean) {
    if (value !== this._active) {
      this._active = value;
      this._emitChanged();
    }
  }

  /** Whether any run is open (the view ticks its clock then). */
  get hasOpenRuns(): boolean {
    return this._open.size > 0;
  }

  /** The most recently opened run still measuring, if any. */
  runningRun(): IRun | null {
    let latest: IRun | null = null;
    for (const run of this._open.values()) {
      latest = run;
    }
    return latest;
  }

  /** The client clock the model uses. */
  now(): number {
    return this._now();
  }

  /** The record of a cell, if any. */
  cell(cellId: string): ICellRecord | undefined {
    return this._cells.get(cellId);
  }

  /** The run of an open comm, if any. */
  openRun(commId: string): IRun | undefined {
    return this._open.get(commId);
  }

  /** JupyterLab scheduled the cell for execution. */
  scheduled(cellId: string): void {
    const rec = this._record(cellId);
    rec.queued = true;
    this._emitChanged();
  }

  /**
   * JupyterLab got the cell's execute reply (or skipped it). Returns the run still open for that
   * cell, if any: its comm close normally arrives first, so the caller may expire it later.
   */
  executed(cellId: string, success: boolean): IRun | null {
    const rec = this._cells.get(cellId);
    if (!rec) {
      return null;
    }
    rec.queued = false;
    const last = rec.runs[rec.runs.length - 1];
    // A cell that ran without a comm (carbonlab not loaded, or measuring off) leaves no row.
    if (rec.runs.length === 0) {
      this._cells.delete(cellId);
    }
    this._emitChanged();
    return last && last.status === 'running' ? last : null;
  }

  /** A carbonlab comm opened: a cell run starts. Returns the run, or null for foreign data. */
  commOpen(commId: string, data: unknown): IRun | null {
    const open = parseOpen(data);
    if (!open) {
      return null;
    }
    if (commId.startsWith('hello:') && this._hasRun(open.run_id)) {
      return null; // this page saw the run's own comm: it needs no forwarded copy
    }
    const cellId = open.cell_id || `run:${open.run_id}`;
    const rec = this._record(cellId);
    // A new run of a cell whose previous comm never closed: that one is over (a summary that
    // comes later still gives it its exact figures, see commClose).
    for (const r of rec.runs) {
      if (r.status === 'running') {
        this._end(r, 'interrupted', 'a new run of the cell started');
      }
    }
    rec.queued = false;
    rec.lastStart = this._startSeq++;
    if (open.pue !== null) {
      this._lastPue = open.pue;
    }
    const run: IRun = {
      runId: open.run_id,
      cellId,
      label: open.label,
      labelled: open.labelled ?? isUserLabel(open.label),
      pue: open.pue,
      t0: open.t0,
      devices: open.devices,
      zone: open.zone,
      status: 'running',
      source: 'live',
      openedAt: this._now(),
      closedAt: null,
      points: [],
      sampleCount: 0,
      firstSampleT: null,
      lastSample: null,
      lastSampleAt: null,
      clusterHosts: null,
      measurement: null,
      note: null
    };
    rec.runs.push(run);
    this._open.set(commId, run);
    this._active = true;
    this._latest = run;
    this._emitChanged();
    return run;
  }

  /** A comm message arrived. Returns whether it changed anything. */
  commMsg(commId: string, data: unknown): boolean {
    const run = this._open.get(commId);
    const sample = parseSample(data);
    if (!run || !sample) {
      return false;
    }
    run.lastSample = sample;
    run.lastSampleAt = this._now();
    if (sample.cluster_hosts) {
      run.clusterHosts = sample.cluster_hosts;
    }
    if (commId.startsWith('hello:') && run.openedAt !== null) {
      // A run this page joined mid-way (after a reload): its clock started before the page saw
      // it; the kernel's seconds since t0 say how long it has run.
      run.openedAt = Math.min(run.openedAt, run.lastSampleAt - sample.t * 1000);
    }
    run.sampleCount += 1;
    if (run.firstSampleT === null) {
      run.firstSampleT = sample.t;
    }
    run.points.push({ t: sample.t, w: sum(sample.power_w) });
    if (run.points.length > this._maxPoints) {
      // Thin every other point, keeping the first and the newest, so the curve keeps its span.
      run.points = run.points.filter(
        (_, i, a) => i % 2 === 0 || i === a.length - 1
      );
    }
    this._emitChanged();
    return true;
  }

  /**
   * A comm closed. With a summary the run is done (or error); closed without one (kernel-side
   * teardown, a sampler failure) it is interrupted. Returns the run.
   */
  commClose(commId: string, data: unknown): IRun | null {
    const late = this._late.get(commId);
    this._late.delete(commId);
    const run = this._open.get(commId) ?? late;
    if (!run) {
      return null;
    }
    const summary = parseSummary(data);
    if (!this._open.has(commId)) {
      // Ended here without its summary (a new run of the cell started first, or no summary came
      // in time); now it came: the row shows exactly its figures and how it ended.
      if (summary) {
        run.measurement = summary.measurement;
        run.status = summary.status;
        run.note = null;
        this._emitChanged();
      }
      return run;
    }
    if (summary) {
      run.measurement = summary.measurement;
      if (summary.advice) {
        this._advice = summary.advice; // the latest forecast-based advice wins
      }
      if (summary.history) {
        // The latest word on the history file wins (it recovers, or breaks, between runs).
        this._historyFault = summary.history.ok ? null : summary.history;
      }
      this._end(run, summary.status, null);
      if (summary.measurement.pue !== null) {
        this._lastPue = summary.measurement.pue;
      }
    } else {
      this._end(run, 'interrupted', 'the comm closed without a summary');
    }
    this._emitChanged();
    return run;
  }

  /** Mark one open run interrupted (e.g. its summary never came). Returns whether it was open. */
  expire(run: IRun, note: string): boolean {
    if (run.status !== 'running') {
      return false;
    }
    this._end(run, 'interrupted', note);
    this._emitChanged();
    return true;
  }

  /**
   * The kernel restarted, died or was replaced: open runs will never close, queued cells will
   * never run, and the new kernel has not loaded carbonlab yet.
   */
  interruptAll(note: string): void {
    for (const run of [...this._open.values()]) {
      this._end(run, 'interrupted', note);
    }
    for (const [id, rec] of this._cells) {
      rec.queued = false;
      if (rec.runs.length === 0) {
        this._cells.delete(id);
      }
    }
    this._active = false;
    this._emitChanged();
  }

  /**
   * Restore a finished run saved in cell metadata by an earlier session. Ignored when the cell
   * already has runs (live data wins). Returns whether it was restored.
   */
  restore(cellId: string, saved: unknown): boolean {
    const s = parseSavedRun(saved);
    if (!s || this._cells.get(cellId)?.runs.length) {
      return false;
    }
    const run = finishedRun(
      s.run_id,
      cellId,
      s.measurement,
      s.error ? 'error' : 'done',
      'saved'
    );
    this._record(cellId).runs.push(run);
    if (!this._latest) {
      this._latest = run;
    }
    this._emitChanged();
    return true;
  }

  /** Status of a cell's row. */
  status(rec: ICellRecord): CellStatus {
    const last = rec.runs[rec.runs.length - 1];
    if (last?.status === 'running') {
      return 'running';
    }
    if (rec.queued) {
      return 'queued';
    }
    return last ? last.status : 'queued';
  }

  /**
   * Records to show, newest first: the cell whose latest run started last is at the top (during
   * "Run All", the running cell), so the latest figures are always in view. Cells queued that have
   * not run yet come after them, in notebook order (`order`, cell ids), and ties (runs restored
   * together) keep notebook order too.
   */
  rows(order: readonly string[]): ICellRecord[] {
    const visible = (r: ICellRecord) =>
      r.runs.length > 0 || (r.queued && this._active);
    const pos = new Map<string, number>();
    order.forEach((id, i) => pos.set(id, i));
    const at = (r: ICellRecord) => pos.get(r.cellId) ?? order.length + r.seq;
    return [...this._cells.values()]
      .filter(visible)
      .sort((a, b) =>
        a.lastStart !== b.lastStart ? b.lastStart - a.lastStart : at(a) - at(b)
      );
  }

  /**
   * The kernel's answer to the hello (hello v2): this notebook's finished runs (from the
   * kernel's memory and history) and the runs in flight, which then go on through
   * `commMsg`/`commClose` under `helloRunKey(run_id)`. Runs this page already has are kept as
   * they are. Returns whether it was a state message.
   */
  applyState(data: unknown): boolean {
    const state = parseState(data);
    if (!state) {
      return false;
    }
    const known = new Set<string>();
    for (const rec of this._cells.values()) {
      for (const r of rec.runs) {
        known.add(r.runId);
      }
    }
    const base = this._startSeq;
    const liveLatest = this._latest?.source === 'live';
    for (const h of state.runs) {
      if (known.has(h.run_id)) {
        continue;
      }
      // Runs read back from a notebook's metadata are replaced by the kernel's record of them.
      const cellId = h.cell_id || `run:${h.run_id}`;
      const rec = this._record(cellId);
      const run = finishedRun(
        h.run_id,
        cellId,
        h.measurement,
        h.status,
        'history'
      );
      rec.runs = rec.runs.filter(r => r.source !== 'saved');
      // Oldest first, before any run this page saw itself.
      const firstLive = rec.runs.findIndex(r => r.source === 'live');
      if (firstLive < 0) {
        rec.runs.push(run);
        rec.lastStart = Math.max(rec.lastStart, base + state.runs.indexOf(h));
      } else {
        rec.runs.splice(firstLive, 0, run);
      }
      if (!liveLatest) {
        this._latest = run;
      }
      if (h.measurement.pue !== null && !liveLatest) {
        this._lastPue = h.measurement.pue;
      }
    }
    this._startSeq = base + state.runs.length;
    // Runs this page saw itself are newer than any the kernel recorded before: they stay on top.
    const seenHere = [...this._cells.values()]
      .filter(r => r.runs.some(x => x.source === 'live'))
      .sort((a, b) => a.lastStart - b.lastStart);
    for (const rec of seenHere) {
      rec.lastStart = this._startSeq++;
    }
    this._active = true;
    if (state.history) {
      this._historyFault = state.history.ok ? null : state.history;
    }
    for (const open of state.running) {
      this.commOpen(helloRunKey(open.run_id), open);
    }
    this._emitChanged();
    return true;
  }

  /**
   * Short runs the kernel sent together on the hello comm (`{kind: 'runs'}`): each is opened and
   * closed at once, as if by its own comm. A run this page already has (from the state, or
   * forwarded while in flight) is not added twice. Returns the runs closed here, or null when
   * `data` is not such a message.
   */
  applyRuns(data: unknown): IRun[] | null {
    const runs = parseRuns(data);
    if (!runs) {
      return null;
    }
    const done: IRun[] = [];
    // One `changed` for the whole batch (a Run All sends up to 200 runs at once), not two a run.
    this._holding++;
    try {
      for (const r of runs) {
        const key = helloRunKey(r.open.run_id);
        this.commOpen(key, r.open);
        const run = this.commClose(key, r.summary);
        if (run) {
          done.push(run);
        }
      }
    } finally {
      this._holding--;
      if (this._holding === 0 && this._held) {
        this._held = false;
        this._changed.emit();
      }
    }
    return done;
  }

  /** Totals over every run (all runs of all cells, including interrupted ones). */
  /** The advice of the latest summary that carried one (a live forecast), else null. */
  get advice(): IAdvice | null {
    return this._advice;
  }

  /** Why the kernel's history is not being saved (from the latest summary), else null. */
  get historyFault(): IHistoryStatus | null {
    return this._historyFault;
  }

  totals(): ITotals {
    const t: ITotals = {
      runs: 0,
      energyJ: 0,
      co2eG: 0,
      co2eMissing: false,
      embodiedCo2eG: null,
      waterL: null,
      modelled: false,
      belowResolution: false,
      live: false
    };
    for (const rec of this._cells.values()) {
      for (const run of rec.runs) {
        t.runs += 1;
        t.energyJ += runEnergyJ(run);
        const co2 = runCo2eG(run);
        if (co2 === null) {
          t.co2eMissing ||= run.lastSample !== null || run.measurement !== null;
        } else {
          t.co2eG += co2;
        }
        const m = run.measurement;
        if (m?.embodied_co2e_g !== null && m?.embodied_co2e_g !== undefined) {
          t.embodiedCo2eG = (t.embodiedCo2eG ?? 0) + m.embodied_co2e_g;
        }
        if (m?.water_l !== null && m?.water_l !== undefined) {
          t.waterL = (t.waterL ?? 0) + m.water_l;
        }
        t.modelled ||= runIsModelled(run);
        t.belowResolution ||= runBelowResolution(run);
        t.live ||= run.status === 'running';
      }
    }
    return t;
  }

  /** Devices, methods and intensity of the latest run, for the "how measured" line. */
  howMeasured(): IHowMeasured | null {
    const run = this._latest;
    if (!run) {
      return null;
    }
    const devices = run.devices.length
      ? run.devices
      : (run.measurement?.components ?? []).map(c => ({
          kind: c.kind,
          device: c.device,
          name: c.name ?? '',
          method: c.method,
          scope: c.scope
        }));
    const span =
      run.lastSample && run.firstSampleT !== null
        ? run.lastSample.t - run.firstSampleT
        : 0;
    return {
      devices,
      methods: runMethods(run),
      intensity: run.measurement?.intensity ?? run.zone,
      // While a run goes on, the PUE its open message said, else the last one known.
      pue: run.measurement?.pue ?? run.pue ?? this._lastPue,
      sampleCount: run.sampleCount,
      sampleSpanS: span,
      components: run.measurement?.components ?? []
    };
  }

  /** Forget everything (e.g. the user cleared the sidebar). */
  clear(): void {
    this._cells.clear();
    this._open.clear();
    this._latest = null;
    this._emitChanged();
  }

  private _record(cellId: string): ICellRecord {
    let rec = this._cells.get(cellId);
    if (!rec) {
      rec = {
        cellId,
        runs: [],
        queued: false,
        seq: this._seq++,
        lastStart: -1
      };
      this._cells.set(cellId, rec);
    }
    return rec;
  }

  private _end(run: IRun, status: RunStatus, note: string | null): void {
    run.status = status;
    run.note = note;
    run.closedAt = this._now();
    for (const [commId, r] of this._open) {
      if (r === run) {
        this._open.delete(commId);
        if (note !== null) {
          // Ended without its summary: one may still come (see commClose). Bounded.
          this._late.set(commId, run);
          if (this._late.size > 200) {
            this._late.delete(this._late.keys().next().value as string);
          }
        }
      }
    }
  }

  private _hasRun(runId: string): boolean {
    for (const rec of this._cells.values()) {
      if (rec.runs.some(r => r.runId === runId)) {
        return true;
      }
    }
    return false;
  }

  private _now: () => number;
  private _maxPoints: number;
  private _cells = new Map<string, ICellRecord>();
  private _open = new Map<string, IRun>();
  private _late = new Map<string, IRun>();
  private _startSeq = 0;
  private _lastPue: number | null = null;
  private _latest: IRun | null = null;
  private _advice: IAdvice | null = null;
  private _historyFault: IHistoryStatus | null = null;
  private _active = false;
  private _seq = 0;
  /** Emit `changed`, or only note it while a batch is being applied (see applyRuns). */
  private _emitChanged(): void {
    if (this._holding > 0) {
      this._held = true;
      return;
    }
    this._changed.emit();
  }

  private _changed = new Signal<this, void>(this);
  private _holding = 0;
  private _held = false;
}
