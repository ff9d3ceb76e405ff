import {
  formatCo2,
  formatDuration,
  formatEnergy,
  formatIntensity,
  formatNumber,
  formatPower,
  formatRate,
  formatWater
} from '../format';

/**
 * The one table of values shared with the Python formatter (tests/test_units.py reads the same
 * file): the sidebar, the cell, the terminal and the markdown summary must write a figure alike.
 */
interface ICase {
  value: number;
  kind: 'energy' | 'co2' | 'power' | 'duration' | 'water' | 'intensity';
  unit?: string;
  expected: string;
}

// Jest runs in node; the tsconfig's types are jest's only, so declare the two node globals used.
declare const require: (id: string) => any;
declare const __dirname: string;
const fs = require('fs');
const path = require('path');
const FIXTURE: string = path.resolve(
  __dirname,
  '../../../tests/fixtures/format_cases.json'
);
const CASES: ICase[] = JSON.parse(fs.readFileSync(FIXTURE, 'utf-8')).cases;

function format(c: ICase): string {
  switch (c.kind) {
    case 'energy':
      return formatEnergy(
        c.value,
        (c.unit as 'J' | 'Wh' | undefined) ?? 'auto'
      );
    case 'co2':
      return formatCo2(c.value, (c.unit as 'g' | 'kg' | undefined) ?? 'auto');
    case 'power':
      return formatPower(c.value);
    case 'duration':
      return formatDuration(c.value);
    case 'water':
      return formatWater(c.value);
    case 'intensity':
      return formatIntensity(c.value);
  }
}

describe('the table shared with carbonlab/units.py', () => {
  it('has cases of every kind', () => {
    expect(new Set(CASES.map(c => c.kind))).toEqual(
      new Set(['energy', 'co2', 'power', 'duration', 'water', 'intensity'])
    );
  });

  it.each(CASES.map(c => [`${c.kind} ${c.value} ${c.unit ?? 'auto'}`, c]))(
    '%s',
    (_name, c) => {
      expect(format(c as ICase)).toBe((c as ICase).expected);
    }
  );
});

describe('never e-notation', () => {
  const values: number[] = [];
  for (let k = -15; k < 10; k++) {
    for (const m of [1, 2.5, 7.48, 9.9996]) {
      values.push(m * 10 ** k);
    }
  }
  it.each(values)('%p', x => {
    for (const text of [
      formatNumber(x),
      formatEnergy(x),
      formatEnergy(x, 'Wh'),
      formatCo2(x),
      formatCo2(x, 'kg'),
      formatPower(x),
      formatWater(x),
      formatDuration(x)
    ]) {
      expect(text).not.toMatch(/\de[+-]?\d/);
    }
  });
});

describe('formatNumber', () => {
  it('keeps 3 significant figures, whole numbers from 100 up, no grouping', () => {
    expect(formatNumber(0)).toBe('0');
    expect(formatNumber(1.23456)).toBe('1.23');
    expect(formatNumber(0.0012345)).toBe('0.00123');
    expect(formatNumber(99.94)).toBe('99.9');
    expect(formatNumber(611.2)).toBe('611');
    expect(formatNumber(12345.6)).toBe('12346');
    expect(formatNumber(2e-9)).toBe('0.000000002');
    expect(formatNumber(-1.125)).toBe('-1.13');
  });

  it('says n/a for non-finite numbers, like the Python side', () => {
    expect(formatNumber(NaN)).toBe('n/a');
    expect(formatNumber(Infinity)).toBe('n/a');
    expect(formatEnergy(NaN)).toBe('n/a');
    expect(formatCo2(Infinity)).toBe('n/a');
    expect(formatDuration(NaN)).toBe('n/a');
  });
});

describe('formatRate', () => {
  it('counts intervals between samples', () => {
    expect(formatRate(13, 3)).toBe('4 Hz');
    expect(formatRate(1, 3)).toBe('–');
    expect(formatRate(5, 0)).toBe('–');
  });
});
