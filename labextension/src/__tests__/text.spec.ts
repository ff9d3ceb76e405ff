import { nullTranslator } from '@jupyterlab/translation';

import { NotebookCarbonModel } from '../model';
import { PROTOCOL_VERSION } from '../protocol';
import {
  clusterBreakdown,
  clusterLines,
  hostDetail,
  runClusterHosts,
  statusKey,
  statusText,
  summaryText,
  ZONE_PATTERN
} from '../text';

const trans = nullTranslator.load('carbonlab');

const devices = [
  {
    kind: 'cpu',
    device: 'package-0',
    name: '',
    method: 'cpu-time-model',
    scope: 'process'
  }
];
const zone = {
  gco2e_per_kwh: 56,
  zone: 'FR',
  source: 'Ember 2024 (static)',
  at: null
};

function open(runId: string, cellId: string) {
  return {
    v: PROTOCOL_VERSION,
    run_id: runId,
    cell_id: cellId,
    t0: 1000,
    devices,
    zone
  };
}

function summary(energy: number, co2: number | null) {
  return {
    kind: 'summary',
    error: false,
    measurement: {
      schema: 'carbonlab.measurement/1',
      label: 'cell',
      started_at: '2026-11-21T10:00:00Z',
      duration_s: 2,
      energy_j: energy,
      co2e_g: co2,
      embodied_co2e_g: null,
      water_l: null,
      below_resolution: false,
      components: [
        {
          kind: 'cpu',
          device: 'package-0',
          energy_j: energy,
          method: 'cpu-time-model',
          scope: 'process',
          params: { w_per_core: 4 }
        }
      ],
      intensity: zone,
      pue: 1.2
    }
  };
}

/** A live sample of a running cell: 12.5 W, 30 J so far. */
const SAMPLE = {
  kind: 'sample',
  t: 1001,
  power_w: { cpu: 12.5 },
  energy_j: { cpu: 30 },
  co2e_g: 0.0005
};

function modelAt(now: { t: number }): NotebookCarbonModel {
  return new NotebookCarbonModel({ now: () => now.t });
}

describe('statusText', () => {
  it('says carbonlab and how to start when nothing was measured', () => {
    const s = statusText(modelAt({ t: 0 }), trans);
    expect(s.state).toBe('idle');
    expect(s.text).toBe('carbonlab');
    expect(s.title).toMatch(/not loaded/);
    expect(statusText(null, trans).title).toMatch(/open a notebook/);
  });

  it('shows the running cell power and energy, then the notebook total', () => {
    const now = { t: 1_000_000 };
    const model = modelAt(now);
    model.commOpen('c1', open('r1', 'a'));
    model.commMsg('c1', SAMPLE);
    const live = statusText(model, trans);
    expect(live.state).toBe('running');
    expect(live.text).toBe('⚡ 12.5 W · 30 J');
    model.commClose('c1', summary(42, 0.00065));
    model.commOpen('c2', open('r2', 'b'));
    model.commClose('c2', summary(8, 0.00012));
    const idle = statusText(model, trans);
    expect(idle.state).toBe('total');
    expect(idle.text).toBe('Σ 50 J · 770 µgCO2e');
    expect(idle.title).toMatch(/2 measured runs/);
  });

  it('leaves CO2e out when some run has no carbon intensity', () => {
    const model = modelAt({ t: 0 });
    model.commOpen('c1', open('r1', 'a'));
    model.commClose('c1', summary(5, null));
    expect(statusText(model, trans).text).toBe('Σ 5 J');
  });
});

describe('statusKey', () => {
  it('changes when a run starts, ends or is cleared, not on a sample', () => {
    const model = modelAt({ t: 1_000_000 });
    expect(statusKey(null)).toBe('none');
    const idle = statusKey(model);
    model.commOpen('c1', open('r1', 'a'));
    const running = statusKey(model);
    expect(running).not.toBe(idle);
    model.commMsg('c1', SAMPLE);
    expect(statusKey(model)).toBe(running);
    model.commClose('c1', summary(42, 0.00065));
    const done = statusKey(model);
    expect(done).not.toBe(running);
    // Clear: back to the idle key, so the status bar drops the old total at once.
    model.clear();
    expect(statusKey(model)).toBe(idle);
    expect(statusText(model, trans).text).toBe('carbonlab');
  });
});

describe('summaryText', () => {
  it('is null with no runs, else totals with how they were measured', () => {
    const model = modelAt({ t: 0 });
    expect(summaryText('nb.ipynb', model)).toBeNull();
    model.commOpen('c1', open('r1', 'a'));
    model.commClose('c1', summary(42, 0.00065));
    const text = summaryText('nb.ipynb', model) ?? '';
    expect(text.split('\n')).toEqual([
      'carbonlab · nb.ipynb · 1 measured run · 42 J · 650 µgCO2e',
      'how measured: cpu-time-model',
      'grid: FR 56 gCO2e/kWh (Ember 2024 (static)) · PUE 1.2',
      'some figures come from a model (CPU time or resident memory), not a meter'
    ]);
  });
});

describe('ZONE_PATTERN', () => {
  it.each(['FR', 'US-CAL-CISO', 'aws:eu-west-3', 'gcp:europe-west1'])(
    'accepts %s',
    z => expect(ZONE_PATTERN.test(z)).toBe(true)
  );
  it.each(['', 'FR; import os', "FR')", 'a b', '-FR', 'x'.repeat(80)])(
    'refuses %p',
    z => expect(ZONE_PATTERN.test(z)).toBe(false)
  );
});

