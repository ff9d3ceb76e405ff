import {
  COMM_TARGET,
  HELLO_TARGET,
  HELLO_VERSION,
  helloData,
  parseOpen,
  parseState,
  parseSummary,
  visibilityMsg
} from '../protocol';

describe('hello', () => {
  it('is a separate target the kernel listens on (carbonlab/jupyter/widget.py)', () => {
    expect(HELLO_TARGET).toBe('carbonlab.hello');
    expect(HELLO_TARGET).not.toBe(COMM_TARGET);
  });

  it('says a sidebar is there, with the hello version and whether it shows', () => {
    expect(HELLO_VERSION).toBe(2);
    expect(helloData(false)).toEqual({ v: 2, sidebar: true, visible: false });
    expect(visibilityMsg(true)).toEqual({ kind: 'visible', visible: true });
  });
});

describe('additions to the cell protocol, v1 still understood', () => {
  const m = {
    schema: 'carbonlab.measurement/1',
    label: 'x',
    energy_j: 1,
    duration_s: 1
  };

  it('takes status from a summary, else from error', () => {
    expect(
      parseSummary({ kind: 'summary', measurement: m, error: true })?.status
    ).toBe('error');
    expect(
      parseSummary({ kind: 'summary', measurement: m, error: false })?.status
    ).toBe('done');
    expect(
      parseSummary({
        kind: 'summary',
        measurement: m,
        error: true,
        status: 'interrupted'
      })?.status
    ).toBe('interrupted');
    expect(
      parseSummary({
        kind: 'summary',
        measurement: m,
        error: true,
        status: 'bogus'
      })?.status
    ).toBe('error');
  });

  it('reads labelled and pue from an open, null when a v1 kernel says nothing', () => {
    const o = parseOpen({ v: 1, run_id: 'r', labelled: true, pue: 1.2 })!;
    expect([o.labelled, o.pue]).toEqual([true, 1.2]);
    const old = parseOpen({ v: 1, run_id: 'r' })!;
    expect([old.labelled, old.pue]).toEqual([null, null]);
  });

  it('parses the kernel state, dropping malformed runs', () => {
    const s = parseState({
      kind: 'state',
      notebook: 'a.ipynb',
      runs: [
        { run_id: 'r1', cell_id: 'c', status: 'interrupted', measurement: m },
        { run_id: 'r2', cell_id: 'c', measurement: { nope: 1 } },
        'junk'
      ],
      running: [
        { v: 1, run_id: 'r3', cell_id: 'd' },
        { v: 99, run_id: 'x' }
      ],
      history: { ok: true }
    })!;
    expect(s.runs.map(r => [r.run_id, r.status])).toEqual([
      ['r1', 'interrupted']
    ]);
    expect(s.running.map(r => r.run_id)).toEqual(['r3']);
    expect(parseState({ kind: 'sample' })).toBeNull();
  });
});
