/**
 * Texts of the status-bar item and the "copy summary" command: pure functions of a notebook's
 * model (no DOM, no JupyterLab widgets), so jest tests them directly.
 */
import { TranslationBundle } from '@jupyterlab/translation';

import {
  Co2Unit,
  EnergyUnit,
  formatCo2,
  formatEnergy,
  formatNumber,
  formatPower
} from './format';
import { IRun, NotebookCarbonModel, runEnergyJ, runPowerW } from './model';
import { IComponent } from './protocol';

/** What the item shows, and its tooltip. */
export interface IStatusText {
  text: string;
  title: string;
  /** 'running' while a run is open, 'total' with finished runs, 'idle' with none. */
  state: 'running' | 'total' | 'idle';
}

/** The item's text for one notebook's model (null model: no notebook is active). */
export function statusText(
  model: NotebookCarbonModel | null,
  trans: TranslationBundle,
  units: { energy: EnergyUnit; co2: Co2Unit } = { energy: 'auto', co2: 'auto' }
): IStatusText {
  if (!model) {
    return {
      text: 'carbonlab',
      title: trans.__('carbonlab: open a notebook'),
      state: 'idle'
    };
  }
  const now = model.now();
  const running = model.runningRun();
  if (running) {
    const power = runPowerW(running, now);
    const energy = formatEnergy(runEnergyJ(running), units.energy);
    const text =
      power === null ? `⚡ ${energy}` : `⚡ ${formatPower(power)} · ${energy}`;
    return {
      text,
      title: trans.__(
        'carbonlab: the running cell (power now, energy so far). Click for the sidebar.'
      ),
      state: 'running'
    };
  }
  const t = model.totals();
  if (t.runs === 0) {
    return {
      text: 'carbonlab',
      title: model.active
        ? trans.__('carbonlab: no measured cell yet. Click for the sidebar.')
        : trans.__(
            'carbonlab is not loaded in this kernel. Click for the sidebar.'
          ),
      state: 'idle'
    };
  }
  const parts = [`Σ ${formatEnergy(t.energyJ, units.energy)}`];
  if (!t.co2eMissing) {
    parts.push(formatCo2(t.co2eG, units.co2));
  }
  return {
    text: parts.join(' · '),
    title: trans._n(
      'carbonlab: %1 measured run of this notebook. Click for the sidebar.',
      'carbonlab: %1 measured runs of this notebook. Click for the sidebar.',
      t.runs
    ),
    state: 'total'
  };
}

/**
 * What kind of text the item shows, as a string that changes when a run starts or ends or the
 * runs are cleared, but not while only a running cell's figures move. The status bar renders at
 * once when it changes and throttles the rest.
 */
export function statusKey(model: NotebookCarbonModel | null): string {
  if (!model) {
    return 'none';
  }
  const running = model.runningRun();
  if (running) {
    return `running:${running.runId}`;
  }
  return `done:${model.totals().runs}`;
}

/** Zones are codes like FR, US-CAL-CISO, aws:eu-west-3: nothing else is sent to the kernel. */
export const ZONE_PATTERN = /^[A-Za-z0-9][A-Za-z0-9:_.-]{0,63}$/;

/** The notebook's totals as one paragraph of plain text, for the clipboard. */
export function summaryText(
  title: string,
  model: NotebookCarbonModel
): string | null {
  const t = model.totals();
  if (t.runs === 0) {
    return null;
  }
  const runs = t.runs === 1 ? '1 measured run' : `${t.runs} measured runs`;
  const parts = [`carbonlab · ${title} · ${runs} · ${formatEnergy(t.energyJ)}`];
  parts.push(
    t.co2eMissing
      ? 'CO2e unknown for some runs (no carbon intensity)'
      : formatCo2(t.co2eG)
  );
  if (t.embodiedCo2eG !== null) {
    parts.push(`embodied ${formatCo2(t.embodiedCo2eG)}`);
  }
  const lines = [parts.join(' · ')];
  const how = model.howMeasured();
  if (how) {
    if (how.methods.length) {
      lines.push(`how measured: ${how.methods.join(', ')}`);
    }
    const z = how.intensity;
    if (z && z.gco2e_per_kwh !== null) {
      const pue = how.pue === null ? '' : ` · PUE ${formatNumber(how.pue)}`;
      lines.push(
        `grid: ${z.zone ?? 'unknown zone'} ${formatNumber(z.gco2e_per_kwh)} gCO2e/kWh (${z.source ?? 'unknown source'})${pue}`
      );
    }
  }
  if (t.modelled) {
    lines.push(
      'some figures come from a model (CPU time or resident memory), not a meter'
    );
  }
  if (t.live) {
    lines.push('a run is still measuring: these totals are partial');
  }
  return lines.join('\n');
}

