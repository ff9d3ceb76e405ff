/**
 * The live sidebar protocol: the one place on the TypeScript side that knows the comm target,
 * the protocol version and the message shapes.
 *
 * Python side: carbonlab/jupyter/comm.py. Keep both in step; DESIGN.md ("Live sidebar protocol"
 * and "Measurement JSON") is the contract they both follow.
 *
 * The kernel opens one comm per measured cell run:
 *   open   {v, run_id, cell_id, t0, label, labelled, devices, zone, pue}
 *   msg    {kind: 'sample', t, power_w, energy_j, co2e_g}      (at most 4 Hz)
 *   close  {kind: 'summary', measurement, error, status, advice, history}
 * (`labelled`, `pue` and `status` were added later; messages without them are still understood.)
 *
 * The sidebar opens one comm the other way, per kernel where carbonlab runs (HELLO_TARGET), so
 * that the kernel knows a sidebar shows its cells (it keeps its in-cell widget small then).
 *
 * Everything here comes from a kernel, so the parsers below accept `unknown` and return `null`
 * for anything that does not have the expected shape; nothing from the kernel is ever rendered
 * as HTML.
 */

/** Comm target the kernel opens for each measured cell run. */
export const COMM_TARGET = 'carbonlab.cell';

/** Version of the comm protocol (the `v` field of the open data). */
export const PROTOCOL_VERSION = 1;

/**
 * Version of the hello exchange. v1: the sidebar opens the hello, nothing more. v2: the hello
 * says whether the panel is visible, later `{kind: 'visible'}` messages say when that changes,
 * and the kernel answers with this notebook's runs (`{kind: 'state'}`) and forwards the samples
 * and summaries of runs that were in flight (`{kind: 'sample' | 'summary', run_id, ...}`).
 * Short runs (under about 0.25 s) get no comm of their own: the kernel sends them to v2 sidebars
 * together, on the hello comm, as `{kind: 'runs', runs: [{open, summary}, ...]}` (oldest first;
 * see `parseRuns`). Runs that last longer keep their own comm, as below.
 * Cell comms stay v1: fields were only added (labelled, pue, status), meanings kept.
 */
export const HELLO_VERSION = 2;

/**
 * Comm target the sidebar opens to a kernel where carbonlab runs, and keeps open while it tracks
 * that kernel: a kernel cannot see which targets a frontend registered, so the sidebar says it is
 * there (carbonlab/jupyter/widget.py, `SidebarPresence`).
 */
export const HELLO_TARGET = 'carbonlab.hello';

/**
 * Comm target the sidebar registers and the kernel opens once, when `%load_ext carbonlab` runs
 * (then closes): a hello sent before carbonlab was loaded found no target, and short runs send no
 * comm of their own, so this is how the sidebar learns to say hello again.
 */
export const ANNOUNCE_TARGET = 'carbonlab.kernel';

/** Data of the sidebar's hello (a type, not an interface, so that it is a JSON object). */
export type HelloData = {
  v: number;
  sidebar: true;
  /** Whether the panel is showing (v2): the kernel keeps its in-cell widget small only then. */
  visible: boolean;
};

/** The hello the sidebar sends (see HELLO_TARGET). */
export function helloData(visible: boolean): HelloData {
  return { v: HELLO_VERSION, sidebar: true, visible };
}

/** Sidebar → kernel on the hello comm (v2): the panel was shown or hidden. */
export function visibilityMsg(visible: boolean): {
  kind: 'visible';
  visible: boolean;
} {
  return { kind: 'visible', visible };
}

/** Schema string of the Measurement JSON in a summary. */
export const MEASUREMENT_SCHEMA = 'carbonlab.measurement/1';

/**
 * Mimetype that marks the kernel's live widget output (with `{v, run_id, label}`): when the kernel
 * restarts or dies mid-run the sidebar replaces such outputs by a static summary
 * (carbonlab/jupyter/widget.py LIVE_MIMETYPE).
 */
export const LIVE_MIMETYPE = 'application/vnd.carbonlab.live+json';

/** Cell metadata key under which finished runs are saved (when the setting is on). */
export const METADATA_KEY = 'carbonlab';

/** Code the sidebar runs (silently) to load the IPython extension in a kernel. */
export const LOAD_EXTENSION_CODE = '%load_ext carbonlab';

/** The Python module the kernel must be able to import. */
export const PYTHON_MODULE = 'carbonlab';

/** Measurement methods, as the Python meters name them. */
export const METHODS = {
  nvmlEnergyCounter: 'nvml-energy-counter',
  nvmlPower: 'nvml-power',
  rapl: 'rapl',
  cpuTimeModel: 'cpu-time-model',
  ramModel: 'ram-model'
} as const;

