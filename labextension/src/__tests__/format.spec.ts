import {
  formatCo2,
  formatDuration,
  formatEnergy,
  formatNumber,
  formatPower,
  formatRate,
  formatWater
} from '../format';

describe('formatNumber', () => {
  it('keeps 3 significant figures under 100', () => {
    expect(formatNumber(0)).toBe('0');
    expect(formatNumber(1.23456)).toBe('1.23');
    expect(formatNumber(0.0012345)).toBe('0.00123');
    expect(formatNumber(99.94)).toBe('99.9');
  });

  it('rounds to whole numbers with grouping from 100 up', () => {
    expect(formatNumber(611.2)).toBe('611');
    expect(formatNumber(12345.6)).toBe('12,346');
  });

  it('never prints NaN or Infinity', () => {
    expect(formatNumber(NaN)).toBe('–');
    expect(formatNumber(Infinity)).toBe('–');
  });

  it('uses exponent notation only for tiny values', () => {
    expect(formatNumber(2e-9)).toBe('2.0e-9');
  });
});

describe('formatEnergy', () => {
  it('auto: mJ, J below 1 Wh, Wh, then kWh', () => {
    expect(formatEnergy(0.00754)).toBe('7.54 mJ');
    expect(formatEnergy(0)).toBe('0 J');
    expect(formatEnergy(611.2)).toBe('611 J');
    expect(formatEnergy(3599)).toBe('3,599 J');
    expect(formatEnergy(3600)).toBe('1 Wh');
    expect(formatEnergy(7200 * 1.5)).toBe('3 Wh');
    expect(formatEnergy(3.6e6 * 2.5)).toBe('2.5 kWh');
  });

  it('forces the chosen unit', () => {
    expect(formatEnergy(3600, 'J')).toBe('3,600 J');
    expect(formatEnergy(36, 'Wh')).toBe('0.01 Wh');
    expect(formatEnergy(0.5, 'J')).toBe('0.5 J');
  });
});

describe('formatCo2', () => {
  it('auto: µg, mg below 1 g, g, then kg', () => {
    expect(formatCo2(0.0000005)).toBe('0.5 µg');
    expect(formatCo2(0.051)).toBe('51 mg');
    expect(formatCo2(0)).toBe('0 g');
    expect(formatCo2(1.5)).toBe('1.5 g');
    expect(formatCo2(2500)).toBe('2.5 kg');
  });

  it('forces the chosen unit', () => {
    expect(formatCo2(0.051, 'g')).toBe('0.051 g');
    expect(formatCo2(51, 'kg')).toBe('0.051 kg');
  });
});

describe('formatPower, formatWater', () => {
  it('formats watts and kilowatts', () => {
    expect(formatPower(245.4)).toBe('245 W');
    expect(formatPower(12.34)).toBe('12.3 W');
    expect(formatPower(1500)).toBe('1.5 kW');
  });

  it('formats litres and millilitres', () => {
    expect(formatWater(0.0003)).toBe('0.3 mL');
    expect(formatWater(2)).toBe('2 L');
  });
});

describe('formatDuration', () => {
  it('uses ms, s, min and h', () => {
    expect(formatDuration(0.0421)).toBe('42 ms');
    expect(formatDuration(2.41)).toBe('2.41 s');
    expect(formatDuration(65)).toBe('1 min 05 s');
    expect(formatDuration(7380)).toBe('2 h 03 min');
  });

  it('rejects negative and non-finite durations', () => {
    expect(formatDuration(-1)).toBe('–');
    expect(formatDuration(NaN)).toBe('–');
  });
});

describe('formatRate', () => {
  it('counts intervals between samples', () => {
    expect(formatRate(13, 3)).toBe('4 Hz');
    expect(formatRate(1, 3)).toBe('–');
    expect(formatRate(5, 0)).toBe('–');
  });
});
