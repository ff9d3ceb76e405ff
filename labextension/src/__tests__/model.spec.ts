import {
  helloRunKey,
  isUserLabel,
  NotebookCarbonModel,
  runCo2eG,
  runDurationS,
  runEnergyJ,
  runIsModelled,
  runPowerW
} from '../model';
import { COMM_TARGET, PROTOCOL_VERSION } from '../protocol';

const devices = [
  {
    kind: 'gpu',
    device: 'GPU-8f0c',
    name: 'NVIDIA H100 80GB HBM3',
    method: 'nvml-energy-counter',
    scope: 'device'
  },
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

function open(runId: string, cellId: string, extra: object = {}) {
  return {
    v: PROTOCOL_VERSION,
    run_id: runId,
    cell_id: cellId,
    t0: 1000,
    label: `cell ${cellId}`,
    devices,
    zone,
    ...extra
  };
}

function sample(t: number, gpuJ: number, cpuJ = 0) {
  return {
    kind: 'sample',
    t,
    power_w: { gpu: 200, cpu: 10, ram: 1 },
    energy_j: { gpu: gpuJ, cpu: cpuJ, ram: 0 },
    co2e_g: ((gpuJ + cpuJ) / 3.6e6) * 56
  };
}

function summary(energy: number, extra: object = {}, error = false) {
  return {
    kind: 'summary',
    error,
    measurement: {
      schema: 'carbonlab.measurement/1',
      label: 'cell 7',
      started_at: '2026-11-21T10:00:00Z',
      duration_s: 2.41,
      energy_j: energy,
      co2e_g: 0.051,
      embodied_co2e_g: 0.004,
      water_l: 0.0003,
      below_resolution: false,
      components: [
        {
          kind: 'gpu',
          device: 'GPU-8f0c',
          name: 'NVIDIA H100 80GB HBM3',
          energy_j: energy,
          method: 'nvml-energy-counter',
          scope: 'device'
        }
      ],
      intensity: zone,
      pue: 1.0,
      ...extra
    }
  };
}

function makeModel() {
  let clock = 0;
  const model = new NotebookCarbonModel({ now: () => clock });
  return {
    model,
    tick: (ms: number) => {
      clock += ms;
    }
  };
}

describe('protocol constants', () => {
  it('names the comm target once', () => {
    expect(COMM_TARGET).toBe('carbonlab.cell');
  });
});

describe('NotebookCarbonModel: one run', () => {
  it('goes running → done, with energy rising before the summary', () => {
    const { model, tick } = makeModel();
    let changes = 0;
    model.changed.connect(() => changes++);

    model.scheduled('a');
    expect(model.status(model.cell('a')!)).toBe('queued');
    expect(model.commOpen('c1', open('r1', 'a'))).not.toBeNull();
    const rec = model.cell('a')!;
    expect(model.status(rec)).toBe('running');
    expect(model.active).toBe(true);
    expect(model.hasOpenRuns).toBe(true);

    const seen: number[] = [];
    for (let i = 1; i <= 4; i++) {
      tick(250);
      expect(model.commMsg('c1', sample(i * 0.25, i * 50))).toBe(true);
      seen.push(runEnergyJ(rec.runs[0]));
    }
    expect(seen).toEqual([50, 100, 150, 200]);
    expect(runPowerW(rec.runs[0], model.now())).toBe(211);
    expect(runDurationS(rec.runs[0], model.now())).toBe(1);
    expect(rec.runs[0].points).toHaveLength(4);

    const run = model.commClose('c1', summary(611.2));
    expect(run?.status).toBe('done');
    expect(model.status(rec)).toBe('done');
    expect(runEnergyJ(rec.runs[0])).toBe(611.2);
    expect(runDurationS(rec.runs[0], 1e9)).toBe(2.41);
    expect(model.hasOpenRuns).toBe(false);
    expect(model.executed('a', true)).toBeNull();
    expect(model.status(rec)).toBe('done');
    expect(changes).toBeGreaterThanOrEqual(7);
  });

  it('keeps the latest forecast advice and never invents one', () => {
    const { model } = makeModel();
    model.commOpen('c1', open('r1', 'a'));
    model.commClose('c1', summary(5));
    expect(model.advice).toBeNull();
    model.commOpen('c2', open('r2', 'b'));
    const withAdvice = {
      ...summary(5),
      advice: {
        sentence: 'this work would emit 41 % less at 02:00',
        saving_pct: 41
      }
    };
    model.commClose('c2', withAdvice);
    expect(model.advice).toEqual({
      sentence: 'this work would emit 41 % less at 02:00',
      saving_pct: 41
    });
    // a later run without a forecast keeps the last advice; malformed advice is ignored
    model.commOpen('c3', open('r3', 'c'));
    model.commClose('c3', { ...summary(5), advice: { saving_pct: 3 } });
    expect(model.advice?.saving_pct).toBe(41);
  });

  it('keeps the latest history status and forgets a fault once history is saved again', () => {
    const { model } = makeModel();
    model.commOpen('c1', open('r1', 'a'));
    model.commClose('c1', summary(5));
    expect(model.historyFault).toBeNull(); // an older kernel says nothing: no fault invented
    model.commOpen('c2', open('r2', 'b'));
    const fault = {
      ok: false,
      path: '/home/u/.local/share/carbonlab/history.sqlite',
      reason: 'file is not a database',
      pending: 2,
      dropped: 0
    };
    model.commClose('c2', { ...summary(5), history: fault });
    expect(model.historyFault).toEqual(fault);
    model.commOpen('c3', open('r3', 'c'));
    model.commClose('c3', { ...summary(5), history: { ok: 'no' } }); // malformed: ignored
    expect(model.historyFault).toEqual(fault);
    model.commOpen('c4', open('r4', 'd'));
    model.commClose('c4', { ...summary(5), history: { ok: true } });
    expect(model.historyFault).toBeNull();
  });

  it('marks a summary with error as error', () => {
    const { model } = makeModel();
    model.commOpen('c1', open('r1', 'a'));
    model.commClose('c1', summary(5, {}, true));
    expect(model.status(model.cell('a')!)).toBe('error');
  });

  it('marks a close without summary as interrupted', () => {
    const { model } = makeModel();
    model.commOpen('c1', open('r1', 'a'));
    model.commMsg('c1', sample(0.25, 10));
    const run = model.commClose('c1', {});
    expect(run?.status).toBe('interrupted');
    expect(runEnergyJ(run!)).toBe(10);
  });

  it('returns a run still open at the execute reply, and expires it', () => {
    const { model } = makeModel();
    model.commOpen('c1', open('r1', 'a'));
    const run = model.executed('a', true);
    expect(run).not.toBeNull();
    expect(model.status(model.cell('a')!)).toBe('running');
    expect(model.expire(run!, 'no summary')).toBe(true);
    expect(model.status(model.cell('a')!)).toBe('interrupted');
    expect(model.cell('a')!.runs[0].note).toBe('no summary');
    // A late summary still gives the row its exact figures and end state.
    expect(model.commClose('c1', summary(1))).toBe(run);
    expect(model.status(model.cell('a')!)).toBe('done');
    expect(runEnergyJ(run!)).toBe(1);
    expect(run!.note).toBeNull();
    expect(model.commClose('c1', summary(7))).toBeNull();
  });

  it('shows exactly the summary of a run that a new run of the cell cut short', () => {
    // Issue 14: 16.8 J / 4.88 s in the sidebar vs 17.86 J / 5.03 s in the history: the summary
    // (sent after the cell) arrived after the next run of the cell opened, and was dropped.
    const { model, tick } = makeModel();
    model.commOpen('c1', open('r1', 'a'));
    model.commMsg('c1', sample(4.75, 16.8));
    tick(4880);
    model.commOpen('c2', open('r2', 'a'));
    const first = model.cell('a')!.runs[0];
    expect(first.status).toBe('interrupted');
    model.commClose('c1', summary(17.86, { duration_s: 5.03 }));
    expect(first.status).toBe('done');
    expect(runEnergyJ(first)).toBe(17.86);
    expect(runDurationS(first, 0)).toBe(5.03);
    expect(model.cell('a')!.runs[1].status).toBe('running');
    expect(model.totals().energyJ).toBeCloseTo(17.86);
  });

  it('maps a summary with status interrupted (Ctrl-C) to interrupted, not error', () => {
    const { model } = makeModel();
    model.commOpen('c1', open('r1', 'a'));
    const s = { ...summary(2, {}, true), status: 'interrupted' };
    model.commClose('c1', s);
    expect(model.status(model.cell('a')!)).toBe('interrupted');
    model.commOpen('c2', open('r2', 'b'));
    model.commClose('c2', { ...summary(2, {}, true), status: 'error' });
    expect(model.status(model.cell('b')!)).toBe('error');
  });

  it('interrupts the previous run when a cell runs again before its close', () => {
    const { model } = makeModel();
    model.commOpen('c1', open('r1', 'a'));
    model.commOpen('c2', open('r2', 'a'));
    const rec = model.cell('a')!;
    expect(rec.runs.map(r => r.status)).toEqual(['interrupted', 'running']);
    expect(model.commMsg('c1', sample(1, 1))).toBe(false);
  });
});

describe('NotebookCarbonModel: input it must ignore', () => {
  it('ignores foreign or newer-protocol opens and unknown comms', () => {
    const { model } = makeModel();
    expect(model.commOpen('x', { hello: 1 })).toBeNull();
    expect(model.commOpen('x', open('r', 'a', { v: 2 }))).toBeNull();
    expect(model.commOpen('x', 'text')).toBeNull();
    expect(model.commMsg('nope', sample(1, 1))).toBe(false);
    expect(model.commClose('nope', summary(1))).toBeNull();
    expect(model.rows([])).toEqual([]);
  });

  it('ignores samples that are not samples', () => {
    const { model } = makeModel();
    model.commOpen('c1', open('r1', 'a'));
    expect(model.commMsg('c1', { kind: 'other', t: 1 })).toBe(false);
    expect(model.commMsg('c1', { kind: 'sample', t: 'soon' })).toBe(false);
  });

  it('drops non-numeric figures from a sample', () => {
    const { model } = makeModel();
    model.commOpen('c1', open('r1', 'a'));
    model.commMsg('c1', {
      kind: 'sample',
      t: 1,
      power_w: { gpu: 'hot', cpu: 5 },
      energy_j: { gpu: null, cpu: 7 },
      co2e_g: 0.1
    });
    const run = model.cell('a')!.runs[0];
    expect(runEnergyJ(run)).toBe(7);
    expect(runPowerW(run, 0)).toBe(5);
  });

  it('keys a run without cell id by its run id', () => {
    const { model } = makeModel();
    model.commOpen('c1', open('r9', ''));
    expect(model.cell('run:r9')).toBeDefined();
  });
});

describe('NotebookCarbonModel: queue, rows and totals', () => {
  it('hides queued cells until the kernel is known to measure', () => {
    const { model } = makeModel();
    model.scheduled('a');
    model.scheduled('b');
    expect(model.rows(['a', 'b'])).toEqual([]);
    // A cell that ran without a comm leaves no row.
    model.executed('a', true);
    expect(model.cell('a')).toBeUndefined();
    model.active = true;
    expect(model.rows(['a', 'b']).map(r => r.cellId)).toEqual(['b']);
  });

  it('handles run-all: many cells queued, then run one by one', () => {
    const { model, tick } = makeModel();
    const ids = Array.from({ length: 50 }, (_, i) => `cell-${i}`);
    model.commOpen('c-first', open('r-first', ids[0]));
    ids.slice(1).forEach(id => model.scheduled(id));
    model.commClose('c-first', summary(1));
    model.executed(ids[0], true);
    expect(model.rows(ids)).toHaveLength(50);
    for (const [i, id] of ids.slice(1).entries()) {
      model.commOpen(`c${i}`, open(`r${i}`, id));
      model.commMsg(`c${i}`, sample(0.25, 2));
      tick(10);
      model.commClose(`c${i}`, summary(2));
      model.executed(id, true);
    }
    const rows = model.rows(ids);
    expect(rows.map(r => model.status(r))).toEqual(Array(50).fill('done'));
    expect(model.totals().energyJ).toBe(1 + 49 * 2);
  });

  it('keeps a cell queued behind an earlier run of it', () => {
    const { model } = makeModel();
    model.commOpen('c1', open('r1', 'a'));
    model.commClose('c1', summary(1));
    model.scheduled('a');
    expect(model.status(model.cell('a')!)).toBe('queued');
    // Aborted (an earlier cell failed): back to the last run's status.
    model.executed('a', false);
    expect(model.status(model.cell('a')!)).toBe('done');
  });

  it('lists newest first: the cell that started last on top, queued ones after', () => {
    const { model } = makeModel();
    for (const id of ['c', 'gone', 'a']) {
      model.commOpen(`k-${id}`, open(`r-${id}`, id));
    }
    expect(model.rows(['a', 'b', 'c']).map(r => r.cellId)).toEqual([
      'a',
      'gone',
      'c'
    ]);
    model.scheduled('b');
    model.scheduled('c');
    expect(model.rows(['a', 'b', 'c']).map(r => r.cellId)).toEqual([
      'a',
      'gone',
      'c',
      'b'
    ]);
    model.commOpen('k-c2', open('r-c2', 'c'));
    expect(model.rows(['a', 'b', 'c'])[0].cellId).toBe('c');
  });

  it('keeps the running cell of a 40-cell run-all at the top', () => {
    const { model } = makeModel();
    const ids = Array.from({ length: 40 }, (_, i) => `cell-${i}`);
    model.active = true;
    ids.forEach(id => model.scheduled(id));
    for (const [i, id] of ids.entries()) {
      model.commOpen(`c${i}`, open(`r${i}`, id));
      const rows = model.rows(ids);
      expect(rows[0].cellId).toBe(id);
      expect(model.status(rows[0])).toBe('running');
      model.commClose(`c${i}`, summary(1));
    }
  });

  it('sums every run into the totals, live runs included', () => {
    const { model } = makeModel();
    model.commOpen('c1', open('r1', 'a'));
    model.commClose('c1', summary(100));
    model.commOpen('c2', open('r2', 'a'));
    model.commMsg('c2', sample(0.5, 30, 3));
    const t = model.totals();
    expect(t.runs).toBe(2);
    expect(t.energyJ).toBe(133);
    expect(t.embodiedCo2eG).toBeCloseTo(0.004);
    expect(t.waterL).toBeCloseTo(0.0003);
    expect(t.live).toBe(true);
    // The open run announced a cpu-time-model device.
    expect(t.modelled).toBe(true);
  });

  it('has no embodied or water total without a summary', () => {
    const { model } = makeModel();
    model.commOpen('c1', open('r1', 'a'));
    const t = model.totals();
    expect(t.embodiedCo2eG).toBeNull();
    expect(t.waterL).toBeNull();
  });

  it('flags model-based and below-resolution figures', () => {
    const { model } = makeModel();
    model.commOpen('c1', open('r1', 'a', { devices: [devices[0]] }));
    model.commClose(
      'c1',
      summary(0, {
        below_resolution: true,
        components: [
          {
            kind: 'cpu',
            device: 'package-0',
            energy_j: 0,
            method: 'cpu-time-model',
            scope: 'process',
            params: { w_per_core: 10 }
          }
        ]
      })
    );
    const run = model.cell('a')!.runs[0];
    expect(runIsModelled(run)).toBe(true);
    expect(model.totals().belowResolution).toBe(true);
  });

  it('thins sparkline points instead of growing without bound', () => {
    const model = new NotebookCarbonModel({ maxPoints: 16 });
    model.commOpen('c1', open('r1', 'a'));
    for (let i = 1; i <= 200; i++) {
      model.commMsg('c1', sample(i * 0.25, i));
    }
    const run = model.cell('a')!.runs[0];
    expect(run.points.length).toBeLessThanOrEqual(16);
    expect(run.points[0].t).toBe(0.25);
    expect(run.points[run.points.length - 1].t).toBe(50);
    expect(run.sampleCount).toBe(200);
  });
});

describe('NotebookCarbonModel: kernel restart and saved runs', () => {
  it('interrupts open runs and forgets the queue on restart', () => {
    const { model } = makeModel();
    model.commOpen('c1', open('r1', 'a'));
    model.scheduled('b');
    model.interruptAll('the kernel was restarted');
    expect(model.status(model.cell('a')!)).toBe('interrupted');
    expect(model.cell('b')).toBeUndefined();
    expect(model.active).toBe(false);
    expect(model.hasOpenRuns).toBe(false);
    // The rows stay.
    expect(model.rows(['a'])).toHaveLength(1);
  });

  it('restores saved runs, but live data wins', () => {
    const { model } = makeModel();
    const saved = { v: 1, run_id: 'old', ...summary(42) };
    expect(model.restore('a', saved)).toBe(true);
    expect(model.cell('a')!.runs[0].source).toBe('saved');
    expect(model.status(model.cell('a')!)).toBe('done');
    expect(model.restore('a', saved)).toBe(false);
    expect(model.restore('b', { measurement: 'nope' })).toBe(false);
    expect(model.totals().energyJ).toBe(42);
  });

  it('describes how the latest run was measured', () => {
    const { model } = makeModel();
    expect(model.howMeasured()).toBeNull();
    model.commOpen('c1', open('r1', 'a'));
    model.commMsg('c1', sample(0.25, 1));
    model.commMsg('c1', sample(0.75, 2));
    const how = model.howMeasured()!;
    expect(how.devices.map(d => d.method)).toEqual([
      'nvml-energy-counter',
      'cpu-time-model'
    ]);
    expect(how.intensity?.zone).toBe('FR');
    expect(how.sampleCount).toBe(2);
    expect(how.sampleSpanS).toBeCloseTo(0.5);
  });

  it('keeps the PUE in "how measured" while a run is running', () => {
    const { model } = makeModel();
    model.commOpen('c1', open('r1', 'a', { pue: 1.4 }));
    expect(model.howMeasured()!.pue).toBe(1.4);
    model.commClose('c1', summary(1, { pue: 1.4 }));
    // A v1 kernel's open says no PUE: the last one known stays.
    model.commOpen('c2', open('r2', 'b'));
    expect(model.howMeasured()!.pue).toBe(1.4);
  });

  it('shows a --label, not an automatic one', () => {
    const { model } = makeModel();
    expect(
      model.commOpen('c1', open('r1', 'a', { label: 'train', labelled: true }))!
        .labelled
    ).toBe(true);
    expect(
      model.commOpen(
        'c2',
        open('r2', 'b', { label: 'In [3]', labelled: false })
      )!.labelled
    ).toBe(false);
    // A v1 kernel does not say: automatic labels look like In [n].
    expect(
      model.commOpen('c3', open('r3', 'c', { label: 'In [4]' }))!.labelled
    ).toBe(false);
    expect([
      isUserLabel('In [12]'),
      isUserLabel('cell'),
      isUserLabel('fit')
    ]).toEqual([false, false, true]);
  });

  it('clears everything', () => {
    const { model } = makeModel();
    model.commOpen('c1', open('r1', 'a'));
    model.clear();
    expect(model.rows(['a'])).toEqual([]);
    expect(model.hasOpenRuns).toBe(false);
  });
});

describe('NotebookCarbonModel: no carbon intensity', () => {
  it('keeps CO2e unknown, not zero, when samples carry null', () => {
    const model = new NotebookCarbonModel();
    model.commOpen('c1', open('r1', 'a', { zone: null }));
    model.commMsg('c1', { ...sample(0.25, 10), co2e_g: null });
    const run = model.cell('a')!.runs[0];
    expect(runCo2eG(run)).toBeNull();
    expect(runEnergyJ(run)).toBe(10);
    const t = model.totals();
    expect(t.co2eG).toBe(0);
    expect(t.co2eMissing).toBe(true);
  });
});

describe('NotebookCarbonModel: the kernel state after a reload (hello v2)', () => {
  function hist(
    runId: string,
    cellId: string,
    energy: number,
    status = 'done'
  ) {
    return {
      run_id: runId,
      cell_id: cellId,
      status,
      measurement: summary(energy).measurement
    };
  }

  it('restores earlier runs into rows and totals, and follows the run in flight', () => {
    const { model } = makeModel();
    expect(model.active).toBe(false);
    const ok = model.applyState({
      kind: 'state',
      notebook: 'a.ipynb',
      runs: [
        hist('h1', 'a', 3),
        hist('h2', 'b', 4, 'interrupted'),
        hist('h3', 'a', 5)
      ],
      running: [open('r-live', 'c')],
      history: { ok: true }
    });
    expect(ok).toBe(true);
    expect(model.active).toBe(true); // no "Load carbonlab" while carbonlab measures
    expect(model.cell('a')!.runs.map(r => r.source)).toEqual([
      'history',
      'history'
    ]);
    expect(model.status(model.cell('b')!)).toBe('interrupted');
    expect(model.status(model.cell('c')!)).toBe('running');
    expect(model.rows(['a', 'b', 'c']).map(r => r.cellId)).toEqual([
      'c',
      'a',
      'b'
    ]);
    const key = helloRunKey('r-live');
    expect(model.commMsg(key, { ...sample(1, 2), run_id: 'r-live' })).toBe(
      true
    );
    expect(model.totals().energyJ).toBe(3 + 4 + 5 + 2);
    model.commClose(key, { ...summary(6), run_id: 'r-live', status: 'done' });
    expect(model.status(model.cell('c')!)).toBe('done');
    expect(model.totals()).toMatchObject({ runs: 4, energyJ: 18, live: false });
  });

  it('keeps runs this page saw itself and never counts a run twice', () => {
    const { model } = makeModel();
    model.commOpen('c1', open('r1', 'a'));
    model.commClose('c1', summary(2));
    model.applyState({
      kind: 'state',
      runs: [hist('h0', 'b', 1), hist('r1', 'a', 2)],
      running: [open('r1', 'a')]
    });
    expect(model.totals()).toMatchObject({ runs: 2, energyJ: 3 });
    expect(model.cell('a')!.runs.map(r => r.source)).toEqual(['live']);
    // What this page saw is newer than what the kernel had recorded before.
    expect(model.rows(['a', 'b']).map(r => r.cellId)).toEqual(['a', 'b']);
  });

  it('ignores messages that are not a state', () => {
    const { model } = makeModel();
    expect(model.applyState({ kind: 'sample' })).toBe(false);
    expect(model.applyState(null)).toBe(false);
    expect(model.active).toBe(false);
  });
});

describe('short runs batched on the hello comm (kind: runs)', () => {
  it('adds each batched run as a finished row with its summary', () => {
    const { model } = makeModel();
    const done = model.applyRuns({
      kind: 'runs',
      runs: [
        { open: open('r1', 'a'), summary: summary(2) },
        { open: open('r2', 'b'), summary: summary(3, {}, true) },
        { open: open('r3', 'a'), summary: summary(4) }
      ]
    });
    expect(done!.map(r => r.runId)).toEqual(['r1', 'r2', 'r3']);
    expect(model.cell('a')!.runs.map(r => [r.runId, r.status])).toEqual([
      ['r1', 'done'],
      ['r3', 'done']
    ]);
    expect(model.status(model.cell('b')!)).toBe('error');
    expect(model.totals()).toMatchObject({ runs: 3, energyJ: 9, live: false });
    // Newest run first, as with runs that had their own comm.
    expect(model.rows(['a', 'b']).map(r => r.cellId)).toEqual(['a', 'b']);
  });

  it('signals one change for a whole batch, none for a batch of nothing new', () => {
    const { model } = makeModel();
    let changes = 0;
    model.changed.connect(() => changes++);
    model.applyRuns({
      kind: 'runs',
      runs: [
        { open: open('r1', 'a'), summary: summary(2) },
        { open: open('r2', 'b'), summary: summary(3) },
        { open: open('r3', 'a'), summary: summary(4) }
      ]
    });
    expect(changes).toBe(1);
    expect(model.totals()).toMatchObject({ runs: 3, energyJ: 9 });
    model.applyRuns({
      kind: 'runs',
      runs: [{ open: open('r1', 'a'), summary: summary(2) }]
    });
    expect(changes).toBe(1);
    model.commOpen('c9', open('r9', 'c'));
    expect(changes).toBe(2); // outside a batch, each change is signalled at once
  });

  it('never counts a run twice (already in the state, or forwarded in flight)', () => {
    const { model } = makeModel();
    model.applyState({
      kind: 'state',
      runs: [
        {
          run_id: 'r1',
          cell_id: 'a',
          status: 'done',
          measurement: summary(2).measurement
        }
      ],
      running: [open('r2', 'b')]
    });
    const done = model.applyRuns({
      kind: 'runs',
      runs: [
        { open: open('r1', 'a'), summary: summary(2) },
        { open: open('r2', 'b'), summary: summary(5) }
      ]
    });
    expect(done!.map(r => r.runId)).toEqual(['r2']);
    expect(model.totals()).toMatchObject({ runs: 2, energyJ: 7, live: false });
    expect(
      model.applyRuns({
        kind: 'runs',
        runs: [{ open: open('r2', 'b'), summary: summary(5) }]
      })
    ).toEqual([]);
    expect(model.totals()).toMatchObject({ runs: 2, energyJ: 7 });
  });

  it('ignores other messages and malformed entries', () => {
    const { model } = makeModel();
    expect(model.applyRuns({ kind: 'state', runs: [] })).toBeNull();
    expect(model.applyRuns({ kind: 'summary' })).toBeNull();
    expect(model.applyRuns(null)).toBeNull();
    expect(
      model.applyRuns({ kind: 'runs', runs: [null, { open: { v: 1 } }, 7] })
    ).toEqual([]);
    expect(model.totals()).toMatchObject({ runs: 0 });
  });
});

describe('NotebookCarbonModel: a cluster per host (issue 17)', () => {
  const hosts = [
    {
      engine: 'dask',
      host: 'node-a',
      workers: 2,
      energy_j: 20.5,
      power_w: 8.25
    },
    { engine: 'dask', host: 'node-b', workers: 1, energy_j: 4, power_w: null }
  ];
  const clusterSample = (t: number, extra: object = {}) => ({
    ...sample(t, 10),
    power_w: { gpu: 200, cluster: 8.25 },
    energy_j: { gpu: 10, cluster: 24.5 },
    ...extra
  });

  it('keeps the latest per-host figures of a running run', () => {
    const { model } = makeModel();
    model.commOpen('c1', open('r1', 'a'));
    const run = model.openRun('c1')!;
    model.commMsg('c1', sample(0.25, 5)); // before the first poll: none
    expect(run.clusterHosts).toBeNull();
    model.commMsg('c1', clusterSample(0.5, { cluster_hosts: hosts }));
    expect(run.clusterHosts).toEqual(hosts);
    // A later sample without them (an older kernel's, or one that lost the poll) keeps them.
    model.commMsg('c1', clusterSample(0.75));
    expect(run.clusterHosts).toEqual(hosts);
    expect(runEnergyJ(run)).toBe(34.5); // the cluster entry counts in the run's energy
  });

  it('drops malformed host entries, never the sample', () => {
    const { model } = makeModel();
    model.commOpen('c1', open('r1', 'a'));
    const bad = [
      null,
      { engine: 'dask' },
      { engine: 'dask', host: 'h', workers: 'x', energy_j: NaN },
      'node'
    ];
    expect(
      model.commMsg('c1', clusterSample(0.5, { cluster_hosts: bad }))
    ).toBe(true);
    expect(model.openRun('c1')!.clusterHosts).toEqual([
      { engine: 'dask', host: 'h', workers: 0, energy_j: 0, power_w: null }
    ]);
  });
});