/** Methods that estimate energy from a model instead of reading a meter. */
export const MODEL_METHODS: ReadonlySet<string> = new Set([
  METHODS.cpuTimeModel,
  METHODS.ramModel
]);

/** Component kinds: one power and energy figure per kind in each sample. */
export type ComponentKind = 'gpu' | 'cpu' | 'ram';

/** One measured device, as announced in the open data. */
export interface IDevice {
  kind: string;
  device: string;
  name: string;
  method: string;
  scope: string;
}

/** Carbon intensity used for CO2e (the `zone` of the open data, `intensity` of a Measurement). */
export interface IIntensity {
  gco2e_per_kwh: number | null;
  zone: string | null;
  source: string | null;
  at: string | null;
}

/** Data of the comm open: one per measured cell run. */
export interface IOpenData {
  v: number;
  run_id: string;
  cell_id: string;
  /** Unix seconds at the start of the run (kernel clock). */
  t0: number;
  label: string;
  /** The user gave the label (`%%carbon --label`); null from a v1 kernel (not said). */
  labelled: boolean | null;
  devices: IDevice[];
  zone: IIntensity | null;
  /** PUE the live CO2e uses (v2); null when not said. */
  pue: number | null;
}

/** A live sample, sent while the cell runs. */
export interface ISample {
  kind: 'sample';
  /** Seconds since `t0`. */
  t: number;
  power_w: Record<string, number>;
  energy_j: Record<string, number>;
  /** Null when the kernel knows no carbon intensity yet. */
  co2e_g: number | null;
  /**
   * The `cluster` entry per engine and host (an attached Dask or Ray cluster, its gross); absent
   * without a cluster, or from an older kernel.
   */
  cluster_hosts?: ILiveHost[];
}

/** One host of an attached cluster in a live sample (`cluster_hosts`). */
export interface ILiveHost {
  engine: string;
  host: string;
  /** Workers measured on the host. */
  workers: number;
  /** Gross joules since the run began (every client's work on the host). */
  energy_j: number;
  /** Null until the cluster was polled twice. */
  power_w: number | null;
}

/** One component of a Measurement. */
export interface IComponent {
  kind: string;
  device: string;
  name?: string;
  energy_j: number;
  method: string;
  scope: string;
  params?: Record<string, unknown>;
  /** Where a cluster component was measured (carbonlab.cluster); absent for this kernel's own. */
  location?: IComponentLocation;
}

/** `location` of a remote component: the engine, the worker (or Ray node) and its host. */
export interface IComponentLocation {
  engine: string;
  worker: string;
  host: string;
}

/** Measurement JSON (DESIGN.md "Measurement JSON"); fields may be added, never changed. */
export interface IMeasurement {
  schema: string;
  label: string;
  started_at: string | null;
  duration_s: number;
  energy_j: number;
  co2e_g: number | null;
  embodied_co2e_g: number | null;
  water_l: number | null;
  below_resolution: boolean;
  components: IComponent[];
  intensity: IIntensity | null;
  pue: number | null;
}

/** Data of the comm close. */
/** When the same work would emit least, from a live forecast (carbonlab/footprint/advice.py). */
export interface IAdvice {
  sentence: string;
  saving_pct: number | null;
}

/** Whether the kernel's history file is being written (carbonlab/store.py HistoryFault). */
export interface IHistoryStatus {
  ok: boolean;
  path: string;
  reason: string;
  /** Runs kept in memory, retried by the kernel in the background. */
  pending: number;
  /** Runs given up (too many were waiting). */
  dropped: number;
}

/** How a run ended. */
export type EndStatus = 'done' | 'error' | 'interrupted';

export interface ISummary {
  kind: 'summary';
  measurement: IMeasurement;
  error: boolean;
  /** `status` of a v2 summary (Ctrl-C is interrupted); from `error` for a v1 kernel. */
  status: EndStatus;
  /** Null without a live forecast: the kernel never invents advice. */
  advice: IAdvice | null;
  /** Null when the kernel did not say (an older kernel). */
  history: IHistoryStatus | null;
}

/** One finished run in the kernel's answer to the hello (hello v2). */
export interface IHistoryRun {
  run_id: string;
  cell_id: string;
  status: EndStatus;
  measurement: IMeasurement;
}

/**
 * The kernel's answer to the hello (hello v2): this notebook's latest finished runs, oldest first
 * (from the kernel's memory and its history file), and the runs in flight (their open data; their
 * samples and summary follow on the hello comm, each with its `run_id`).
 */
