/**
 * Formatting of energy, CO2e, power, water, durations and intensities for the sidebar.
 *
 * Pure functions, no DOM, no locale. One rule with the Python side (carbonlab/units.py), tested
 * on the same table of values (tests/fixtures/format_cases.json, read by pytest and jest):
 *
 * - the magnitude is rounded half-up to 3 significant digits, or to a whole number from 100 up,
 *   and written in plain decimals, never with an exponent;
 * - auto-scaled quantities use the largest unit of their ladder not bigger than the value,
 *   stepping up one unit when rounding reaches it (999.7 mJ reads "1 J"); zero reads "0" in the
 *   unit of size 1; below 1 of the smallest unit reads "< 1 µJ";
 * - in a unit the user fixed (J, Wh, g, kg), plain decimals however small.
 */

/** Energy unit setting: joules, watt-hours, or pick by size. */
export type EnergyUnit = 'J' | 'Wh' | 'auto';

/** CO2e unit setting: grams, kilograms, or pick by size. */
export type Co2Unit = 'g' | 'kg' | 'auto';

type Ladder = ReadonlyArray<readonly [string, number]>;

const NA = 'n/a';

const ENERGY: Ladder = [
  ['µJ', 1e-6],
  ['mJ', 1e-3],
  ['J', 1],
  ['Wh', 3600],
  ['kWh', 3.6e6],
  ['MWh', 3.6e9]
];
const CO2: Ladder = [
  ['µgCO2e', 1e-6],
  ['mgCO2e', 1e-3],
  ['gCO2e', 1],
  ['kgCO2e', 1e3],
  ['tCO2e', 1e6]
];
const POWER: Ladder = [
  ['µW', 1e-6],
  ['mW', 1e-3],
  ['W', 1],
  ['kW', 1e3],
  ['MW', 1e6]
];
const WATER: Ladder = [
  ['µL', 1e-6],
  ['mL', 1e-3],
  ['L', 1],
  ['m³', 1e3]
];
const DURATION: Ladder = [
  ['µs', 1e-6],
  ['ms', 1e-3],
  ['s', 1]
];

/** Plain decimal for the mantissa digits `digits` whose first digit has weight 10^exp. */
function plain(digits: string, exp: number): string {
  const d = digits.replace(/0+$/, '') || '0';
  if (exp >= d.length - 1) {
    return d + '0'.repeat(exp - d.length + 1);
  }
  if (exp >= 0) {
    return `${d.slice(0, exp + 1)}.${d.slice(exp + 1)}`;
  }
  return `0.${'0'.repeat(-exp - 1)}${d}`;
}

/**
 * `x` with 3 significant digits under 100, as a whole number from 100 up; plain decimals, half-up
 * rounding (toExponential and toFixed both round ties up on the exact binary value).
 */
export function formatNumber(x: number): string {
  if (!Number.isFinite(x)) {
    return NA;
  }
  if (x === 0) {
    return '0';
  }
  const sign = x < 0 ? '-' : '';
  const a = Math.abs(x);
  if (a >= 100) {
    if (a < 1e21) {
      return sign + a.toFixed(0);
    }
  }
  const [mantissa, e] = a.toExponential(2).split('e');
  return sign + plain(mantissa.replace('.', ''), Number(e));
}

function scaled(x: number, ladder: Ladder): string {
  if (!Number.isFinite(x)) {
    return NA;
  }
  const mag = Math.abs(x);
  if (mag === 0) {
    const one = ladder.find(([, size]) => size === 1);
    return `0 ${one ? one[0] : ladder[0][0]}`;
  }
  if (mag < ladder[0][1]) {
    return `< 1 ${ladder[0][0]}`;
  }
  let i = 0;
  ladder.forEach(([, size], j) => {
    if (mag >= size) {
      i = j;
    }
  });
  let [unit, size] = ladder[i];
  let text = formatNumber(mag / size);
  if (i + 1 < ladder.length && Number(text) * size >= ladder[i + 1][1]) {
    [unit, size] = ladder[i + 1];
    text = formatNumber(mag / size);
  }
  return `${x < 0 ? '-' : ''}${text} ${unit}`;
}

function fixed(x: number, size: number, unit: string): string {
  return Number.isFinite(x) ? `${formatNumber(x / size)} ${unit}` : NA;
}

/**
 * Energy given in joules.
 *
 * `auto` uses µJ, mJ below 1 J, joules below 1 Wh (3600 J), then Wh, kWh, MWh.
 */
export function formatEnergy(
  joules: number,
  unit: EnergyUnit = 'auto'
): string {
  if (unit === 'J') {
    return fixed(joules, 1, 'J');
  }
  if (unit === 'Wh') {
    return fixed(joules, 3600, 'Wh');
  }
  return scaled(joules, ENERGY);
}

/** CO2-equivalent mass given in grams: "7.58 µgCO2e", "51 mgCO2e", "1.5 kgCO2e". */
export function formatCo2(grams: number, unit: Co2Unit = 'auto'): string {
  if (unit === 'g') {
    return fixed(grams, 1, 'gCO2e');
  }
  if (unit === 'kg') {
    return fixed(grams, 1000, 'kgCO2e');
  }
  return scaled(grams, CO2);
}

/** Power given in watts: "45 mW", "350 W", "1.2 kW". */
export function formatPower(watts: number): string {
  return scaled(watts, POWER);
}

/** Water given in litres: "0.3 mL", "2.5 L". */
export function formatWater(litres: number): string {
  return scaled(litres, WATER);
}

/** Grid intensity: "44.2 gCO2e/kWh". */
export function formatIntensity(gPerKwh: number): string {
  return Number.isFinite(gPerKwh) ? `${formatNumber(gPerKwh)} gCO2e/kWh` : NA;
}

/** Duration given in seconds: "850 µs", "2.41 s", "1 min 05 s", "2 h 03 min". */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) {
    return NA;
  }
  const sign = seconds < 0 ? '-' : '';
  const s = Math.abs(seconds);
  if (s === 0) {
    return '0 s';
  }
  if (s < 60) {
    return sign + scaled(s, DURATION);
  }
  const total = Math.round(s);
  if (total < 3600) {
    const m = Math.floor(total / 60);
    const sec = total % 60;
    return `${sign}${m} min ${String(sec).padStart(2, '0')} s`;
  }
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  return `${sign}${h} h ${String(m).padStart(2, '0')} min`;
}

/** Sample rate in Hz from a count of samples over a span of seconds. */
export function formatRate(samples: number, seconds: number): string {
  if (samples < 2 || seconds <= 0) {
    return '–';
  }
  return `${formatNumber((samples - 1) / seconds)} Hz`;
}
