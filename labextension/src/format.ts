/**
 * Formatting of energy, CO2e, power, water and durations for the sidebar.
 *
 * Pure functions, no DOM; numbers are formatted with a fixed locale so the sidebar and the
 * tests agree. The Python side has its own formatter (carbonlab/units.py); the rules match:
 * 3 significant figures, whole numbers from 100 up, a thin unit suffix.
 */

/** Energy unit setting: joules, watt-hours, or pick by size. */
export type EnergyUnit = 'J' | 'Wh' | 'auto';

/** CO2e unit setting: grams, kilograms, or pick by size. */
export type Co2Unit = 'g' | 'kg' | 'auto';

const J_PER_WH = 3600;

const WHOLE = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });

/** `x` with 3 significant figures under 100, as a whole number (with grouping) from 100 up. */
export function formatNumber(x: number): string {
  if (!Number.isFinite(x)) {
    return '–';
  }
  if (x === 0) {
    return '0';
  }
  const a = Math.abs(x);
  if (a >= 100) {
    return WHOLE.format(x);
  }
  // toPrecision can give exponent notation for tiny numbers; keep plain decimals down to 1e-6.
  if (a < 1e-6) {
    return x.toExponential(1);
  }
  return String(Number(x.toPrecision(3)));
}

/**
 * Energy given in joules.
 *
 * `auto` uses mJ below 1 J, joules below 1 Wh (3600 J), then Wh, then kWh from 1000 Wh.
 */
export function formatEnergy(
  joules: number,
  unit: EnergyUnit = 'auto'
): string {
  if (unit === 'J') {
    return `${formatNumber(joules)} J`;
  }
  const wh = joules / J_PER_WH;
  if (unit === 'Wh') {
    return `${formatNumber(wh)} Wh`;
  }
  const a = Math.abs(joules);
  if (a !== 0 && a < 1) {
    return `${formatNumber(joules * 1000)} mJ`;
  }
  if (a < J_PER_WH) {
    return `${formatNumber(joules)} J`;
  }
  if (Math.abs(wh) < 1000) {
    return `${formatNumber(wh)} Wh`;
  }
  return `${formatNumber(wh / 1000)} kWh`;
}

/**
 * CO2-equivalent mass given in grams.
 *
 * `auto` uses µg below 1 mg, mg below 1 g (most cells emit milligrams), g up to 1 kg, then kg.
 */
export function formatCo2(grams: number, unit: Co2Unit = 'auto'): string {
  if (unit === 'g') {
    return `${formatNumber(grams)} g`;
  }
  if (unit === 'kg') {
    return `${formatNumber(grams / 1000)} kg`;
  }
  const a = Math.abs(grams);
  if (a !== 0 && a < 0.001) {
    return `${formatNumber(grams * 1e6)} µg`;
  }
  if (a !== 0 && a < 1) {
    return `${formatNumber(grams * 1000)} mg`;
  }
  if (a < 1000) {
    return `${formatNumber(grams)} g`;
  }
  return `${formatNumber(grams / 1000)} kg`;
}

/** Power given in watts (kW from 1000 W). */
export function formatPower(watts: number): string {
  if (Math.abs(watts) >= 1000) {
    return `${formatNumber(watts / 1000)} kW`;
  }
  return `${formatNumber(watts)} W`;
}

/** Water given in litres (mL below 1 L). */
export function formatWater(litres: number): string {
  const a = Math.abs(litres);
  if (a !== 0 && a < 1) {
    return `${formatNumber(litres * 1000)} mL`;
  }
  return `${formatNumber(litres)} L`;
}

/** Duration given in seconds: "850 ms", "2.41 s", "1 min 05 s", "2 h 03 min". */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) {
    return '–';
  }
  if (seconds < 1) {
    return `${Math.round(seconds * 1000)} ms`;
  }
  if (seconds < 60) {
    return `${formatNumber(seconds)} s`;
  }
  const total = Math.round(seconds);
  if (total < 3600) {
    const m = Math.floor(total / 60);
    const s = total % 60;
    return `${m} min ${String(s).padStart(2, '0')} s`;
  }
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  return `${h} h ${String(m).padStart(2, '0')} min`;
}

/** Sample rate in Hz from a count of samples over a span of seconds. */
export function formatRate(samples: number, seconds: number): string {
  if (samples < 2 || seconds <= 0) {
    return '–';
  }
  return `${formatNumber((samples - 1) / seconds)} Hz`;
}