export interface IState {
  kind: 'state';
  notebook: string;
  runs: IHistoryRun[];
  running: IOpenData[];
  history: IHistoryStatus | null;
}

/** What is saved in cell metadata under METADATA_KEY. */
export interface ISavedRun {
  v: number;
  run_id: string;
  measurement: IMeasurement;
  error: boolean;
}

type Obj = Record<string, unknown>;

function isObj(x: unknown): x is Obj {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function num(x: unknown): number | null {
  return typeof x === 'number' && Number.isFinite(x) ? x : null;
}

function str(x: unknown): string | null {
  return typeof x === 'string' ? x : null;
}

/** A `{name: number}` map; non-finite values are dropped. */
function numMap(x: unknown): Record<string, number> {
  const out: Record<string, number> = {};
  if (isObj(x)) {
    for (const [k, v] of Object.entries(x)) {
      const n = num(v);
      if (n !== null) {
        out[k] = n;
      }
    }
  }
  return out;
}

function parseDevice(x: unknown): IDevice | null {
  if (!isObj(x)) {
    return null;
  }
  return {
    kind: str(x.kind) ?? '?',
    device: str(x.device) ?? String(x.device ?? ''),
    name: str(x.name) ?? '',
    method: str(x.method) ?? '',
    scope: str(x.scope) ?? ''
  };
}

export function parseIntensity(x: unknown): IIntensity | null {
  if (!isObj(x)) {
    return null;
  }
  return {
    gco2e_per_kwh: num(x.gco2e_per_kwh),
    zone: str(x.zone),
    source: str(x.source),
    at: str(x.at)
  };
}

/** Parse comm open data; `null` when it is not a carbonlab run announcement we understand. */
export function parseOpen(x: unknown): IOpenData | null {
  if (!isObj(x)) {
    return null;
  }
  const v = num(x.v);
  const runId = str(x.run_id);
  // A newer major protocol may change meanings: ignore it rather than show wrong figures.
  if (v === null || v > PROTOCOL_VERSION || runId === null) {
    return null;
  }
  const devices = Array.isArray(x.devices)
    ? (x.devices.map(parseDevice).filter(d => d !== null) as IDevice[])
    : [];
  return {
    v,
    run_id: runId,
    cell_id: str(x.cell_id) ?? '',
    t0: num(x.t0) ?? 0,
    label: str(x.label) ?? '',
    labelled: typeof x.labelled === 'boolean' ? x.labelled : null,
    devices,
    zone: parseIntensity(x.zone),
    pue: num(x.pue)
  };
}

/** Parse a comm message; `null` unless it is a sample. */
export function parseSample(x: unknown): ISample | null {
  if (!isObj(x) || x.kind !== 'sample') {
    return null;
  }
  const t = num(x.t);
  if (t === null) {
    return null;
  }
  const sample: ISample = {
    kind: 'sample',
    t,
    power_w: numMap(x.power_w),
    energy_j: numMap(x.energy_j),
    co2e_g: num(x.co2e_g)
  };
  if (Array.isArray(x.cluster_hosts)) {
    sample.cluster_hosts = x.cluster_hosts
      .map(parseLiveHost)
      .filter(h => h !== null) as ILiveHost[];
  }
  return sample;
}

function parseLiveHost(x: unknown): ILiveHost | null {
  if (!isObj(x)) {
    return null;
  }
  const host = str(x.host);
  if (host === null) {
    return null;
  }
  return {
    engine: str(x.engine) ?? '?',
    host,
    workers: Math.max(0, Math.round(num(x.workers) ?? 0)),
    energy_j: num(x.energy_j) ?? 0,
    power_w: num(x.power_w)
  };
}

function parseComponent(x: unknown): IComponent | null {
  if (!isObj(x)) {
    return null;
  }
  return {
    kind: str(x.kind) ?? '?',
    device: str(x.device) ?? String(x.device ?? ''),
    name: str(x.name) ?? undefined,
    energy_j: num(x.energy_j) ?? 0,
    method: str(x.method) ?? '',
    scope: str(x.scope) ?? '',
    params: isObj(x.params) ? x.params : undefined,
    location: isObj(x.location)
      ? {
          engine: str(x.location.engine) ?? '?',
          worker: str(x.location.worker) ?? '?',
          host: str(x.location.host) ?? '?'
        }
      : undefined
  };
}

/** Parse a Measurement JSON object. */
export function parseMeasurement(x: unknown): IMeasurement | null {
  if (!isObj(x)) {
    return null;
  }
  const energy = num(x.energy_j);
  if (energy === null) {
    return null;
  }
  const components = Array.isArray(x.components)
    ? (x.components.map(parseComponent).filter(c => c !== null) as IComponent[])
    : [];
  return {
    schema: str(x.schema) ?? MEASUREMENT_SCHEMA,
    label: str(x.label) ?? '',
    started_at: str(x.started_at),
    duration_s: num(x.duration_s) ?? 0,
    energy_j: energy,
    co2e_g: num(x.co2e_g),
    embodied_co2e_g: num(x.embodied_co2e_g),
    water_l: num(x.water_l),
    below_resolution: x.below_resolution === true,
    components,
    intensity: parseIntensity(x.intensity),
    pue: num(x.pue)
  };
}

/** Parse comm close data; `null` unless it is a summary with a measurement. */
export function parseSummary(x: unknown): ISummary | null {
  if (!isObj(x) || x.kind !== 'summary') {
    return null;
  }
  const measurement = parseMeasurement(x.measurement);
  if (measurement === null) {
    return null;
  }
  const error = x.error === true;
  const status = parseEndStatus(x.status, error);
  return {
    kind: 'summary',
    measurement,
    error,
    status,
    advice: parseAdvice(x.advice),
    history: parseHistory(x.history)
  };
}

/** The history status of a summary, or null when absent or malformed. */
export function parseHistory(x: unknown): IHistoryStatus | null {
  if (!isObj(x) || typeof x.ok !== 'boolean') {
    return null;
  }
  return {
    ok: x.ok,
    path: str(x.path) ?? '',
    reason: str(x.reason) ?? '',
    pending: num(x.pending) ?? 0,
    dropped: num(x.dropped) ?? 0
  };
}

/** The advice of a summary, or null when absent or malformed. */
export function parseAdvice(x: unknown): IAdvice | null {
  if (!isObj(x)) {
    return null;
  }
  const sentence = str(x.sentence);
  if (!sentence) {
    return null;
  }
  return { sentence, saving_pct: num(x.saving_pct) ?? null };
}

/** Parse what a previous session saved in cell metadata. */
export function parseSavedRun(x: unknown): ISavedRun | null {
  if (!isObj(x)) {
    return null;
  }
  const measurement = parseMeasurement(x.measurement);
  if (measurement === null) {
    return null;
  }
  return {
    v: num(x.v) ?? PROTOCOL_VERSION,
    run_id: str(x.run_id) ?? '',
    measurement,
    error: x.error === true
  };
}

function parseEndStatus(x: unknown, error: boolean): EndStatus {
  return x === 'done' || x === 'error' || x === 'interrupted'
    ? x
    : error
      ? 'error'
      : 'done';
}

/** Parse the kernel's answer to the hello; `null` unless it is a state message. */
export function parseState(x: unknown): IState | null {
  if (!isObj(x) || x.kind !== 'state') {
    return null;
  }
  const runs: IHistoryRun[] = [];
  for (const r of Array.isArray(x.runs) ? x.runs : []) {
    if (!isObj(r)) {
      continue;
    }
    const measurement = parseMeasurement(r.measurement);
    const runId = str(r.run_id);
    if (!measurement || !runId) {
      continue;
    }
    runs.push({
      run_id: runId,
      cell_id: str(r.cell_id) ?? '',
      status: parseEndStatus(r.status, false),
      measurement
    });
  }
  const running = (Array.isArray(x.running) ? x.running : [])
    .map(parseOpen)
    .filter(o => o !== null) as IOpenData[];
  return {
    kind: 'state',
    notebook: str(x.notebook) ?? '',
    runs,
    running,
    history: parseHistory(x.history)
  };
}

/** The run id of a message forwarded on the hello comm (hello v2), else null. */
export function forwardedRunId(x: unknown): string | null {
  return isObj(x) ? str(x.run_id) : null;
}

/** One short run sent batched on the hello comm: its open message and its summary. */
export interface IBatchedRun {
  open: IOpenData;
  summary: unknown;
}

/**
 * Parse `{kind: 'runs', runs: [{open, summary}, ...]}` (short runs batched on the hello comm,
 * hello v2); `null` unless it is such a message. Entries without a valid open message are
 * dropped; the summary is parsed where it is applied (`parseSummary`).
 */
export function parseRuns(x: unknown): IBatchedRun[] | null {
  if (!isObj(x) || x.kind !== 'runs' || !Array.isArray(x.runs)) {
    return null;
  }
  const out: IBatchedRun[] = [];
  for (const r of x.runs) {
    if (!isObj(r)) {
      continue;
    }
    const open = parseOpen(r.open);
    if (open) {
      out.push({ open, summary: r.summary });
    }
  }
  return out;
}
