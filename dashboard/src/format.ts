// Display formats shared by the panels.

export function usd(v: number | null | undefined, digits = 2): string {
  if (v === null || v === undefined || !Number.isFinite(v)) return '—'
  // Simulated and small calls cost fractions of a cent: keep two significant digits.
  if (v !== 0 && Math.abs(v) < 0.01 && digits <= 4) return '$' + v.toFixed(Math.min(8, 1 - Math.floor(Math.log10(Math.abs(v)))))
  return '$' + v.toFixed(digits)
}

export function pct(v: number | null | undefined, digits = 0): string {
  if (v === null || v === undefined || !Number.isFinite(v)) return '—'
  return v.toFixed(digits) + '%'
}

export function ms(v: number | null | undefined): string {
  if (v === null || v === undefined || !Number.isFinite(v)) return '—'
  if (v < 1) return v.toFixed(2) + ' ms'
  if (v < 100) return v.toFixed(1) + ' ms'
  return Math.round(v) + ' ms'
}

export function us(v: number | null | undefined): string {
  if (v === null || v === undefined || !Number.isFinite(v)) return '—'
  return v < 1000 ? v.toFixed(0) + ' µs' : (v / 1000).toFixed(1) + ' ms'
}

/** `[HH:MM:SS]` in local time. */
export function clock(tsMs: number): string {
  const d = new Date(tsMs)
  const two = (n: number) => String(n).padStart(2, '0')
  return `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`
}

export function date(tsMs: number): string {
  return new Date(tsMs).toLocaleString()
}

export function duration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return '—'
  const s = Math.floor(seconds)
  if (s < 60) return `${s}s`
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`
  return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`
}

export function count(v: number | null | undefined): string {
  if (v === null || v === undefined || !Number.isFinite(v)) return '—'
  return v.toLocaleString('en-US')
}

/** `Running`, `Completed`, … */
export function stateLabel(state: string): string {
  return state ? state[0].toUpperCase() + state.slice(1) : '—'
}

export function stateClass(state: string): string {
  switch (state) {
    case 'running':
      return 'bg-emerald-500/15 text-emerald-300 ring-emerald-500/40'
    case 'completed':
      return 'bg-sky-500/15 text-sky-300 ring-sky-500/40'
    case 'failed':
      return 'bg-rose-500/15 text-rose-300 ring-rose-500/40'
    case 'stopped':
      return 'bg-amber-500/15 text-amber-300 ring-amber-500/40'
    default:
      return 'bg-slate-500/15 text-slate-300 ring-slate-500/40'
  }
}

/** Seconds the seed's way: `2.1s`, `12s`; under a second in ms (`350ms`, `1.7ms`). */
export function secs(v: number | null | undefined): string {
  if (v === null || v === undefined || !Number.isFinite(v)) return '—'
  if (v < 0.01) return (v * 1000).toFixed(1) + 'ms'
  if (v < 1) return Math.round(v * 1000) + 'ms'
  if (v < 10) return v.toFixed(1) + 's'
  return Math.round(v) + 's'
}

/** A rate per hour: `212 leads/hour`. */
export function perHour(v: number | null | undefined, unit: string): string {
  if (v === null || v === undefined || !Number.isFinite(v)) return '—'
  return `${v >= 10 ? count(Math.round(v)) : v.toFixed(1)} ${unit}/hour`
}

/** The singular of a progress unit (`leads` → `lead`); `call` without one. */
export function singular(unit: string | null | undefined): string {
  if (!unit) return 'call'
  return unit.endsWith('s') && unit.length > 1 ? unit.slice(0, -1) : unit
}