/** A remote component as the kernel sends it (a null host: a local one). */
const comp = (
  kind: string,
  energy: number,
  host: string | null,
  worker = 'tcp://10.0.0.1:1',
  scope = 'process'
) => ({
  kind,
  device: kind,
  energy_j: energy,
  method: 'cpu-time-model',
  scope,
  location: host === null ? undefined : { engine: 'dask', worker, host }
});

describe('clusterBreakdown', () => {
  it('is empty without cluster components', () => {
    expect(clusterBreakdown([comp('cpu', 5, null)])).toEqual([]);
  });

  it('sums per host, counts workers, largest first, and says when a share', () => {
    const rows = clusterBreakdown([
      comp('cpu', 5, null),
      comp('cpu', 1, 'a', 'w1'),
      comp('cpu', 2, 'a', 'w2', 'tasks'),
      comp('gpu', 10, 'b', 'w3'),
      comp('cpu', 3, 'b', 'w3')
    ]);
    expect(rows).toEqual([
      {
        engine: 'dask',
        host: 'b',
        energyJ: 13,
        workers: 1,
        kinds: ['gpu', 'cpu'],
        share: false
      },
      {
        engine: 'dask',
        host: 'a',
        energyJ: 3,
        workers: 2,
        kinds: ['cpu'],
        share: true
      }
    ]);
    expect(clusterLines([comp('cpu', 2, 'a', 'w2', 'tasks')], trans)).toEqual([
      "dask a: 2 J (1 worker: cpu; this client's share)"
    ]);
  });
});

describe("runClusterHosts and hostDetail: a row's details (issue 17)", () => {
  const live = [
    {
      engine: 'dask',
      host: 'node-a',
      workers: 2,
      energy_j: 1234.5,
      power_w: 41.26
    }
  ];

  function runWith(hostsLive: object[] | null, components: object[] | null) {
    const model = new NotebookCarbonModel({ now: () => 0 });
    model.commOpen('c1', open('r1', 'a'));
    model.commMsg('c1', {
      kind: 'sample',
      t: 1,
      power_w: { cpu: 5, cluster: 41.26 },
      energy_j: { cpu: 5, cluster: 1234.5 },
      co2e_g: null,
      ...(hostsLive ? { cluster_hosts: hostsLive } : {})
    });
    const run = model.openRun('c1')!;
    if (components) {
      model.commClose('c1', {
        kind: 'summary',
        error: false,
        measurement: {
          label: 'In [1]',
          duration_s: 3,
          energy_j: 20,
          co2e_g: null,
          components,
          intensity: null,
          pue: null
        }
      });
    }
    return run;
  }

  it('gives a running run its live hosts, with power', () => {
    const hosts = runClusterHosts(runWith(live, null));
    expect(hosts).toEqual([
      {
        engine: 'dask',
        host: 'node-a',
        workers: 2,
        energyJ: 1234.5,
        powerW: 41.26,
        kinds: [],
        share: false,
        live: true
      }
    ]);
    const d = hostDetail(hosts[0], trans);
    expect(d.name).toBe('dask node-a');
    expect(d.workers).toBe('2 workers');
    expect(d.energy).toBe('1235 J'); // format.ts: whole numbers from 100 up
    expect(d.power).toBe('41.3 W');
    expect(d.text).toBe('dask node-a: 1235 J, 41.3 W now (2 workers)');
    expect(hostDetail(hosts[0], trans, 'Wh').energy).toBe('0.343 Wh');
  });

  it("gives a finished run its hosts from the summary's components", () => {
    const run = runWith(live, [
      { kind: 'cpu', device: 'k', energy_j: 5, method: 'x', scope: 'process' },
      comp('cpu', 6, 'node-a', 'tcp://a:1', 'tasks'),
      comp('cpu', 3, 'node-a', 'tcp://a:2', 'tasks'),
      comp('gpu', 2.5, 'node-b', 'tcp://b:1')
    ]);
    const hosts = runClusterHosts(run);
    expect(hosts.map(h => [h.host, h.workers, h.energyJ, h.powerW])).toEqual([
      ['node-a', 2, 9, null],
      ['node-b', 1, 2.5, null]
    ]);
    expect(hosts[0].share).toBe(true);
    expect(hosts[0].live).toBe(false);
    const d = hostDetail(hosts[0], trans, 'J');
    expect(d.text).toBe('dask node-a: 9 J (2 workers)');
    expect(d.power).toBeNull();
    expect(d.title).toBe("This client's share of the host (cpu)");
  });

  it('is empty for a run without a cluster, live or finished', () => {
    expect(runClusterHosts(runWith(null, null))).toEqual([]);
    expect(
      runClusterHosts(
        runWith(null, [
          {
            kind: 'cpu',
            device: 'k',
            energy_j: 5,
            method: 'x',
            scope: 'process'
          }
        ])
      )
    ).toEqual([]);
  });

  it('keeps the last live hosts, without power, for a run that ended without a summary', () => {
    const model = new NotebookCarbonModel({ now: () => 0 });
    model.commOpen('c1', open('r1', 'a'));
    model.commMsg('c1', {
      kind: 'sample',
      t: 1,
      power_w: {},
      energy_j: { cluster: 1234.5 },
      co2e_g: null,
      cluster_hosts: live
    });
    const run = model.commClose('c1', undefined)!;
    expect(run.status).toBe('interrupted');
    expect(
      runClusterHosts(run).map(h => [h.host, h.energyJ, h.powerW])
    ).toEqual([['node-a', 1234.5, null]]);
  });
});