/** One host of a cluster in the breakdown. */
export interface IHostEnergy {
  engine: string;
  host: string;
  energyJ: number;
  workers: number;
  kinds: string[];
  /** Some figure is this client's share of the host's (scope `tasks`), not the host's gross. */
  share: boolean;
}

/**
 * Energy of a run's cluster components (those with a `location`) per engine and host, largest
 * first; empty when the run used no cluster.
 */
export function clusterBreakdown(
  components: readonly IComponent[]
): IHostEnergy[] {
  const byHost = new Map<string, IHostEnergy & { workerSet: Set<string> }>();
  for (const c of components) {
    if (!c.location) {
      continue;
    }
    const key = `${c.location.engine}\u0000${c.location.host}`;
    let h = byHost.get(key);
    if (!h) {
      h = {
        engine: c.location.engine,
        host: c.location.host,
        energyJ: 0,
        workers: 0,
        kinds: [],
        share: false,
        workerSet: new Set()
      };
      byHost.set(key, h);
    }
    h.energyJ += c.energy_j;
    h.workerSet.add(c.location.worker);
    if (!h.kinds.includes(c.kind)) {
      h.kinds.push(c.kind);
    }
    h.share ||= c.scope === 'tasks';
  }
  return [...byHost.values()]
    .map(({ workerSet, ...h }) => ({ ...h, workers: workerSet.size }))
    .sort((a, b) => b.energyJ - a.energyJ);
}

/** The breakdown as one line per host, e.g. `dask host-a: 12.3 J (2 workers: cpu, gpu; this client's share)`. */
export function clusterLines(
  components: readonly IComponent[],
  trans: TranslationBundle,
  unit: EnergyUnit = 'auto'
): string[] {
  return clusterBreakdown(components).map(h => {
    const workers = trans._n('%1 worker', '%1 workers', h.workers);
    const share = h.share ? trans.__("; this client's share") : '';
    return `${h.engine} ${h.host}: ${formatEnergy(h.energyJ, unit)} (${workers}: ${h.kinds.join(', ')}${share})`;
  });
}

/** One host of a run's cluster, as the row's details list it. */
export interface IRunHost {
  engine: string;
  host: string;
  workers: number;
  energyJ: number;
  /** Power now (a running run's latest poll); null once the run ended, or before two polls. */
  powerW: number | null;
  /** Meter kinds (from a finished run's components); empty for live figures. */
  kinds: string[];
  /** Some figure is this client's share of the host (scope `tasks`), not the host's gross. */
  share: boolean;
  /** From the live polls (the host's gross, every client's work), not from the summary. */
  live: boolean;
}

/**
 * A run's cluster per engine and host: from its Measurement's components with a `location` once
 * it has one (`clusterBreakdown`), else the latest live sample's `cluster_hosts` (a run still
 * running, or one that ended without a summary). Empty when the run used no cluster.
 */
export function runClusterHosts(run: IRun): IRunHost[] {
  if (run.measurement) {
    return clusterBreakdown(run.measurement.components).map(h => ({
      ...h,
      powerW: null,
      live: false
    }));
  }
  return (run.clusterHosts ?? []).map(h => ({
    engine: h.engine,
    host: h.host,
    workers: h.workers,
    energyJ: h.energy_j,
    powerW: run.status === 'running' ? h.power_w : null,
    kinds: [],
    share: false,
    live: true
  }));
}

/** The texts of one host in the row's details. */
export interface IHostDetail {
  /** `dask host-a` */
  name: string;
  /** `2 workers` */
  workers: string;
  energy: string;
  /** `40 W`, or null when no power is known (a finished run, or before two polls). */
  power: string | null;
  /** Tooltip: what the figure covers. */
  title: string;
  /** The whole line, for screen readers and copying. */
  text: string;
}

/** One host of `runClusterHosts` in words, with the project's formatting rule (format.ts). */
export function hostDetail(
  h: IRunHost,
  trans: TranslationBundle,
  unit: EnergyUnit = 'auto'
): IHostDetail {
  const name = `${h.engine} ${h.host}`;
  const workers = trans._n('%1 worker', '%1 workers', h.workers);
  const energy = formatEnergy(h.energyJ, unit);
  const power = h.powerW === null ? null : formatPower(h.powerW);
  let title: string;
  if (h.live) {
    title = trans.__(
      "The whole host (every client's work) since the cell began, from the latest poll; this client's share comes when the cell ends"
    );
  } else if (h.share) {
    title = trans.__(
      "This client's share of the host (%1)",
      h.kinds.join(', ')
    );
  } else {
    title = trans.__('The host (%1)', h.kinds.join(', '));
  }
  const text = power
    ? trans.__('%1: %2, %3 now (%4)', name, energy, power, workers)
    : trans.__('%1: %2 (%3)', name, energy, workers);
  return { name, workers, energy, power, title, text };
}
